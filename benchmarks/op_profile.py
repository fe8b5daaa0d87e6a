r"""Where one training step's time goes, by TensorFlow op type.

  python -m benchmarks.op_profile --method=st --batch_size=32 [--mixed_precision=bfloat16]

Builds tf_st's side of ``benchmarks.vs_reference`` (ResNet-18, K = 10, the same settings
and ``--tf_options`` levers), runs ``--warmup`` steps, then records ``--steps`` steps with
TensorFlow's profiler and reads the trace it writes (``*.xplane.pb``, parsed with the
protobuf module TensorFlow ships; no profiler plugin needed).  Each op's *self* time on
TensorFlow's executor threads (its duration minus ops nested in it: loops, conditionals
and function calls) is summed per op type and per family:

* convolution: every Conv2D forward / input-backward / filter-backward kernel, fused or not;
* batchnorm: the fused BatchNorm kernels and their gradients;
* everything else (elementwise ops, slices and concatenations of the grouped forwards,
  the optimizer update, ...).

Two executor threads may run ops at the same time, so the op times add up to more than
the wall time; the shares are what matters.  The convolution share bounds what any
optimisation of the rest can give: if every other op took no time at all, the step would
be at most ``1 / share`` times faster (the "bound" line).

``--mixed_precision=bfloat16`` (or ``float16``) builds the step under Keras'
``mixed_<dtype>`` policy, as ``benchmarks.vs_reference --mixed_precision`` does.  Printed
in every case: the ``Cast`` ops' share of the op time, and a dtype census of the traced
training step (``tf.function(method.train_step)``'s graph and its function library: loop
bodies, gradients; ``benchmarks.profile_trace.dtype_census``): per convolution,
batchnorm and matmul op type, how many graph nodes compute in each dtype, and the
``Cast`` nodes by direction.  The census counts nodes, not executions (a loop body once),
in the graph as traced, before Grappler's rewrites (the profile's ``_MklNative*`` kernels
are its oneDNN rewrites); under a mixed policy its float32 entries are the ops left in
float32 (the logits' Dense is float32 by design: ``tf_st.models``).
"""

import collections
import glob
import os
import tempfile
import time

from absl import flags

from benchmarks.profile_trace import family, op_self_times


_METHOD = flags.DEFINE_enum("method", "st", ["st", "trades"], "tf_st method to profile.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_K = flags.DEFINE_integer("inner_steps", 10, "Inner iterations K.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed steps first (tracing).")
_STEPS = flags.DEFINE_integer("steps", 1, "Profiled steps.")
_TOP = flags.DEFINE_integer("top", 15, "Op types listed.")
_TF_OPTIONS = flags.DEFINE_list("tf_options", [], "As benchmarks.vs_reference --tf_options.")
_THREADS = flags.DEFINE_integer("threads", 0, "Intra-op threads (0: all cores).")
_MIXED = flags.DEFINE_enum("mixed_precision", None, ["bfloat16", "float16"],
                           "Build the step under Keras' mixed_<dtype> policy.")


def main(argv):
    del argv
    import keras
    import tensorflow as tf
    from benchmarks.profile_trace import CENSUS_FAMILIES, census_family, dtype_census
    from benchmarks.tf_step import build_tf_st, describe_options, parse_options, random_batch
    if _BATCH.value < 1 or _STEPS.value < 1:
        raise ValueError("--batch_size and --steps must be positive")
    if _MIXED.value:
        keras.mixed_precision.set_global_policy(f"mixed_{_MIXED.value}")
    _, method = build_tf_st(_METHOD.value, _K.value, False, parse_options(_TF_OPTIONS.value),
                            _THREADS.value or os.cpu_count())
    x, y = random_batch(_BATCH.value)
    for _ in range(_WARMUP.value):
        method.train_on_batch(x, y)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(_STEPS.value):
            method.train_on_batch(x, y)
        wall = (time.perf_counter() - start) / _STEPS.value
        tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            raise RuntimeError(f"the profiler wrote no trace under {logdir}")
        times = op_self_times(paths[0])
    # Traced apart from the steps above (a second trace of the same train_step), so the
    # census reads the graph without touching what was profiled.
    census = dtype_census(tf.function(method.train_step).get_concrete_function((x, y))
                          .graph.as_graph_def())
    total = sum(t for _, t in times.values())
    if total <= 0:
        raise RuntimeError("the trace holds no op events (profiler not recording ops?)")
    fam = collections.defaultdict(float)
    for op_type, (_, t) in times.items():
        fam[family(op_type)] += t
    opts = describe_options(_TF_OPTIONS.value, _MIXED.value)
    print(f"\n{_METHOD.value} ({opts}), resnet18, batch {_BATCH.value}, K={_K.value}: "
          f"{wall:.2f} s/step under the profiler; op self time {total / _STEPS.value:.2f} s "
          f"per step on the executor threads")
    print("| op type | ops per step | s per step | share |")
    print("|---|---|---|---|")
    for op_type, (n, t) in sorted(times.items(), key=lambda kv: -kv[1][1])[:_TOP.value]:
        print(f"| {op_type} | {n / _STEPS.value:.0f} | {t / _STEPS.value:.2f} "
              f"| {100 * t / total:.1f}% |")
    print("\n| family | share |")
    print("|---|---|")
    for name in ("convolution", "batchnorm", "other"):
        print(f"| {name} | {100 * fam[name] / total:.1f}% |")
    print(f"\nbound: with every non-convolution op free, this step would be at most "
          f"{total / fam['convolution']:.2f}x faster" if fam["convolution"] else "")
    n, t = times.get("Cast", (0, 0.0))
    print(f"\nCast: {n / _STEPS.value:.0f} ops per step, {t / _STEPS.value:.2f} s per step, "
          f"{100 * t / total:.1f}% of the op time")
    _print_census(census, CENSUS_FAMILIES, census_family)


def _print_census(census, families, family_of):
    ops = sorted((op for op in census if op != "Cast"),
                 key=lambda op: (families.index(family_of(op)), op))
    # Low precisions first: the float32 column is what a mixed policy left in float32.
    order = {"bfloat16": 0, "float16": 1, "float32": 2}
    dtypes = sorted({d for op in ops for d in census[op]}, key=lambda d: (order.get(d, 3), d))
    print("\ndtype census of the traced train_step (graph nodes; a loop body counted once):")
    print("| op type | family | " + " | ".join(dtypes) + " |")
    print("|---|---|" + "---|" * len(dtypes))
    for op in ops:
        print(f"| {op} | {family_of(op)} | "
              + " | ".join(str(census[op].get(d, 0)) for d in dtypes) + " |")
    casts = census.get("Cast", {})
    print("Cast nodes: " + (", ".join(f"{direction} {n}" for direction, n in sorted(casts.items()))
                            or "none"))


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
