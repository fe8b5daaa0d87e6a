r"""What ``--deterministic`` costs: the same trainer run with and without it, in one run.

  python -m benchmarks.deterministic_cost --method=trades --arch=small_cnn

Runs the trainer twice as separate processes (threads and oneDNN are fixed before
TensorFlow starts, so they cannot share one), alternating ``--repeats`` times, and
compares the training seconds of the last epoch (the first includes tracing) from each
run's ``metrics.csv``.  Prints seconds per epoch and the slowdown ratio.
"""

import csv
import os
import subprocess
import sys
import tempfile

from absl import flags

_METHOD = flags.DEFINE_string("method", "trades", "Method.")
_ARCH = flags.DEFINE_string("arch", "small_cnn", "Architecture.")
_STEPS = flags.DEFINE_integer("steps_per_epoch", 10, "Steps per epoch.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Runs of each mode, alternating.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _epoch_seconds(deterministic, out):
    argv = [sys.executable, "-m", "trainers.train", f"--method={_METHOD.value}",
            f"--arch={_ARCH.value}", "--epochs=2", f"--steps_per_epoch={_STEPS.value}",
            f"--batch_size={_BATCH.value}", "--eval_examples=16", "--final_examples=16",
            "--final_attacks=clean", f"--output_dir={out}"]
    if deterministic:
        argv.append("--deterministic")
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
    with open(os.path.join(out, "metrics.csv")) as f:
        return float(list(csv.DictReader(f))[-1]["train_seconds"])


def main(argv):
    del argv
    times = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(_REPEATS.value):
            for det in (False, True):
                t = _epoch_seconds(det, os.path.join(tmp, f"{det}-{r}"))
                times[det].append(t)
                print(f"  {'deterministic' if det else 'default'} run {r + 1}: {t:.2f} s/epoch",
                      flush=True)
    base, det = min(times[False]), min(times[True])
    print(f"\n{_METHOD.value}, {_ARCH.value}, batch {_BATCH.value}, {_STEPS.value} steps/epoch, "
          f"{os.cpu_count()} cores (best of {_REPEATS.value})")
    print("| mode | s/epoch | ratio |\n|---|---|---|")
    print(f"| default | {base:.2f} | 1.00 |\n| --deterministic | {det:.2f} | {det / base:.2f} |")


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
