"""Auto-PGD (Croce & Hein 2020) for L-inf and L2, as in AutoAttack's ``standard`` version.

A faithful TensorFlow port of the *behaviour* of the official
``autopgd_base.py:APGDAttack.attack_single_run``
(docs/reference-implementations.md "AutoAttack / APGD"):

* start: ``t ~ U(-1, 1)^d``, ``x0 = clip(x + eps * t / max|t|, 0, 1)`` (the perturbation
  touches the eps-sphere before clipping);
* step size ``eta_0 = 2 eps`` per example; ``z = P(x_k + eta sign(g_k))``,
  ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))`` with ``a = 1`` at the first
  iteration and ``rho = 0.75`` afterwards (P: the eps-ball, then [0, 1]);
* step-size checkpoints after iterations ``21, 40, 56, 69, 79, 86, 92, 98`` (for 100
  iterations; window ``k`` = 22 shrinking by 3 to a minimum of 6).  At a checkpoint the
  step is halved if ``#{c < k : L[i-c] > L[i-c-1]} <= rho * k`` **or** (the step was not
  halved at the previous checkpoint **and** the best loss did not improve since it).  A
  halving restarts the iterate (and its gradient) from the best point; the momentum
  term still uses the pre-reset previous point (as coded officially);
* at the first checkpoint ``L[-1]`` is an unwritten zero row (official quirk, copied);
* returned point: the most recent misclassified iterate (start included); examples never
  misclassified get ``x`` back.

The loop is a ``tf.while_loop`` with fixed shapes: no per-iteration host round trips, and
the function can be wrapped in a (jit-compiled) ``tf.function``.  One iteration costs one
forward and one backward pass, like one PGD step.

``norm='L2'`` is the official L2 branch: the start ``clip(x + eps * n / (||n||_2 +
1e-12), 0, 1)``, ``n ~ N(0, I)`` (the eps-sphere before clipping); the step ``x_k + eta
g_k / (||g_k||_2 + 1e-12)`` and P the L2 projection of ``pgd.project``
(``x + d / (||d|| + 1e-12) * min(eps, ||d||)``, then [0, 1]); the rest as above.
"""

import tensorflow as tf

from tf_st.attacks import losses, starts
from tf_st.attacks.pgd import ascent_direction, l2_normalize, project


def checkpoints(n_iter):
    """The official step-size check schedule.

    Args:
      n_iter: the number of iterations.

    Returns:
      ``[(iteration, window), ...]``: 0-based iterations after which the step size is
      checked, with the window length ``k`` used there.
    """
    k = max(int(0.22 * n_iter), 1)
    k_min = max(int(0.06 * n_iter), 1)
    decrement = max(int(0.03 * n_iter), 1)
    out, counter = [], 0
    for i in range(n_iter):
        counter += 1
        if counter == k:
            out.append((i, k))
            k = max(k - decrement, k_min)
            counter = 0
    return out


def linf_sphere_start(x, epsilon, seed=None):
    """``clip(x + eps * t / max|t|, 0, 1)``, ``t ~ U(-1, 1)`` per example.

    Args:
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      epsilon: the L-inf radius, in [0, 1] units.
      seed: stateless seed (shape [2] ints) for the random start, or None.

    Returns:
      The start point, shaped as ``x``.
    """
    shape = tf.shape(x)
    t = starts.draw(shape, "uniform", 1.0, x.dtype, seed)
    axes = list(range(1, len(x.shape)))
    t_max = tf.reduce_max(tf.abs(t), axis=axes, keepdims=True)
    return tf.clip_by_value(x + losses.as_dtype(epsilon, x.dtype) * t / t_max, 0.0, 1.0)


def l2_sphere_start(x, epsilon, seed=None):
    """``clip(x + eps * n / (||n||_2 + 1e-12), 0, 1)``, ``n ~ N(0, I)`` per example.

    The official APGD's L2 start.

    Args:
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      epsilon: the L2 radius, in [0, 1] units.
      seed: stateless seed (shape [2] ints) for the random start, or None.

    Returns:
      The start point, shaped as ``x``.
    """
    t = starts.draw(tf.shape(x), "normal", 1.0, x.dtype, seed)
    return tf.clip_by_value(x + losses.as_dtype(epsilon, x.dtype) * l2_normalize(t), 0.0, 1.0)


def _loss_fn(loss, y_target):
    if loss == "ce":
        return losses.cross_entropy
    if loss == "dlr":
        return losses.dlr
    if loss in ("dlr-targeted", "dlr_targeted"):
        if y_target is None:
            raise ValueError("loss='dlr-targeted' needs y_target")
        return lambda logits, y: losses.targeted_dlr(logits, y, y_target)
    raise ValueError(f"unknown APGD loss {loss!r} (expected 'ce', 'dlr', 'dlr-targeted')")


def target_by_rank(logits, rank):
    """Class with the ``rank``-th largest logit (rank 2 = runner-up).

    AutoAttack's ``argsort(f(x))[:, -rank]`` for APGD-T and FAB-T.

    Args:
      logits: ``[B, classes]`` logits.
      rank: the 1-based rank (an int or int tensor).

    Returns:
      int32 classes ``[B]``.
    """
    rank = tf.cast(rank, tf.int32)
    idx = tf.math.top_k(losses.as_float(logits), k=tf.shape(logits)[1]).indices
    return tf.gather(idx, rank - 1, axis=1)


