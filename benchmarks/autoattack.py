r"""Speed of the AutoAttack port against our PGD, on CIFAR-10 test images.

  python -m benchmarks.autoattack --arch=resnet18 --n_per_class=50 --iters=10
  python -m benchmarks.autoattack --arch=resnet18 --full   # the real AA standard run

Loads ``n_per_class`` images per class (classes in canonical order) from
a CIFAR-10 image folder (``--data``; default ``$TF_ST_SHARED_DATA/cifar10-jpeg``).  With random-init weights (the
default) the labels are the model's own predictions, so every point is clean-correct and
gets attacked (timing, not robustness); ``--weights`` loads a checkpoint and uses the true
labels.

Per attack it times ``--iters`` iterations on all images (after a warm-up call that
traces / compiles), in batches of ``--batch_size``, and reports seconds, seconds per
iteration, gradient (forward+backward) passes per second and the extrapolation to the
``standard`` settings when every point stays robust (upper bound):
  PGD-K, APGD-CE:  one forward+backward per iteration (APGD: +1 at the start)
  APGD-T (1 target): one clean forward + APGD; standard = 9 targets
  FAB-T (1 target): forward+backward and one extra forward per iteration; 9 targets
  Square: one forward per query (5,000 queries, stops when all are fooled)
``--full`` runs ``tf_st.attacks.autoattack.evaluate`` with the standard version and
prints its per-attack seconds.
"""

import os
import sys
import time

from absl import flags


_ARCH = flags.DEFINE_string("arch", "resnet18", "Architecture key of tf_st.models.build.")
_WEIGHTS = flags.DEFINE_string("weights", None, "Optional .weights.h5 to load.")
_SHARED = os.environ.get("TF_ST_SHARED_DATA")
_DATA = flags.DEFINE_string(
    "data", os.path.join(_SHARED, "cifar10-jpeg") if _SHARED else None,
    "CIFAR-10 image folder (train/, test/); default $TF_ST_SHARED_DATA/cifar10-jpeg.")
_NPC = flags.DEFINE_integer("n_per_class", 50, "Images per class.")
_BS = flags.DEFINE_integer("batch_size", 500, "Batch size.")
_ITERS = flags.DEFINE_integer("iters", 10, "Timed iterations per attack (queries: x10).")
_EPS = flags.DEFINE_float("epsilon", 8 / 255, "L-inf radius.")
_JIT = flags.DEFINE_boolean("jit_compile", False, "XLA-compile the attack functions.")
_FULL = flags.DEFINE_boolean("full", False, "Also run the full AA standard evaluation.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed repetitions (the minimum is kept).")
_ONLY = flags.DEFINE_list("only", ["pgd", "apgd-ce", "apgd-t", "fab-t", "square"],
                          "Attacks to time.")

