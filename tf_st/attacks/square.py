"""Square Attack (Andriushchenko et al. 2020), score-based, in L-inf and L2, as in
AutoAttack's ``standard`` version
(docs/reference-implementations.md "AutoAttack / Square").

L-inf (:func:`square_linf`):

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

L2 (:func:`square_l2`), the official L2 branch:

* Squares carry the pattern ``eta(s)``: the top half ``+``, the bottom half ``-``, each
  a stack of centred rectangles weighted ``1 / (k + 1)^2``, unit L2 norm, transposed with
  probability 1/2.
* Init: a grid of ``(H // s0) x (W // s0)`` squares of side ``s0 = H // 5`` starting at
  ``(H - 5 s0) // 2``, each ``eta(s0)`` times a random sign per channel;
  ``x_best = clip(x + eps * delta / ||delta||, 0, 1)``.
* Iteration: side ``s = max(round(sqrt(p H W)), 3)``, made odd, at most ``min(H, W)``;
  two random windows ``W1``, ``W2``.  In ``W1`` the new perturbation is
  ``eta(s) * sign + delta|W1 / ||delta|W1||`` (per channel), rescaled per channel to
  ``sqrt(max(eps^2 - ||delta||^2, 0) / C + ||delta|(W1 u W2)||^2)``; ``W2`` is zeroed,
  ``W1`` set, and the candidate is ``clip(x + eps * delta / ||delta||, 0, 1)``, where
  ``delta = x_best - x``.  Acceptance and the stopping rule are L-inf's.

Its random draws are per example too (positions, transposes, signs); ``draws`` replaces
them, which is how a test feeds the official run's own draws and compares the two
iterate for iterate.
"""

import math

import numpy as np
import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.pgd import l2_norm, project


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


def _inputs(name, x, y, epsilon, seed):
    """``(x, y, eps, seed)`` as both norms use them: NHWC ``x`` (checked), int32 labels,
    ``epsilon`` in ``x``'s dtype, an int64 stateless seed (a fresh one for None)."""
    x = tf.convert_to_tensor(x)
    if len(x.shape) != 4:
        raise ValueError(f"{name} expects NHWC images")
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
    return (x, tf.cast(y, tf.int32), losses.as_dtype(epsilon, x.dtype),
            tf.cast(seed, tf.int64))


def _random_search(logits_fn, x, y, x_init, propose, n_queries, return_details):
    """The search both norms share: from ``x_init``, ``propose(i, x_best, active)`` gives
    each iteration's candidates; a candidate replaces the best point of a still-active
    example if its margin falls or it is misclassified; fooled examples are frozen and
    the loop stops once all are fooled (the official acceptance and stopping rules)."""
    def margin_of(z):
        return losses.margin(logits_fn(z), y)

    def cond(i, x_best, margin_min, queries):
        return tf.logical_and(i < n_queries, tf.reduce_any(margin_min > 0))

    def body(i, x_best, margin_min, queries):
        active = margin_min > 0
        candidate = propose(i, x_best, active)
        m = margin_of(candidate)
        accept = tf.logical_and(active, tf.logical_or(m < margin_min, m <= 0))
        x_best = tf.where(accept[:, None, None, None], candidate, x_best)
        margin_min = tf.where(accept, m, margin_min)
        queries = queries + tf.cast(active, tf.int32)
        # Random draws shaped by the dynamic batch size lose a static batch of 1, which
        # tf.while_loop rejects; the loop variables keep their shapes by construction.
        return (i + 1, tf.ensure_shape(x_best, x.shape),
                tf.ensure_shape(margin_min, x.shape[:1]), tf.ensure_shape(queries, x.shape[:1]))

    margin_min = margin_of(x_init)
    queries = tf.ones([tf.shape(x)[0]], tf.int32)
    iterations, x_best, margin_min, queries = tf.while_loop(
        cond, body, (tf.constant(0), x_init, margin_min, queries),
        maximum_iterations=max(n_queries, 0))
    fooled = margin_min <= 0
    x_adv = tf.where(fooled[:, None, None, None], x_best, x)
    if not return_details:
        return x_adv, fooled
    return x_adv, fooled, dict(queries=queries, iterations=iterations, margin=margin_min,
                               x_best=x_best, x_init=x_init)


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
    x, y, eps, seed = _inputs("square_linf", x, y, epsilon, seed)
    dtype, batch = x.dtype, tf.shape(x)[0]
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    sides = tf.constant(square_sides(max(n_queries, 1), height, width, p_init))

    stripes = tf.sign(tf.random.stateless_uniform(
        [batch, 1, width, channels], tf.random.experimental.stateless_fold_in(seed, -1),
        -1.0, 1.0, dtype=dtype))
    stripes = tf.where(stripes == 0, tf.ones_like(stripes), stripes)
    x_init = tf.clip_by_value(x + eps * stripes, 0.0, 1.0)
    rows = tf.range(height)[None, :, None, None]
    cols = tf.range(width)[None, None, :, None]

    def propose(i, x_best, active):
        del active
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
        return project(x_best + delta, x, eps)

    return _random_search(logits_fn, x, y, x_init, propose, n_queries, return_details)


