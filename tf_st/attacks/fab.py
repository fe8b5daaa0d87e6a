"""FAB-T (targeted Fast Adaptive Boundary attack, Croce & Hein 2020) in L-inf and L2, as
in AutoAttack's ``standard`` version
(docs/reference-implementations.md "AutoAttack / FAB-T").

Per iteration, with ``t`` the target class and ``y`` the true class:

* ``f = z_t - z_y`` and ``w = grad_x f`` at the current iterate ``x1``; the linearised
  decision boundary is the hyperplane ``{u : w . u = w . x1 - f}``;
* ``d1`` / ``d2``: minimal L-inf steps from ``x1`` / from the original ``x0`` onto that
  hyperplane *within the box* [0, 1] (:func:`projection_linf`);
* ``alpha = clip(a1 / (a1 + a2), 0, alpha_max)`` with ``a1, a2`` the L-inf norms of
  ``d1, d2`` (at least 1e-8); ``x1 = clip((x1 + eta d1)(1 - alpha) + (x0 + eta d2) alpha, 0, 1)``;
* if ``x1`` is misclassified (one more forward pass) and closer to ``x0`` than the best
  adversarial found, it becomes the best; then ``x1 = x0 + beta (x1 - x0)``.

The attack returns the closest adversarial found; it counts as a success only when its
L-inf distance is at most ``eps``.  No random start at restart 0 (``standard`` uses one
restart); later restarts start at ``x0 + eps/2 * t / max|t|``, ``t ~ U(-1, 1)``.

``projection_linf`` is our own exact solution of the box-constrained problem (sort the
per-coordinate room once and solve the piecewise-linear equation in closed form),
replacing the official bisection over the same breakpoints; both return the same
minimiser.  When the hyperplane cannot be reached inside the box, both return the box
corner that moves ``w . u`` furthest toward it.

In L2 (``norm='L2'``) the same iteration measures ``d1``, ``d2`` and the distances in L2,
projects with :func:`projection_l2`, and a later restart starts at
``x0 + eps/2 * t / ||t||_2``, ``t ~ N(0, 1)``.  ``projection_l2`` solves its problem the
same way (the minimiser is ``w`` scaled by one ``lam`` and clipped to the box, ``lam``
found in closed form on the sorted breakpoints); the official one bisects over them.
As officially, coordinates with ``|w_i| < 1e-8`` do not move in L2.
"""

import tensorflow as tf

from tf_st.attacks import losses, starts
from tf_st.attacks.apgd import target_by_rank
from tf_st.attacks.checks import check_norm


def _breakpoint_scale(r, a, need):
    """The smallest ``lam >= 0`` with ``sum_i a_i min(lam, r_i) = need`` per row.

    Both projections move every coordinate by ``min(lam, r_i)`` (times a per-coordinate
    direction) until the hyperplane is met; the left side is piecewise linear and
    non-decreasing in ``lam`` with breaks at the ``r_i``, so sorting ``r`` once gives
    ``lam`` in closed form (the official code bisects over the same breakpoints).

    Args:
      r: the breakpoints ``[N, D]`` (>= 0).
      a: their weights ``[N, D]`` (>= 0).
      need: the required totals ``[N]`` (>= 0).

    Returns:
      ``lam`` ``[N]``; ``inf`` for a row whose total cannot reach ``need``.
    """
    n = tf.shape(r)[1]
    order = tf.argsort(r, axis=1, stable=True)
    r_sorted = tf.gather(r, order, batch_dims=1)
    a_sorted = tf.gather(a, order, batch_dims=1)
    prefix = tf.cumsum(a_sorted * r_sorted, axis=1, exclusive=True)  # sum_{j<k} a_j r_j
    suffix = tf.cumsum(a_sorted, axis=1, reverse=True)  # sum_{j>=k} a_j
    reach = prefix + r_sorted * suffix  # the total at lam = r_k, non-decreasing in k
    m = tf.reduce_sum(tf.cast(reach < need[:, None], tf.int32), axis=1)
    feasible = m < n
    m_c = tf.minimum(m, n - 1)
    pre_m = tf.gather(prefix, m_c, batch_dims=1)
    suf_m = tf.gather(suffix, m_c, batch_dims=1)
    tiny = tf.constant(1e-30 if r.dtype == tf.float64 else 1e-20, r.dtype)
    lam = tf.maximum((need - pre_m) / tf.maximum(suf_m, tiny), 0.0)
    return tf.where(feasible, lam, tf.constant(float("inf"), r.dtype))


