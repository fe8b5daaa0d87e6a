r"""tf_st's training step against the official PyTorch step, side by side in one run.

  python -m benchmarks.vs_reference --reference=st-at --reference_dir=DIR \
      --arch=resnet18 --batch_size=32,128 [--mixed_precision=bfloat16 --reference_autocast]

``--reference_dir`` is a checkout of the official repository (qizhangli/ST-AT for
``st-at``, yaodongyu/TRADES for ``trades``); this benchmark imports its loss function and
``models/resnet.py`` from there and never copies them.  The official code calls
``.cuda()`` on its tensors; on a CPU-only machine that call is made the identity in the
reference worker, nothing else of it is touched.

What is timed, per side, is one optimizer step exactly as the training script runs it:
* ST-AT ``train_stat.py``: ``zero_grad``; ``stat_loss(model, x, y, ...)`` (K inner
  iterations, the three outer forwards); ``zero_grad``; ``backward``; ``SGD.step``.
* TRADES ``train_trades_cifar10.py``: ``zero_grad``; ``trades_loss(...)``;
  ``backward``; ``SGD.step``.
* tf_st: the method's ``train_step`` as ``fit`` runs it (``train_on_batch`` on a
  batch already in memory), compiled as ``trainers.*`` compile it.

Both sides run in their own worker process (so neither library's thread pool or memory
high-water mark is counted against the other) with the same thread count; the parent
alternates their steps (one reference step, one tf_st step, ...) so that any drift of
the machine affects both alike, and reports medians, with the range of the ratios of
the steps run back to back (the noise within the run).  SGD(0.1, momentum 0.9, weight
decay 5e-4), K = 10, eps 8/255, step 2/255, beta 6 on both sides; random inputs in
[0, 1].

Precision: the official step runs in float32, as its scripts do.  ``--mixed_precision``
runs tf_st under Keras' ``mixed_<dtype>`` policy; ``--reference_autocast`` runs the
official loss call (``stat_loss`` / ``trades_loss``: every forward and the inner attack)
under ``torch.autocast("cpu", dtype=torch.bfloat16)`` with ``backward`` and
``SGD.step`` outside it, as PyTorch's AMP recipe does -- the peer with the same lever as
``--mixed_precision=bfloat16``.  Under autocast the model's logits are cast to float32
as they leave it (ST-AT's ``get_upper_lower`` writes them into float32 tensors by index,
which refuses bfloat16; tf_st's mixed models compute their logits in float32 too).  The
header of the table says which official step was timed.

Also reported, from the same run: achieved FLOP/s of each step (analytic FLOPs of what
each side computes, see ``FLOPS``) against the float32 conv and matmul rates measured in
the tf_st worker (``benchmarks.flops``) and, for a side computing in a lower precision,
against that dtype's rates measured the same way (a 3x3 convolution and a matmul of the
same shapes, e.g. in bfloat16: the fraction of the machine's bfloat16 limit achieved);
each worker's peak resident memory; and the tf_st input pipeline's throughput alone (the
bundled CIFAR-10 subset, crop+flip augmentation, this batch size) against the tf_st
step's -- the pipeline must be much faster than the step.
"""

import os
import statistics
import sys
import time

from absl import flags

from benchmarks.reference_step import REFERENCES, check_reference, reference_step
from benchmarks.tf_step import build_tf_st, describe_options, parse_options, random_batch


_REFERENCE = flags.DEFINE_enum("reference", "st-at", sorted(REFERENCES), "Official code to race.")
_REFERENCE_DIR = flags.DEFINE_string("reference_dir", None,
                                     "Checkout of qizhangli/ST-AT or yaodongyu/TRADES.")
_ARCH = flags.DEFINE_enum("arch", "resnet18", ["resnet18"], "Architecture (both sides).")
_BATCH = flags.DEFINE_list("batch_size", ["32", "128"], "Batch sizes.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps per side and batch size (alternating).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed steps per side first (tracing).")
_THREADS = flags.DEFINE_integer("threads", 0, "Threads per side (0: all cores): PyTorch's "
                                "torch.set_num_threads, TensorFlow's intra-op pool.")