def load_images(root, n_per_class):
    """The first ``n_per_class`` test images of every class, through the project's
    image-folder loader (class-interleaved, so a prefix is balanced)."""
    from tf_st import data
    split = data.load("image_folder", "test", data_dir=root)
    return data.as_numpy(split, limit=n_per_class * split.num_classes)


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from tf_st import models
    from tf_st.attacks import autoattack as aa
    from tf_st.attacks.apgd import apgd, target_by_rank
    from tf_st.attacks.fab import fab_targeted
    from tf_st.attacks.pgd import pgd
    from tf_st.attacks.square import square_linf

    if not _DATA.value:
        sys.exit("pass --data (a CIFAR-10 image folder) or set $TF_ST_SHARED_DATA")
    x, y = load_images(_DATA.value, _NPC.value)
    model = models.build(_ARCH.value, 10)
    if _WEIGHTS.value:
        model.load_weights(_WEIGHTS.value)

    def logits_fn(z):
        return model(z, training=False)

    bs = min(_BS.value, len(x))
    if not _WEIGHTS.value:
        y = np.concatenate([np.argmax(logits_fn(x[i:i + bs]).numpy(), 1)
                            for i in range(0, len(x), bs)])
    k = _ITERS.value
    eps = _EPS.value
    n = len(x)
    spec = [tf.TensorSpec([bs, 32, 32, 3], tf.float32), tf.TensorSpec([bs], tf.int64)]
    jit = _JIT.value or None
    seed = tf.constant([0, 1], tf.int64)

    runs = {
        "pgd": (lambda xb, yb: pgd(logits_fn, xb, yb, epsilon=eps, step_size=2 / 255,
                                   steps=k, seed=seed), k, "grad", k),
        "apgd-ce": (lambda xb, yb: apgd(logits_fn, xb, yb, epsilon=eps, n_iter=k,
                                        seed=seed)[0], k + 1, "grad", k),
        "apgd-t": (lambda xb, yb: apgd(logits_fn, xb, yb, epsilon=eps, n_iter=k,
                                       loss="dlr-targeted", seed=seed,
                                       y_target=target_by_rank(logits_fn(xb), 2))[0],
                   k + 1, "grad", k),
        "fab-t": (lambda xb, yb: fab_targeted(logits_fn, xb, yb, epsilon=eps, n_iter=k)[0],
                  k, "grad+fwd", k),
        "square": (lambda xb, yb: square_linf(logits_fn, xb, yb, epsilon=eps,
                                              n_queries=10 * k, seed=seed,
                                              return_details=True), 10 * k, "fwd", 10 * k),
    }
    standard_iters = {"pgd": 100, "apgd-ce": 100, "apgd-t": 900, "fab-t": 900,
                      "square": 5000}
    print(f"{_ARCH.value}: {n} images, batch {bs}, {k} iterations, jit_compile={bool(jit)}, "
          f"threads={tf.config.threading.get_intra_op_parallelism_threads()}")
    per_iter, per_pass = {}, {}
    for name in _ONLY.value:
        body, passes, kind, iters = runs[name]
        fn = tf.function(body, input_signature=spec, jit_compile=jit)
        pad = (-n) % bs
        xp = np.concatenate([x, x[:pad]]) if pad else x
        yp = np.concatenate([y, y[:pad]]) if pad else y
        fn(tf.constant(xp[:bs]), tf.constant(yp[:bs]))  # trace / compile
        times = []
        for _ in range(_REPEATS.value):
            t0 = time.perf_counter()
            extra = ""
            for i in range(0, len(xp), bs):
                out = fn(tf.constant(xp[i:i + bs]), tf.constant(yp[i:i + bs]))
                if name == "square":
                    it = int(out[2]["iterations"])
                    extra = f" (ran {it} of {iters} queries in the last batch)"
                else:
                    _ = out.numpy()
            times.append(time.perf_counter() - t0)
        dt = min(times)
        per_iter[name] = dt / iters
        per_pass[name] = dt / passes
        rate = len(xp) * passes / dt
        print(f"{name:8s} {dt:8.2f} s  {dt / iters:7.3f} s/iter  {rate:8.1f} {kind} passes/s"
              f"  -> standard ({standard_iters[name]} iters, all robust): "
              f"{dt / iters * standard_iters[name]:9.1f} s{extra}", flush=True)
    if "pgd" in per_iter and "apgd-ce" in per_iter:
        print(f"APGD-CE / PGD seconds per iteration: "
              f"{per_iter['apgd-ce'] / per_iter['pgd']:.3f} (APGD runs one extra gradient "
              f"pass at the start); per gradient pass: "
              f"{per_pass['apgd-ce'] / per_pass['pgd']:.3f}")
    if _FULL.value:
        res = aa.evaluate(logits_fn, x, y, epsilon=eps, seed=0, batch_size=bs,
                          jit_compile=bool(jit), architecture=_ARCH.value,
                          dataset="cifar10")
        for a in res.attacks:
            print(f"{a.name:8s} robust {a.robust_accuracy:.2%}  {a.seconds:.1f} s")


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