def _toward_hyperplane(t, w, b):
    """``(t, ws, need)``: the points as a tensor, the normals signed so that the step
    ``d`` must satisfy ``ws . d = need`` with ``need = |b - w . t| >= 0``."""
    t = tf.convert_to_tensor(t)
    w = tf.cast(w, t.dtype)
    g = tf.cast(b, t.dtype) - tf.reduce_sum(w * t, axis=1)  # required change of w . d
    direction = tf.where(g >= 0, tf.ones_like(g), -tf.ones_like(g))
    return t, w * direction[:, None], tf.abs(g)


def projection_linf(t, w, b):
    """Row-wise ``argmin ||d||_inf`` s.t. ``w . (t + d) = b`` and ``0 <= t + d <= 1``.

    The solution moves every coordinate toward the hyperplane by ``min(lam, room_i)``
    (``room_i``: distance to the box face in the useful direction), with the smallest
    ``lam`` whose total reaches the hyperplane.  Unreachable rows get ``lam = inf`` (the box
    corner); coordinates with ``w_i = 0`` do not move.

    Args:
      t: the points ``[N, D]``.
      w: the hyperplanes' normals ``[N, D]``.
      b: the hyperplanes' offsets ``[N]``.

    Returns:
      The steps ``d`` ``[N, D]``.
    """
    t, ws, need = _toward_hyperplane(t, w, b)
    room = tf.where(ws > 0, 1.0 - t, t)
    room = tf.where(ws == 0, tf.zeros_like(room), tf.maximum(room, 0.0))
    lam = _breakpoint_scale(room, tf.abs(ws), need)
    return tf.sign(ws) * tf.minimum(lam[:, None], room)


def projection_l2(t, w, b):
    """Row-wise ``argmin ||d||_2`` s.t. ``w . (t + d) = b`` and ``0 <= t + d <= 1``.

    The minimiser is ``d_i = s_i min(lam, r_i)`` with ``s = +-w`` (the sign that moves
    ``w . u`` toward ``b``) and ``r_i`` the ``lam`` at which coordinate ``i`` meets the
    box; ``w . d`` grows piecewise linearly in ``lam``, so ``lam`` is found on the sorted
    ``r`` in closed form.  Unreachable rows get the box corner; coordinates with
    ``|w_i| < 1e-8`` do not move (the official threshold).

    Args:
      t: the points ``[N, D]``.
      w: the hyperplanes' normals ``[N, D]``.
      b: the hyperplanes' offsets ``[N]``.

    Returns:
      The steps ``d`` ``[N, D]``.
    """
    t, ws, need = _toward_hyperplane(t, w, b)
    moves = tf.abs(ws) >= 1e-8
    ws = tf.where(moves, ws, tf.zeros_like(ws))
    safe = tf.where(moves, ws, tf.ones_like(ws))
    r = tf.where(ws > 0, (1.0 - t) / safe, -t / safe)  # lam at which u_i meets the box
    r = tf.where(moves, tf.maximum(r, 0.0), tf.zeros_like(r))
    lam = _breakpoint_scale(r, ws * ws, need)
    return ws * tf.minimum(lam[:, None], r)


def _row_norm(d, norm):
    if norm == "L2":
        return tf.sqrt(tf.reduce_sum(d * d, axis=1))
    return tf.reduce_max(tf.abs(d), axis=1)