_INTER = flags.DEFINE_integer("inter_op_threads", 0, "tf_st's inter-op pool (0: TensorFlow's "
                              "default, as the trainers).")
_K = flags.DEFINE_integer("inner_steps", 10, "Inner iterations K.")
_JIT = flags.DEFINE_bool("jit_compile", False, "tf_st: XLA-compile the train step.")
_MIXED = flags.DEFINE_enum(
    "mixed_precision", None, ["bfloat16", "float16"],
    "tf_st in this mixed precision (Keras' mixed_<dtype> policy); the official step stays in "
    "float32 unless --reference_autocast.")
_AUTOCAST = flags.DEFINE_bool(
    "reference_autocast", False,
    "Run the official loss call (forwards and inner attack) under torch.autocast('cpu', "
    "dtype=torch.bfloat16), backward and optimizer step outside it (PyTorch's AMP recipe): "
    "the peer of --mixed_precision=bfloat16.")
_TF_OPTIONS = flags.DEFINE_list(
    "tf_options", [], "tf_st options key=value: fused_bn=false (composite BatchNorm), "
    "group_forwards=false (separate forwards), fold_bn=true (inference-mode BN folded into "
    "the convolutions), pad_layers=true (a ZeroPadding2D layer before every 3x3 conv), "
    "jit_compile=true (XLA on the whole step), jit_attack=true (XLA on the inner attack "
    "only), dependency_optimization=true (Grappler's dependency optimizer left on), "
    "bfc_allocator=true (TF_CPU_ALLOCATOR_USE_BFC: pooled host memory), "
    "inter_op_threads=N (as the flag), or a method hyperparameter.")
_ABLATE = flags.DEFINE_list(
    "ablate", [], "Also time tf_st with these options added (key=value, as --tf_options) in a "
    "third worker, its steps alternating with the other two: a lever's effect measured in "
    "one run.")


# Analytic FLOPs of one step, in units of one forward pass F (backward to the input ~F,
# backward to input and weights ~2F), from what each side executes; n = inner iterations
# in which some row selects the clean point (counted on the reference: its forward calls
# per step are 2K + 4 + n; taken as the same for tf_st, whose data and model are alike).
#   ST-AT official: F (clean, no grad) + K (2F forwards + 2F input backward)
#       + n (F forward + F backward of the clean batch) + 3F outer forwards
#       + 6F parameter backward = (4K + 10 + 2n) F.
#   ST tf_st: the clean forward is kept, so n adds only its backward: (4K + 10 + n) F.
#   TRADES official: every inner iteration forwards x_adv *and* x (eval mode) and
#       backpropagates to x_adv: K (3F) + 3F + 6F = (3K + 9) F.
#   TRADES tf_st: the clean logits once, then K (F + F), and two outer forwards (the
#       third, a repeat of the clean one, is only a statistics update) with their
#       parameter backward: F + 2K F + 2F + 4F = (2K + 7) F.
FLOPS = {
    ("st-at", "reference"): lambda k, n: 4 * k + 10 + 2 * n,
    ("st-at", "tf_st"): lambda k, n: 4 * k + 10 + n,
    ("trades", "reference"): lambda k, n: 3 * k + 9,
    ("trades", "tf_st"): lambda k, n: 2 * k + 7,
}


# ---------------------------------------------------------------------- workers
def _peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reference_worker(conn, reference, reference_dir, threads, k, autocast=False):
    step, make_batch, forwards = reference_step(reference, reference_dir, threads, k,
                                                autocast=autocast)
    _serve(conn, step, make_batch, {"forwards": forwards})


def _tf_worker(conn, key, threads, inter_op, k, jit_compile, options, mixed):
    options = dict(options)
    if options.pop("bfc_allocator", False):
        # TensorFlow's pooling allocator for host memory instead of malloc; read when
        # the runtime starts, so before any op.
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    import keras
    if mixed:
        keras.mixed_precision.set_global_policy(f"mixed_{mixed}")
    from benchmarks.flops import conv_flops_per_second, forward_flops, matmul_flops_per_second

    clf, method = build_tf_st(key, k, jit_compile, options, threads, inter_op)

    def step(x, y):
        method.train_on_batch(x, y)

    extras = {"forward_flops": lambda: forward_flops(clf),
              "matmul_rate": lambda dtype="float32": matmul_flops_per_second(dtype=dtype),
              "conv_rate": lambda dtype="float32": conv_flops_per_second(dtype=dtype),
              "pipeline": _pipeline_images_per_second}
    _serve(conn, step, random_batch, extras)