def reduction_rule(hist, i, k, loss_best, loss_best_last_check, reduced_last_check,
                   rho=0.75):
    """The step-halving decision at a checkpoint after iteration ``i`` with window ``k``.

    Halve if ``#{c < k : L[i-c] > L[i-c-1]} <= rho * k`` or (not halved at the previous check
    and ``loss_best_last_check >= loss_best``).

    Args:
      hist: ``[n_iter + 1, B]``, row ``j + 1`` = loss after iteration ``j`` and row 0 = the
        official unwritten ``loss_steps[-1]`` (zeros).
      i: the 0-based iteration.
      k: the window length.
      loss_best: the best loss per example ``[B]``.
      loss_best_last_check: the best loss at the previous checkpoint ``[B]``.
      reduced_last_check: bool ``[B]``, halved at the previous checkpoint.
      rho: the oscillation threshold.

    Returns:
      bool ``[B]``: halve the step.
    """
    rows = tf.range(tf.shape(hist)[0] - 1)[:, None]
    increases = tf.cast(hist[1:] > hist[:-1], tf.float32)  # L[j] > L[j-1]
    in_window = tf.cast(tf.logical_and(rows <= i, rows > i - k), tf.float32)
    count = tf.reduce_sum(increases * in_window, axis=0)
    oscillation = count <= tf.cast(k, tf.float32) * tf.constant(rho, tf.float32)
    no_improvement = tf.logical_and(tf.logical_not(reduced_last_check),
                                    loss_best_last_check >= loss_best)
    return tf.logical_or(oscillation, no_improvement)


