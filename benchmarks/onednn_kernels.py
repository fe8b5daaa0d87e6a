r"""One training step's oneDNN kernels, tf_st against the official PyTorch code.

  python -m benchmarks.onednn_kernels --reference=st-at --reference_dir=DIR --batch_size=32

TensorFlow and PyTorch both run float32 CPU convolutions through oneDNN.  With
``ONEDNN_VERBOSE=1`` oneDNN prints one line per kernel it runs: the primitive kind
(convolution, reorder, ...), the implementation it chose, the pass (forward,
backward_data, backward_weights), the problem (``mb32_ic64oc64_ih32oh32kh3sh1...``) and
its milliseconds.  Each side (the same steps as ``benchmarks.vs_reference``: ResNet-18,
K inner iterations, the same batch) runs in a subprocess with that variable set, takes
``--warmup`` untraced steps, and the lines of one more step are read.

Reported: each side's step time and oneDNN time per primitive kind; then, per
convolution (channels, kernel, stride and output size; the minibatch and the way the
padding is expressed are not part of the key, since tf_st concatenates forwards and
pads stride-2 inputs with a layer) and pass, microseconds per image on each side.  The
last line prices tf_st's convolution images at the official side's per-image times: the
difference to tf_st's actual convolution time is what the kernels' efficiency alone
costs tf_st, everything else (how many convolutions each side runs) being equal.

PyTorch runs BatchNorm and elementwise ops in ATen, not in oneDNN, so only the kinds
both sides run through oneDNN compare directly (convolutions; reorders are layout
conversions each side chooses).  tf_st runs with one inter-op thread here
(``--inter_op_threads=1``): two kernels then never run at once, so each line's time is
that kernel's alone.  The verbose output slows both sides a little; the step times are
for reading the kernel times against, not a speed measurement (``vs_reference`` is).
"""

import collections
import ctypes
import os
import subprocess
import sys
import time

from absl import flags

from benchmarks.onednn_log import BEGIN, END, parse_verbose, per_image, priced_at
from benchmarks.reference_step import REFERENCES, check_reference, reference_step


_REFERENCE = flags.DEFINE_enum("reference", "st-at", sorted(REFERENCES), "Official code.")
_REFERENCE_DIR = flags.DEFINE_string("reference_dir", None,
                                     "Checkout of the official repository.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_K = flags.DEFINE_integer("inner_steps", 10, "Inner iterations K.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed steps first (tracing, primitive caches).")
_THREADS = flags.DEFINE_integer("threads", 0, "Threads per side (0: all cores).")
_INTER = flags.DEFINE_integer("inter_op_threads", 1, "tf_st's inter-op threads (1: one "
                              "kernel at a time, so kernel times do not overlap).")
_TOP = flags.DEFINE_integer("top", 30, "Convolution rows listed.")
_SIDE = flags.DEFINE_enum("side", None, ["tf_st", "official"],
                          "Internal: run one side and print its oneDNN lines.")


def _flush_c_stdout():
    # oneDNN prints with C stdio, which buffers a pipe; flushing it before Python writes
    # a marker keeps the markers between the right kernel lines.
    ctypes.CDLL(None).fflush(None)


def _run_side(side):
    threads = _THREADS.value or os.cpu_count()
    if side == "official":
        step, make_batch, _ = reference_step(_REFERENCE.value,
                                             os.path.abspath(_REFERENCE_DIR.value), threads,
                                             _K.value)
    else:
        from benchmarks.tf_step import build_tf_st, random_batch
        _, method = build_tf_st(REFERENCES[_REFERENCE.value][0], _K.value, False, {}, threads,
                                _INTER.value)
        step, make_batch = method.train_on_batch, random_batch
    x, y = make_batch(_BATCH.value)
    for _ in range(_WARMUP.value):
        step(x, y)
    _flush_c_stdout()
    print(BEGIN, flush=True)
    start = time.perf_counter()
    step(x, y)
    seconds = time.perf_counter() - start
    _flush_c_stdout()
    print(END, flush=True)
    print(f"step_seconds={seconds}", flush=True)


def main(argv):
    del argv
    if _BATCH.value < 1 or _K.value < 1 or _WARMUP.value < 0:
        raise ValueError("--batch_size and --inner_steps must be positive, --warmup >= 0")
    if _SIDE.value:
        _run_side(_SIDE.value)
        return
    check_reference(_REFERENCE.value, _REFERENCE_DIR.value)
    results = {}
    for side in ("official", "tf_st"):
        cmd = [sys.executable, "-m", "benchmarks.onednn_kernels", f"--side={side}",
               f"--reference={_REFERENCE.value}",
               f"--reference_dir={os.path.abspath(_REFERENCE_DIR.value)}",
               f"--batch_size={_BATCH.value}", f"--inner_steps={_K.value}",
               f"--warmup={_WARMUP.value}", f"--threads={_THREADS.value}",
               f"--inter_op_threads={_INTER.value}"]
        run = subprocess.run(cmd, capture_output=True, text=True,
                             env={**os.environ, "ONEDNN_VERBOSE": "1"})
        if run.returncode:
            raise RuntimeError(f"the {side} side failed:\n{run.stderr[-3000:]}")
        results[side] = parse_verbose(run.stdout)
        print(f"{side}: one step {results[side][0]:.2f} s under ONEDNN_VERBOSE, "
              f"{len(results[side][1])} oneDNN kernels", flush=True)

    print(f"\n{_REFERENCE.value} vs tf_st, resnet18, batch {_BATCH.value}, K={_K.value}\n")
    print("oneDNN time per primitive and pass (ms):\n")
    print("| primitive | pass | official | tf_st |")
    print("|---|---|---|---|")
    kinds = collections.defaultdict(lambda: [0.0, 0.0])
    for i, side in enumerate(("official", "tf_st")):
        for k in results[side][1]:
            kinds[(k.kind, k.prop)][i] += k.ms
    for (kind, prop), (a, b) in sorted(kinds.items(), key=lambda kv: -max(kv[1])):
        print(f"| {kind} | {prop} | {a:.0f} | {b:.0f} |")

    theirs, ours = per_image(results["official"][1]), per_image(results["tf_st"][1])
    rows = sorted(set(theirs) | set(ours),
                  key=lambda key: -max(theirs.get(key, (0, 0))[1], ours.get(key, (0, 0))[1]))
    print("\nper convolution and pass (us per image; images = summed minibatches):\n")
    print("| convolution | pass | official us/img | tf_st us/img | tf_st / official "
          "| official images | tf_st images | official ms | tf_st ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for prop, key in rows[:_TOP.value]:
        a, b = theirs.get((prop, key), (0, 0.0)), ours.get((prop, key), (0, 0.0))
        ua = 1e3 * a[1] / a[0] if a[0] else float("nan")
        ub = 1e3 * b[1] / b[0] if b[0] else float("nan")
        print(f"| {key} | {prop} | {ua:.0f} | {ub:.0f} | {ub / ua:.2f} | {a[0]} | {b[0]} "
              f"| {a[1]:.0f} | {b[1]:.0f} |")
    actual = sum(ms for _, ms in ours.values())
    priced = priced_at(ours, theirs)
    print(f"\nconvolutions: official {sum(ms for _, ms in theirs.values()):.0f} ms, "
          f"tf_st {actual:.0f} ms; tf_st's convolutions at the official per-image times: "
          f"{priced:.0f} ms (tf_st's kernels cost {actual - priced:+.0f} ms, "
          f"{100 * (actual - priced) / (1e3 * results['tf_st'][0]):+.1f}% of its step)")


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