def fab_targeted(logits_fn, x, y, *, epsilon, target_rank=2, n_iter=100, alpha_max=0.1,
                 eta=1.05, beta=0.9, random_start=False, seed=None, y_target=None,
                 return_details=False, norm="Linf"):
    """One FAB-T run on the batch ``x`` toward one target class.

    The target is the class with the ``target_rank``-th largest clean logit, or the explicit
    ``y_target``.  Only points classified correctly at ``x`` are attacked.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      y: integer labels ``[B]``.
      epsilon: the budget in ``norm``, in [0, 1] units.
      target_rank: the target's rank (2: the runner-up).
      n_iter: the number of iterations.
      alpha_max: FAB's maximum step bias toward the original point.
      eta: FAB's extrapolation factor.
      beta: FAB's backward step factor.
      random_start: start at a random point of the eps-ball (a bool or bool tensor).
      seed: stateless seed (shape [2] ints) for the random start, or None.
      y_target: integer target classes ``[B]`` overriding ``target_rank``.
      return_details: also return the details dict.
      norm: ``'Linf'`` or ``'L2'``.

    Returns:
      ``(x_adv, fooled)``: ``fooled[i]`` iff an adversarial within ``epsilon`` (in
      ``norm``) was found, ``x_adv[i]`` is the closest adversarial found when ``fooled[i]``,
      else ``x[i]``.  With ``return_details`` also a dict: ``distance`` (the distance of the
      closest adversarial found, ``inf`` if none), ``first_step`` (the iterate after the
      first update, before the ``beta`` shrink), ``y_target``.
    """
    norm = check_norm(norm)
    x = tf.convert_to_tensor(x)
    dtype = x.dtype
    y = tf.cast(y, tf.int32)
    batch = tf.shape(x)[0]
    shape = tf.shape(x)
    bshape = tf.concat([[batch], tf.ones([len(x.shape) - 1], tf.int32)], 0)
    eps = losses.as_dtype(epsilon, dtype)
    clean_logits = logits_fn(x)
    clean_ok = tf.equal(tf.cast(tf.argmax(clean_logits, axis=1), tf.int32), y)
    if y_target is None:
        y_target = target_by_rank(clean_logits, target_rank)
    y_target = tf.cast(y_target, tf.int32)
    x0 = tf.reshape(x, [batch, -1])

    if random_start is not False and random_start is not None:
        axes = list(range(1, len(x.shape)))
        if norm == "L2":
            r = starts.draw(shape, "normal", 1.0, dtype, seed)
            r_norm = tf.sqrt(tf.reduce_sum(r * r, axis=axes, keepdims=True))
        else:
            r = starts.draw(shape, "uniform", 1.0, dtype, seed)
            r_norm = tf.reduce_max(tf.abs(r), axis=axes, keepdims=True)
        x1 = tf.where(tf.cast(random_start, tf.bool),
                      tf.clip_by_value(x + 0.5 * eps * r / r_norm, 0.0, 1.0), x)
    else:
        x1 = x

    def diff_and_grad(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            logits = losses.as_float(logits_fn(z))
            f = (losses.true_class_logit(logits, y_target)
                 - losses.true_class_logit(logits, y))
            total = tf.reduce_sum(f)
        return tf.cast(f, dtype), tape.gradient(
            total, z, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def predicted(z):
        return tf.cast(tf.argmax(logits_fn(z), axis=1), tf.int32)

    project = projection_l2 if norm == "L2" else projection_linf
    big = tf.constant(1e10, dtype)
    a_min = tf.constant(1e-8, dtype)

    def body(i, x1, adv, res, first):
        shapes = [v.shape for v in (i, x1, adv, res, first)]
        f, grad = diff_and_grad(x1)
        w = tf.reshape(grad, [batch, -1])
        x1f = tf.reshape(x1, [batch, -1])
        b = tf.reduce_sum(w * x1f, axis=1) - f
        d = project(tf.concat([x1f, x0], 0), tf.concat([w, w], 0), tf.concat([b, b], 0))
        d1, d2 = d[:batch], d[batch:]
        a1 = tf.maximum(_row_norm(d1, norm)[:, None], a_min)
        a2 = tf.maximum(_row_norm(d2, norm)[:, None], a_min)
        alpha = tf.clip_by_value(a1 / (a1 + a2), 0.0, alpha_max)
        new = tf.clip_by_value((x1f + eta * d1) * (1.0 - alpha) + (x0 + eta * d2) * alpha,
                               0.0, 1.0)
        first = tf.where(tf.equal(i, 0), new, first)
        new_img = tf.reshape(new, shape)
        is_adv = tf.not_equal(predicted(new_img), y)
        dist = _row_norm(new - x0, norm)
        better = tf.logical_and(is_adv, dist < res)
        adv = tf.where(better[:, None], new, adv)
        res = tf.where(better, dist, res)
        new = tf.where(is_adv[:, None], x0 + beta * (new - x0), new)
        out = (i + 1, tf.reshape(new, shape), adv, res, first)
        # Keep static shapes (a batch of 1 otherwise turns into None, which
        # tf.while_loop rejects).
        return tuple(tf.ensure_shape(v, shape) for v, shape in zip(out, shapes))

    init = (tf.constant(0), x1, x0, big * tf.ones([batch], dtype), x0)
    _, _, adv, res, first = tf.while_loop(lambda i, *_: i < n_iter, body, init,
                                          maximum_iterations=n_iter)
    fooled = tf.logical_and(clean_ok, tf.logical_and(res < big, res <= eps))
    x_adv = tf.where(tf.reshape(fooled, bshape), tf.reshape(adv, shape), x)
    if not return_details:
        return x_adv, fooled
    distance = tf.where(tf.logical_and(clean_ok, res < big), res,
                        tf.constant(float("inf"), dtype))
    return x_adv, fooled, dict(distance=distance, first_step=tf.reshape(first, shape),
                               y_target=y_target)