def l2_sides(n_queries, height, width, p_init=0.8):
    """Side length per iteration in L2: ``max(round(sqrt(p * H * W)), 3)``, made odd,
    at most ``min(H, W)``.

    Args:
      n_queries: the number of iterations.
      height: the image height.
      width: the image width.
      p_init: the initial fraction of pixels.

    Returns:
      int32 numpy array ``[n_queries]``.
    """
    out = []
    for i in range(n_queries):
        side = max(int(round(math.sqrt(p_schedule(i, p_init) * height * width))), 3)
        side += 1 - side % 2
        out.append(min(side, height, width))
    return np.array(out, np.int32)


def _rectangles(rows, cols):
    delta = np.zeros((rows, cols))
    r0, c0 = rows // 2, cols // 2
    for k in range(max(rows // 2 + 1, cols // 2 + 1)):
        delta[max(r0, 0):min(r0 + 2 * k + 1, rows), max(c0, 0):min(c0 + 2 * k + 1, cols)] += (
            1.0 / (k + 1) ** 2)
        r0, c0 = r0 - 1, c0 - 1
    return delta / np.sqrt((delta ** 2).sum())


def eta_l2(side):
    """The L2 square's pattern (before the random transpose): ``+`` rectangles in the
    top half, ``-`` in the bottom half, unit L2 norm.

    Args:
      side: the square's side (1 gives ``[[-1]]``, as officially).

    Returns:
      float64 numpy array ``[side, side]``.
    """
    delta = np.zeros((side, side))
    delta[:side // 2] = _rectangles(side // 2, side)
    delta[side // 2:] = -_rectangles(side - side // 2, side)
    return delta / np.sqrt((delta ** 2).sum())


def _init_grid(height, width):
    """Top-left corners and side of the L2 init's grid of squares."""
    side = max(height // 5, 1)
    start = (height - side * 5) // 2
    corners = [(start + i * side, start + j * side)
               for i in range(height // side) for j in range(width // side)]
    return side, corners


class _StatelessDraws:
    """The default draws of :func:`square_l2`: per example, from a stateless seed."""

    def __init__(self, seed, batch, channels, dtype):
        self.seed, self.batch, self.channels, self.dtype = seed, batch, channels, dtype

    def _signs(self, shape, seed):
        s = tf.sign(tf.random.stateless_uniform(shape, seed, -1.0, 1.0, dtype=self.dtype))
        return tf.where(s == 0, tf.ones_like(s), s)

    def init(self, n_squares):
        seed = tf.random.experimental.stateless_fold_in(self.seed, -1)
        u = tf.random.stateless_uniform([self.batch, n_squares], seed)
        return (tf.cast(u > 0.5, tf.int32),
                self._signs([self.batch, n_squares, self.channels],
                            tf.random.experimental.stateless_fold_in(seed, 7)))

    def step(self, i, room_h, room_w, active):
        del active
        it_seed = tf.random.experimental.stateless_fold_in(self.seed, tf.cast(i, tf.int64))
        u = tf.random.stateless_uniform([self.batch, 5], it_seed)
        pos = [tf.minimum(tf.cast(tf.floor(u[:, k] * tf.cast(room, tf.float32)), tf.int32),
                          tf.maximum(room - 1, 0))
               for k, room in enumerate((room_h, room_w, room_h, room_w))]
        return (*pos, tf.cast(u[:, 4] > 0.5, tf.int32),
                self._signs([self.batch, self.channels],
                            tf.random.experimental.stateless_fold_in(it_seed, 7)))


def square_l2(logits_fn, x, y, *, epsilon, n_queries=5000, p_init=0.8, seed=None,
              return_details=False, draws=None):
    """One L2 Square run on the NHWC batch ``x``.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      y: integer labels ``[B]``.
      epsilon: the L2 radius, in [0, 1] units.
      n_queries: the query budget.
      p_init: the initial fraction of pixels a square covers.
      seed: stateless seed (shape [2] ints); None draws one.
      return_details: also return the details dict.
      draws: None (per-example stateless draws from ``seed``), or an object with
        ``init(n_squares) -> (transposes [B, K] int32, signs [B, K, C])`` and
        ``step(i, room_h, room_w, active) -> (vh, vw, vh2, vw2, transpose [B] int32,
        signs [B, C])`` (window corners in ``[0, room)``; ``active``: the examples not
        yet fooled), graph-safe.

    Returns:
      ``(x_adv, fooled)`` (``x_adv`` is the best point where fooled, else ``x``); with
      ``return_details`` also a dict with ``queries`` (per example, init included),
      ``iterations``, ``margin``, ``x_best`` and ``x_init``.

    Raises:
      ValueError: ``x`` is not 4-D (NHWC).
    """
    x, y, eps, seed = _inputs("square_l2", x, y, epsilon, seed)
    dtype, batch = x.dtype, tf.shape(x)[0]
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    tiny = losses.as_dtype(1e-12, dtype)
    if draws is None:
        draws = _StatelessDraws(seed, batch, channels, dtype)

    def unit(d):
        return d / (l2_norm(d) + tiny)

    # The init: every grid square's pattern in both orientations, summed with the draws.
    side0, corners = _init_grid(height, width)
    base = eta_l2(side0)
    grid = np.zeros((len(corners), 2, height, width))
    for k, (r, c) in enumerate(corners):
        for t, pattern in enumerate((base, base.T)):
            grid[k, t, r:r + side0, c:c + side0] = pattern[:height - r, :width - c]
    transposes, signs = draws.init(len(corners))
    k_index = tf.broadcast_to(tf.range(len(corners))[None, :], tf.shape(transposes))
    chosen = tf.gather_nd(tf.constant(grid, dtype),
                          tf.stack([k_index, tf.cast(transposes, tf.int32)], -1))  # [B, K, H, W]
    delta_init = tf.einsum("bkhw,bkc->bhwc", chosen, tf.cast(signs, dtype))
    x_init = tf.clip_by_value(x + eps * unit(delta_init), 0.0, 1.0)

    # Every side the schedule uses, its pattern in both orientations, top-left in [H, W].
    sides_np = l2_sides(max(n_queries, 1), height, width, p_init)
    distinct = sorted(set(sides_np.tolist()))
    table = np.zeros((len(distinct), 2, height, width))
    for k, side in enumerate(distinct):
        table[k, 0, :side, :side] = eta_l2(side)
        table[k, 1, :side, :side] = eta_l2(side).T
    table = tf.constant(table, dtype)
    sides = tf.constant(sides_np)
    side_index = tf.constant([distinct.index(v) for v in sides_np.tolist()], tf.int32)
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]

    def window(vh, vw, s):
        vh, vw = vh[:, None, None], vw[:, None, None]
        inside = tf.logical_and(tf.logical_and(rows >= vh, rows < vh + s),
                                tf.logical_and(cols >= vw, cols < vw + s))
        return inside[..., None]  # [B, H, W, 1]

    def channel_norm(d):
        return tf.sqrt(tf.reduce_sum(tf.square(d), axis=[1, 2], keepdims=True))

    def propose(i, x_best, active):
        s = sides[i]
        vh, vw, vh2, vw2, transpose, sign = draws.step(i, height - s, width - s, active)
        delta = x_best - x
        in1, in2 = window(vh, vw, s), window(vh2, vw2, s)
        zero = tf.zeros([], dtype)
        norm_window_1 = channel_norm(tf.where(in1, delta, zero))
        norm_windows = channel_norm(tf.where(tf.logical_or(in1, in2), delta, zero))
        norm_image = l2_norm(delta)
        # The pattern at (vh, vw): the table entry shifted by the window's corner.
        idx = tf.stack([
            tf.broadcast_to(side_index[i], [batch, height, width]),
            tf.broadcast_to(tf.cast(transpose, tf.int32)[:, None, None], [batch, height, width]),
            tf.broadcast_to(tf.clip_by_value(rows - vh[:, None, None], 0, height - 1),
                            [batch, height, width]),
            tf.broadcast_to(tf.clip_by_value(cols - vw[:, None, None], 0, width - 1),
                            [batch, height, width])], axis=-1)
        pattern = tf.where(in1, tf.gather_nd(table, idx)[..., None], zero)
        new = pattern * tf.cast(sign, dtype)[:, None, None, :] + tf.where(
            in1, delta, zero) / (tiny + norm_window_1)
        scale = tf.sqrt(tf.maximum(eps * eps - norm_image ** 2, 0.0) / channels
                        + norm_windows ** 2)
        new = new / (tiny + channel_norm(new)) * scale
        delta_new = tf.where(in1, new, tf.where(in2, zero, delta))
        return tf.clip_by_value(x + eps * unit(delta_new), 0.0, 1.0)

    return _random_search(logits_fn, x, y, x_init, propose, n_queries, return_details)