def _pipeline_images_per_second(batch_size, batches=40):
    from tf_st import data
    split = data.load("cifar10_mini", "train")
    ds = data.train_pipeline(split, batch_size, "crop_flip", seed=0).repeat()
    it = iter(ds)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def _serve(conn, step, make_batch, extras):
    """Answers the parent's requests until ``stop``; every answer is ``(ok, value)``."""
    batches = {}
    while True:
        request, *args = conn.recv()
        try:
            if request == "stop":
                conn.send((True, None))
                return
            if request == "step":
                b, n = args
                if b not in batches:
                    batches[b] = make_batch(b)
                start = time.perf_counter()
                for _ in range(n):
                    step(*batches[b])
                conn.send((True, (time.perf_counter() - start) / n))
            elif request == "peak_rss_mb":
                conn.send((True, _peak_rss_mb()))
            else:
                conn.send((True, extras[request](*args)))
        except Exception as e:  # noqa: BLE001 - reported by the parent
            import traceback
            conn.send((False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class _Worker:
    def __init__(self, ctx, target, *args):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child,) + args, daemon=True)
        self.process.start()

    def ask(self, *request):
        self.conn.send(request)
        ok, value = self.conn.recv()
        if not ok:
            raise RuntimeError(f"worker failed on {request[0]!r}: {value}")
        return value

    def close(self):
        try:
            self.ask("stop")
        finally:
            self.process.join(timeout=30)


