r"""TRADES' regulariser at its inner maximum, measured on exported models.

  python -m benchmarks.local_kl --data_dir=DIR --examples=512 \
      --saved_models=runs/precision_study/seed1/trades/export,runs/precision_study/seed1/trades+mixed/export

For each SavedModel (an export directory or a version directory), in float32: TRADES'
inner attack -- from ``x + 0.001 N(0, 1)``, ``--steps`` sign steps of ``--step_size``
on ``KL(p(x) || p(x_adv))`` inside the L-inf ball of ``--epsilon`` -- on the first
``--examples`` test images, then the per-example KL it reaches: the quantity TRADES
trains to be small, so how locally smooth the model is around the data.  Two models
trained alike should reach about the same KL; the precision study used it to find that
a bfloat16 stem made TRADES' models 1.4-1.9x rougher (``benchmarks/RESULTS.md``).
Every model sees the same images and the same start noise (``--seed``).

Prints one row per model (mean, median and 90th percentile of the KL, and the accuracy
on the KL-adversarial points); ``--output`` writes them as JSON.
"""

import os

from absl import flags

_MODELS = flags.DEFINE_list("saved_models", [], "SavedModel directories (exports).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Image folder with a test/ split "
                                "(default: the bundled cifar10_mini).")
_EXAMPLES = flags.DEFINE_integer("examples", 512, "Test images.")
_EPSILON = flags.DEFINE_float("epsilon", 8 / 255, "L-inf radius.")
_STEP = flags.DEFINE_float("step_size", 2 / 255, "Step.")
_STEPS = flags.DEFINE_integer("steps", 10, "Sign steps.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Batch size.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the start noise.")
_OUTPUT = flags.DEFINE_string("output", None, "JSON output (optional).")


def local_kl(logits_fn, x, y, *, epsilon, step_size, steps, seed, batch_size):
    """Per-example KL(p(x) || p(x_adv)) at TRADES' inner maximum, and the adversarial
    points' correctness.

    Args:
      logits_fn: function from NHWC float32 images in [0, 1] to logits.
      x: float32 images ``[N, H, W, C]`` in [0, 1].
      y: integer labels ``[N]``.
      epsilon: the L-inf radius.
      step_size: the sign step.
      steps: the number of steps.
      seed: the start noise's seed (the same draws for every model).
      batch_size: examples per batch.

    Returns:
      ``(kl [N] float64, correct [N] bool)``.
    """
    import numpy as np
    import tensorflow as tf

    from tf_st.attacks import losses
    from tf_st.attacks.pgd import pgd
    from tf_st.attacks.starts import random_start

    fn = lambda t: tf.cast(logits_fn(t), tf.float32)  # noqa: E731
    kls, correct = [], []
    for b0 in range(0, len(x), batch_size):
        xb = tf.constant(x[b0:b0 + batch_size], tf.float32)
        yb = tf.constant(y[b0:b0 + batch_size])
        # TRADES' own start, seeded per batch so every model sees the same draws.
        x_init = random_start(xb, "normal", std=0.001, seed=[seed, b0])
        loss = losses.kl_from_clean(fn, xb)
        x_adv = pgd(fn, xb, yb, epsilon=epsilon, step_size=step_size, steps=steps,
                    loss_fn=loss, x_init=x_init)
        z = fn(x_adv)
        kls.append(loss(z, yb).numpy().astype(np.float64))
        correct.append(np.argmax(z.numpy(), 1) == y[b0:b0 + batch_size])
    return np.concatenate(kls), np.concatenate(correct)


def main(argv):
    import numpy as np

    from tf_st import data
    from tf_st.fileio import atomic_write_json
    from tf_st.saved_model import load

    del argv
    paths = _MODELS.value
    if not paths:
        raise ValueError("--saved_models: give one or more SavedModel directories (exports)")
    for p in paths:
        if not os.path.isdir(p):
            raise ValueError(f"no SavedModel directory at {p}")
    if _DATA_DIR.value:
        split = data.load("image_folder", "test", data_dir=_DATA_DIR.value)
    else:
        split = data.load("cifar10_mini", "test")
    x, y = data.as_numpy(split, limit=_EXAMPLES.value)
    rows = []
    for p in paths:
        kl, correct = local_kl(load(p), x, y, epsilon=_EPSILON.value, step_size=_STEP.value,
                               steps=_STEPS.value, seed=_SEED.value,
                               batch_size=min(_BATCH.value, len(x)))
        rows.append({"model": p, "examples": int(len(x)), "kl_mean": float(kl.mean()),
                     "kl_median": float(np.median(kl)),
                     "kl_p90": float(np.percentile(kl, 90)),
                     "adversarial_accuracy": float(correct.mean())})
    print(f"TRADES inner maximum in float32: eps {_EPSILON.value:.5f}, {_STEPS.value} steps "
          f"of {_STEP.value:.5f} from x + 0.001 N(0, 1) (seed {_SEED.value}), {len(x)} "
          f"test images ({split.note or 'cifar10_mini'})")
    print("| model | mean KL | median KL | 90th pct KL | accuracy at x_adv |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['kl_mean']:.4f} | {r['kl_median']:.4f} | "
              f"{r['kl_p90']:.4f} | {100 * r['adversarial_accuracy']:.1f}% |")
    if _OUTPUT.value:
        atomic_write_json(_OUTPUT.value, {"rows": rows}, indent=1)
    return 0


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
