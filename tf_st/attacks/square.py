"""Square Attack (Andriushchenko et al. 2020), L-inf, score-based, as in AutoAttack's
``standard`` version
(docs/reference-implementations.md "AutoAttack / Square").

* Init: ``x_best = clip(x + eps * s, 0, 1)`` with ``s`` in {-1, +1} constant along the
  image height (vertical stripes: one sign per column and channel).
* Loss: the margin ``z_y - max_{j != y} z_j``, minimised; ``<= 0`` means fooled.
* Iteration ``i`` (0-based): ``p = p_init`` for ``i <= 10``, halved after iterations
  10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 (``resc_schedule=False``); square side
  ``max(round(sqrt(p * H * W)), 1)`` -> 29, 20, 14, 10, 7, 5, 4, 3 for 32x32x3.  A square
  at a random position ``(vh, vw)`` in ``[0, H - s - 1] x [0, W - s - 1]`` gets a random
  sign per channel; candidate ``= P(x_best + 2 eps * sign in the square)``; accepted if
  the margin decreases or the candidate is misclassified.  Examples already fooled are
  frozen; the loop stops once every example is fooled.

**Random draws: per example, not per batch.**  The official code draws one square
position and one sign vector per iteration and uses it for *every* image of the batch,
so its results depend on the batch size and on which images share a batch.  Here each
example draws its own position and signs (from a stateless seed and the iteration
number), which is the attack as described in the paper and makes examples independent
of each other; results still depend on the seed and on the example's position within
its batch, so they are reproducible for a fixed seed and batching, but not bit-equal to
the official ones.

With fixed shapes, every iteration forwards the whole batch (fooled rows are masked, not
removed); ``queries`` counts only the forwards of still-active examples, as officially.
"""

import math

import numpy as np
import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.pgd import project


def p_schedule(i, p_init=0.8):
    """``p`` at (0-based) iteration ``i`` with ``resc_schedule=False``.

    Args:
      i: the iteration.
      p_init: the initial fraction of pixels.

    Returns:
      The fraction ``p``.
    """
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                       (4000, 64), (6000, 128), (8000, 256)):
        if i <= bound:
            return p_init / div
    return p_init / 512


def square_sides(n_queries, height, width, p_init=0.8):
    """Side length per iteration: ``max(round(sqrt(p * H * W)), 1)``, never larger than the image.

    (The official ``sqrt(p * n_features / C)``.)

    Args:
      n_queries: the number of iterations.
      height: the image height.
      width: the image width.
      p_init: the initial fraction of pixels.

    Returns:
      int32 numpy array ``[n_queries]``.
    """
    return np.array([min(max(int(round(math.sqrt(p_schedule(i, p_init) * height * width))), 1),
                         height - 1, width - 1) for i in range(n_queries)], np.int32)


def square_linf(logits_fn, x, y, *, epsilon, n_queries=5000, p_init=0.8, seed=None,
                return_details=False):
    """One Square run on the NHWC batch ``x``.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      y: integer labels ``[B]``.
      epsilon: the L-inf budget, in [0, 1] units.
      n_queries: the query budget.
      p_init: the initial fraction of pixels a square covers.
      seed: stateless seed (shape [2] ints); None draws one.
      return_details: also return the details dict.

    Returns:
      ``(x_adv, fooled)`` (``x_adv`` is the best point where fooled, else ``x``); with
      ``return_details`` also a dict with ``queries`` (per example, init included),
      ``iterations`` (loop iterations run) and ``margin``.

    Raises:
      ValueError: ``x`` is not 4-D (NHWC).
    """
    x = tf.convert_to_tensor(x)
    dtype = x.dtype
    y = tf.cast(y, tf.int32)
    if len(x.shape) != 4:
        raise ValueError("square_linf expects NHWC images")
    batch = tf.shape(x)[0]
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    eps = losses.as_dtype(epsilon, dtype)
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
    seed = tf.cast(seed, tf.int64)
    sides = tf.constant(square_sides(max(n_queries, 1), height, width, p_init))

    def margin_of(z):
        return losses.margin(logits_fn(z), y)

    stripes = tf.sign(tf.random.stateless_uniform(
        [batch, 1, width, channels], tf.random.experimental.stateless_fold_in(seed, -1),
        -1.0, 1.0, dtype=dtype))
    stripes = tf.where(stripes == 0, tf.ones_like(stripes), stripes)
    x_best = tf.clip_by_value(x + eps * stripes, 0.0, 1.0)
    x_init = x_best
    margin_min = margin_of(x_best)
    queries = tf.ones([batch], tf.int32)
    rows = tf.range(height)[None, :, None, None]
    cols = tf.range(width)[None, None, :, None]

    def cond(i, x_best, margin_min, queries):
        return tf.logical_and(i < n_queries, tf.reduce_any(margin_min > 0))

    def body(i, x_best, margin_min, queries):
        s = sides[i]
        it_seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(i, tf.int64))
        u = tf.random.stateless_uniform([batch, 2], it_seed, dtype=tf.float32)
        vh = tf.minimum(tf.cast(tf.floor(u[:, 0] * tf.cast(height - s, tf.float32)),
                                tf.int32), height - s - 1)
        vw = tf.minimum(tf.cast(tf.floor(u[:, 1] * tf.cast(width - s, tf.float32)),
                                tf.int32), width - s - 1)
        sign = tf.sign(tf.random.stateless_uniform(
            [batch, 1, 1, channels], tf.random.experimental.stateless_fold_in(it_seed, 7),
            -1.0, 1.0, dtype=dtype))
        sign = tf.where(sign == 0, tf.ones_like(sign), sign)
        vh = vh[:, None, None, None]
        vw = vw[:, None, None, None]
        in_square = tf.logical_and(
            tf.logical_and(rows >= vh, rows < vh + s),
            tf.logical_and(cols >= vw, cols < vw + s))
        delta = tf.where(in_square, 2.0 * eps * sign, tf.zeros([], dtype))
        candidate = project(x_best + delta, x, eps)
        m = margin_of(candidate)
        active = margin_min > 0
        accept = tf.logical_and(active, tf.logical_or(m < margin_min, m <= 0))
        x_best = tf.where(accept[:, None, None, None], candidate, x_best)
        margin_min = tf.where(accept, m, margin_min)
        queries = queries + tf.cast(active, tf.int32)
        # Random draws shaped by the dynamic batch size lose a static batch of 1, which
        # tf.while_loop rejects; the loop variables keep their shapes by construction.
        return (i + 1, tf.ensure_shape(x_best, x.shape),
                tf.ensure_shape(margin_min, x.shape[:1]), tf.ensure_shape(queries, x.shape[:1]))

    iterations, x_best, margin_min, queries = tf.while_loop(
        cond, body, (tf.constant(0), x_best, margin_min, queries),
        maximum_iterations=max(n_queries, 0))
    fooled = margin_min <= 0
    x_adv = tf.where(fooled[:, None, None, None], x_best, x)
    if not return_details:
        return x_adv, fooled
    return x_adv, fooled, dict(queries=queries, iterations=iterations, margin=margin_min,
                               x_best=x_best, x_init=x_init)