def apgd(logits_fn, x, y, *, epsilon, n_iter=100, loss="ce", y_target=None, rho=0.75,
         seed=None, x_init=None, return_details=False, norm="Linf"):
    """One run (one restart) of APGD on the batch ``x`` with labels ``y``.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      y: integer labels ``[B]``.
      epsilon: the budget in ``norm`` (L-inf: in [0, 1] units).
      n_iter: the number of iterations (>= 1).
      loss: ``'ce'`` (APGD-CE), ``'dlr'`` or ``'dlr-targeted'`` (APGD-T, needs
        ``y_target``).
      y_target: integer target classes ``[B]`` for ``'dlr-targeted'``.
      rho: the oscillation threshold of the step-size rule.
      seed: stateless seed (shape [2] ints) for the random start, or None.
      x_init: replaces the random start (parity tests; clipped to [0, 1]).
      return_details: also return the details dict.
      norm: ``'Linf'`` or ``'L2'`` (then ``epsilon`` is the L2 radius).

    Returns:
      ``(x_adv, fooled)``: ``fooled[i]`` iff some iterate (start included) was
      misclassified; ``x_adv[i]`` is the latest such iterate, else ``x[i]``.  With
      ``return_details`` a third value, a dict: ``x_best`` / ``loss_best`` (highest-loss
      iterate), ``step_sizes`` ``[n_iter, B]`` (step size used *after* each iteration's
      check), ``zero_grad_start`` ``[B]`` (all-zero gradient at the start: AutoAttack's
      check), ``loss_history`` ``[n_iter, B]``.

    Raises:
      ValueError: ``n_iter < 1``, an unknown ``loss`` or ``norm``, or ``'dlr-targeted'``
        without ``y_target``.
    """
    if norm not in ("Linf", "L2"):
        raise ValueError(f"unknown norm {norm!r}; expected 'Linf' or 'L2'")
    x = tf.convert_to_tensor(x)
    y = tf.cast(y, tf.int32)
    dtype = x.dtype
    eps = losses.as_dtype(epsilon, dtype)
    loss_fn = _loss_fn(loss, y_target)
    if n_iter < 1:
        raise ValueError("n_iter must be >= 1")
    batch = tf.shape(x)[0]
    bshape = tf.concat([[batch], tf.ones([len(x.shape) - 1], tf.int32)], 0)

    def loss_and_grad(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            logits = logits_fn(z)
            per_example = loss_fn(logits, y)
            total = tf.reduce_sum(per_example)
        grad = tape.gradient(total, z, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        wrong = tf.not_equal(tf.cast(tf.argmax(logits, axis=1), tf.int32), y)
        return per_example, grad, wrong

    # A given start is clipped to the image box, as the official ``attack_single_run`` does.
    sphere_start = l2_sphere_start if norm == "L2" else linf_sphere_start
    x_adv = (sphere_start(x, eps, seed) if x_init is None
             else tf.clip_by_value(tf.cast(x_init, dtype), 0.0, 1.0))
    loss0, grad, wrong0 = loss_and_grad(x_adv)
    zero_grad_start = tf.reduce_all(
        tf.equal(tf.reshape(grad, [batch, -1]), 0), axis=1)

    checks = checkpoints(n_iter)
    window = [0] * n_iter
    for i, k in checks:
        window[i] = k
    window = tf.constant(window, tf.int32)

    ldtype = loss0.dtype
    # history row j + 1 = loss after iteration j; row 0 stands for the official
    # ``loss_steps[-1]``, an all-zero row not yet written when the first check reads it.
    hist0 = tf.zeros([n_iter + 1, batch], ldtype)
    state = dict(
        i=tf.constant(0),
        x_adv=x_adv,
        x_old=x_adv,
        grad=grad,
        x_best=x_adv,
        grad_best=grad,
        loss_best=loss0,
        x_best_adv=x_adv,
        fooled=wrong0,
        step=2.0 * eps * tf.ones([batch], dtype),
        hist=hist0,
        loss_best_last_check=loss0,
        reduced_last_check=tf.ones([batch], tf.bool),
        steps_hist=tf.zeros([n_iter, batch], dtype),
    )


    def body(s):
        i = s["i"]
        a = tf.where(i > 0, tf.constant(rho, dtype), tf.constant(1.0, dtype))
        x_cur = s["x_adv"]
        momentum = x_cur - s["x_old"]
        step = tf.reshape(s["step"], bshape)
        z = project(x_cur + step * ascent_direction(s["grad"], norm), x, eps, norm)
        x_new = project(x_cur + a * (z - x_cur) + (1.0 - a) * momentum, x, eps, norm)

        loss_i, grad, wrong = loss_and_grad(x_new)
        fooled = tf.logical_or(s["fooled"], wrong)
        x_best_adv = tf.where(tf.reshape(wrong, bshape), x_new, s["x_best_adv"])
        hist = tf.tensor_scatter_nd_update(s["hist"], [[i + 1]], loss_i[None])
        improved = loss_i > s["loss_best"]
        x_best = tf.where(tf.reshape(improved, bshape), x_new, s["x_best"])
        grad_best = tf.where(tf.reshape(improved, bshape), grad, s["grad_best"])
        loss_best = tf.where(improved, loss_i, s["loss_best"])

        k = window[i]
        is_check = k > 0
        reduce = tf.logical_and(is_check, reduction_rule(
            hist, i, k, loss_best, s["loss_best_last_check"], s["reduced_last_check"], rho))
        reduced_last_check = tf.where(is_check, reduce, s["reduced_last_check"])
        loss_best_last_check = tf.where(is_check, loss_best, s["loss_best_last_check"])
        new_step = tf.where(reduce, s["step"] / 2.0, s["step"])
        rmask = tf.reshape(reduce, bshape)
        x_next = tf.where(rmask, x_best, x_new)
        grad_next = tf.where(rmask, grad_best, grad)
        steps_hist = tf.tensor_scatter_nd_update(s["steps_hist"], [[i]], new_step[None])
        out = dict(
            i=i + 1, x_adv=x_next, x_old=x_cur, grad=grad_next, x_best=x_best,
            grad_best=grad_best, loss_best=loss_best, x_best_adv=x_best_adv,
            fooled=fooled, step=new_step, hist=hist,
            loss_best_last_check=loss_best_last_check,
            reduced_last_check=reduced_last_check, steps_hist=steps_hist)
        # Some ops lose the static batch size of 1 (shape (1,) -> (None,)), which
        # tf.while_loop rejects; the loop variables keep their shapes by construction.
        return [{k: tf.ensure_shape(v, s[k].shape) for k, v in out.items()}]

    (s,) = tf.while_loop(lambda s: s["i"] < n_iter, body, [state],
                         maximum_iterations=n_iter)
    x_out = tf.where(tf.reshape(s["fooled"], bshape), s["x_best_adv"], x)
    if not return_details:
        return x_out, s["fooled"]
    details = dict(x_best=s["x_best"], loss_best=s["loss_best"], step_sizes=s["steps_hist"],
                   zero_grad_start=zero_grad_start, loss_history=s["hist"][1:],
                   start_loss=loss0)
    return x_out, s["fooled"], details


def apgd_targeted(logits_fn, x, y, *, epsilon, target_rank=2, n_iter=100, rho=0.75,
                  seed=None, x_init=None, return_details=False, norm="Linf"):
    """APGD-T for one target: the class with the ``target_rank``-th largest clean logit.

    (2..10 in AutoAttack ``standard``), targeted DLR loss.  Success is still *untargeted*
    misclassification, as officially.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      y: integer labels ``[B]``.
      epsilon: the budget in ``norm`` (L-inf: in [0, 1] units).
      target_rank: the target's rank (2: the runner-up).
      n_iter: the number of iterations.
      rho: the oscillation threshold of the step-size rule.
      seed: stateless seed (shape [2] ints) for the random start, or None.
      x_init: replaces the random start.
      return_details: also return the details dict.
      norm: ``'Linf'`` or ``'L2'``.

    Returns:
      What ``apgd`` returns.
    """
    x = tf.convert_to_tensor(x)
    y_target = target_by_rank(logits_fn(x), target_rank)
    return apgd(logits_fn, x, y, epsilon=epsilon, n_iter=n_iter, loss="dlr-targeted",
                y_target=y_target, rho=rho, seed=seed, x_init=x_init,
                return_details=return_details, norm=norm)