# ------------------------------------------------------------------------- main
def main(argv):
    del argv
    import multiprocessing
    reference, reference_dir = _REFERENCE.value, _REFERENCE_DIR.value
    check_reference(reference, reference_dir)
    batch_sizes = [int(b) for b in _BATCH.value]
    if any(b < 1 for b in batch_sizes):
        raise ValueError(f"--batch_size: positive integers, got {_BATCH.value}")
    options, ablated = parse_options(_TF_OPTIONS.value), parse_options(_ABLATE.value)
    threads = _THREADS.value or os.cpu_count()
    key = REFERENCES[reference][0]
    ctx = multiprocessing.get_context("spawn")
    ref = _Worker(ctx, _reference_worker, reference, os.path.abspath(reference_dir), threads,
                  _K.value, _AUTOCAST.value)
    ours = _Worker(ctx, _tf_worker, key, threads, _INTER.value, _K.value, _JIT.value, options,
                   _MIXED.value)
    workers = {"reference": ref, "tf_st": ours}
    if ablated:
        workers["ablated"] = _Worker(ctx, _tf_worker, key, threads, _INTER.value, _K.value,
                                     _JIT.value, {**options, **ablated}, _MIXED.value)
    try:
        forward = ours.ask("forward_flops")
        # The dtype each side's convolutions compute in, and the measured rates of each.
        dtypes = {"reference": "bfloat16" if _AUTOCAST.value else "float32",
                  "tf_st": _MIXED.value or "float32"}
        rates = {d: (ours.ask("conv_rate", d), ours.ask("matmul_rate", d))
                 for d in ["float32"] + sorted(set(dtypes.values()) - {"float32"})}
        conv_rate = rates["float32"][0]
        print(f"machine: {os.cpu_count()} cores, {threads} threads per side; measured rates "
              f"(TF): " + "; ".join(f"{d} conv {c / 1e9:.1f} GFLOP/s, matmul {m / 1e9:.1f} "
                                    f"GFLOP/s" for d, (c, m) in rates.items()), flush=True)
        rows = []
        for b in batch_sizes:
            for worker in workers.values():
                worker.ask("step", b, _WARMUP.value)
            times = {side: [] for side in workers}
            calls = ref.ask("forwards")
            for _ in range(_STEPS.value):
                for side, worker in workers.items():
                    times[side].append(worker.ask("step", b, 1))
            calls = (ref.ask("forwards") - calls) / _STEPS.value
            pipeline = ours.ask("pipeline", b)
            sec = {side: statistics.median(t) for side, t in times.items()}
            clean_iterations = max(calls - 2 * _K.value - 4, 0) if reference == "st-at" else 0
            # Each alternation's own ratio: both steps ran back to back, so their ratio
            # is free of the drift between alternations; its spread shows the noise.
            pairs = [r / t for r, t in zip(times["reference"], times["tf_st"])]
            rows.append((b, sec, pipeline, clean_iterations, pairs))
            print(f"  batch {b}: reference {sec['reference']:.2f} s/step "
                  f"({calls:.1f} forward calls per step), tf_st {sec['tf_st']:.2f} s/step"
                  + (f", tf_st with {','.join(_ABLATE.value)} {sec['ablated']:.2f} s/step"
                     if ablated else ""), flush=True)
        rss = {side: worker.ask("peak_rss_mb") for side, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()

    opts = describe_options(_TF_OPTIONS.value, _MIXED.value)
    official = ("under torch.autocast('cpu', bfloat16)" if _AUTOCAST.value else "in float32")
    print(f"\n{reference} {official} vs tf_st {key} "
          f"({opts}{', jit_compile' if _JIT.value else ''}"
          f"{f', inter_op_threads={_INTER.value}' if _INTER.value else ''}), "
          f"{_ARCH.value}, K={_K.value}, {threads} threads, median of {_STEPS.value} "
          f"alternating steps")
    # A side computing in a lower precision is also read against that dtype's conv rate.
    low = [side for side in ("reference", "tf_st") if dtypes[side] != "float32"]
    names = {"reference": "official", "tf_st": "tf_st"}
    print("| batch | official img/s | tf_st img/s | tf_st / official (range over alternations) "
          "| official GFLOP/s (% conv rate) | tf_st GFLOP/s (% conv rate) "
          + "".join(f"| {names[side]} % of {dtypes[side]} conv rate " for side in low)
          + "| tf_st pipeline img/s (x step) |")
    print("|---|---|---|---|---|---|" + "---|" * len(low) + "---|")
    for b, sec, pipeline, n, pairs in rows:
        gflops = {side: forward * b * FLOPS[(reference, side)](_K.value, n) / sec[side] / 1e9
                  for side in ("reference", "tf_st")}
        ips = {side: b / s for side, s in sec.items()}
        print(f"| {b} | {ips['reference']:.2f} | {ips['tf_st']:.2f} | "
              f"**{ips['tf_st'] / ips['reference']:.2f}** ({min(pairs):.2f}-{max(pairs):.2f}) | "
              f"{gflops['reference']:.1f} "
              f"({100 * gflops['reference'] * 1e9 / conv_rate:.0f}%) | {gflops['tf_st']:.1f} "
              f"({100 * gflops['tf_st'] * 1e9 / conv_rate:.0f}%) | "
              + "".join(f"{100 * gflops[side] * 1e9 / rates[dtypes[side]][0]:.0f}% | "
                        for side in low)
              + f"{pipeline:.0f} ({pipeline / ips['tf_st']:.0f}x) |")
    if ablated:
        print(f"\nin the same run, tf_st with {','.join(_ABLATE.value)}:")
        print("| batch | img/s | / official | / tf_st |")
        print("|---|---|---|---|")
        for b, sec, *_ in rows:
            print(f"| {b} | {b / sec['ablated']:.2f} | **{sec['reference'] / sec['ablated']:.2f}** "
                  f"| {sec['tf_st'] / sec['ablated']:.2f} |")
    print(f"\npeak resident memory per worker (all batch sizes): official "
          f"{rss['reference']:.0f} MB, tf_st {rss['tf_st']:.0f} MB"
          + (f", tf_st with {','.join(_ABLATE.value)} {rss['ablated']:.0f} MB" if ablated else ""))
    sys.stdout.flush()


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
