r"""Training-step throughput of the methods, measured in one run.

  python -m benchmarks.step_time --arch=resnet18 --batch_size=128 --methods=natural,st

Reports per method: seconds per step, images/s, the ratio to the first method, and the
achieved FLOP/s against the machine's measured float32 matmul rate.  Step FLOPs are
estimated from the forward cost F per image (benchmarks/flops.py):
  natural: F (forward) + 2F (backward)                          = 3F
  ST (K inner steps): F (clean forward) + K * (2F forwards + 2F input backwards)
                      + 3F (final forwards) + 6F (parameter backward) = (4K + 10) F
  This is a lower bound: in an iteration where any row of the batch selects the clean
  point (ST-AT's "if" branch; at batch 128 that is almost every iteration) the input
  backward of the kept clean forward is added, (5K + 10) F in the worst case.
  TRADES (K steps, eval-BN attack, the repeated clean forward only a statistics update):
  F + K * (F + F) + 2F + 4F = (2K + 7) F
"""

import os
import sys
import time

from absl import flags


_ARCH = flags.DEFINE_string("arch", "resnet18", "Architecture.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_METHODS = flags.DEFINE_list("methods", ["natural", "st"], "Methods, first = reference.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps per method (after one warm-up step).")
_K = flags.DEFINE_integer("inner_steps", 10, "Inner iterations K.")


def main(argv):
    del argv
    import keras
    import numpy as np
    from benchmarks.flops import FLOP_FACTORS, forward_flops, matmul_flops_per_second
    from tf_st import methods, models
    from tf_st.training.optim import TorchSGD

    rate = matmul_flops_per_second()
    print(f"machine: {os.cpu_count()} cores; measured float32 matmul rate "
          f"{rate / 1e9:.1f} GFLOP/s")
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, (_BATCH.value, 32, 32, 3)).astype("float32")
    y = rng.randint(0, 10, _BATCH.value)
    rows = []
    for key in _METHODS.value:
        keras.utils.set_random_seed(0)
        clf = models.build(_ARCH.value, 10)
        kwargs = {} if key == "natural" else {"steps": _K.value}
        method = methods.build(key, clf, **kwargs)
        method.compile(optimizer=TorchSGD(0.1))
        method.train_on_batch(x, y)  # trace + warm-up
        start = time.perf_counter()
        for _ in range(_STEPS.value):
            method.train_on_batch(x, y)
        sec = (time.perf_counter() - start) / _STEPS.value
        flops = forward_flops(clf) * _BATCH.value * FLOP_FACTORS.get(key, lambda k: np.nan)(_K.value)
        rows.append((key, sec, _BATCH.value / sec, flops / sec))
        print(f"  {key}: {sec:.2f} s/step", flush=True)
    ref = rows[0][1]
    print(f"\n{_ARCH.value}, batch {_BATCH.value}, K={_K.value}, {_STEPS.value} timed steps each")
    print(f"| method | s/step | images/s | step time / {rows[0][0]} | est. GFLOP/s | % of matmul rate |")
    print("|---|---|---|---|---|---|")
    for key, sec, ips, fps in rows:
        print(f"| {key} | {sec:.2f} | {ips:.1f} | {sec / ref:.2f} | {fps / 1e9:.1f} | "
              f"{100 * fps / rate:.0f}% |")
    sys.stdout.flush()


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
