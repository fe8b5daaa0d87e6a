"""FGSM, PGD and CW-inf as pure, graph-safe functions of a logits function.

Each takes ``norm='Linf'`` (sign steps, the L-inf ball: the default) or ``'L2'``
(normalised-gradient steps ``g / (||g||_2 + 1e-12)``, the L2 ball then [0, 1]: the
official AutoAttack APGD's L2 step and projection, ``project``).

An attack takes ``(logits_fn, x, y, settings)`` and returns the perturbed inputs.
``logits_fn`` is any callable mapping a [0, 1] NHWC batch to logits: a Keras model in
inference or training mode, a reloaded SavedModel endpoint, or a plain ``tf.function``.
Training methods and ``tf_st.evaluation`` call the same code.

Loops are ``tf.while_loop``s, so the functions run eagerly, inside a user's
``tf.function`` and inside a Keras ``train_step`` (which Keras 3 does not
AutoGraph-convert).  Everything follows the dtype of ``x`` (float64 parity tests).

The step direction is the sign of the gradient of the *sum* of the per-example loss;
the references differentiate the batch mean, which has the same sign.
"""

import tensorflow as tf

from tf_st.attacks import losses, starts


def l2_norm(t, keepdims=True):
    """The per-example L2 norm of a batch, over all but the first axis.

    Args:
      t: a batch ``[B, ...]``.
      keepdims: shape ``[B, 1, ..., 1]`` (broadcasts against ``t``); else ``[B]``.

    Returns:
      The norms, in ``t``'s dtype.
    """
    axes = list(range(1, len(t.shape)))
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=axes, keepdims=keepdims))


def l2_normalize(t):
    """``t / (||t||_2 + 1e-12)`` per example, as the official AutoAttack ``normalize``.

    Args:
      t: a batch ``[B, ...]``.

    Returns:
      The normalised batch, shaped as ``t`` (an all-zero example stays zero).
    """
    return t / (l2_norm(t) + losses.as_dtype(1e-12, t.dtype))


def project(x_adv, x, epsilon, norm="Linf"):
    """The projection onto the ``norm`` ball of radius ``epsilon`` around ``x``, then [0, 1].

    L-inf: ``clamp(min(max(x_adv, x - eps), x + eps), 0, 1)``.  L2, as the official
    AutoAttack APGD (``autopgd_base.py``, the L2 branch): ``d = x_adv - x``,
    ``clamp(x + d / (||d|| + 1e-12) * min(eps, ||d||), 0, 1)``.

    Args:
      x_adv: the points to project, shaped as ``x``.
      x: the clean images, NHWC float in [0, 1].
      epsilon: the radius, in [0, 1] units.
      norm: ``'Linf'`` or ``'L2'``.

    Returns:
      The projected points, in ``x``'s dtype.

    Raises:
      ValueError: an unknown ``norm``.
    """
    epsilon = losses.as_dtype(epsilon, x.dtype)
    if norm == "L2":
        d = x_adv - x
        x_adv = x + l2_normalize(d) * tf.minimum(epsilon, l2_norm(d))
    elif norm == "Linf":
        x_adv = tf.clip_by_value(x_adv, x - epsilon, x + epsilon)
    else:
        raise ValueError(f"unknown norm {norm!r}; expected 'Linf' or 'L2'")
    return tf.clip_by_value(x_adv, tf.zeros([], x.dtype), tf.ones([], x.dtype))


def ascent_direction(grad, norm="Linf"):
    """The steepest-ascent direction of unit ``norm``: ``sign(g)`` or ``g / ||g||_2``.

    Args:
      grad: the gradient batch.
      norm: ``'Linf'`` (sign) or ``'L2'`` (``l2_normalize``).

    Returns:
      The direction, shaped as ``grad``.
    """
    return l2_normalize(grad) if norm == "L2" else tf.sign(grad)


def input_gradient(logits_fn, x_adv, y, loss_fn):
    """The gradient of the summed per-example loss with respect to the input.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x_adv: the images to differentiate at.
      y: integer labels ``[B]``.
      loss_fn: ``loss_fn(logits, y)`` per example.

    Returns:
      The gradient, shaped as ``x_adv``.
    """
    with tf.GradientTape() as tape:
        tape.watch(x_adv)
        loss = tf.reduce_sum(loss_fn(logits_fn(x_adv), y))
    return tape.gradient(loss, x_adv)


def fgsm(logits_fn, x, y, epsilon, loss_fn=losses.cross_entropy, norm="Linf"):
    """One step of size ``epsilon`` from ``x`` itself (no random start).

    As ST-AT and CAT evaluate FGSM; with ``norm='L2'`` the fast gradient method's L2
    step ``eps * g / ||g||_2``.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      y: integer labels ``[B]``.
      epsilon: the budget and step in ``norm`` (L-inf: in [0, 1] units).
      loss_fn: ``loss_fn(logits, y)`` per example, ascended.
      norm: ``'Linf'`` or ``'L2'`` (then ``epsilon`` is the L2 radius).

    Returns:
      ``x_adv``, projected onto the eps-ball and [0, 1].
    """
    x = tf.convert_to_tensor(x)
    grad = input_gradient(logits_fn, x, y, loss_fn)
    return project(x + losses.as_dtype(epsilon, x.dtype) * ascent_direction(grad, norm), x,
                   epsilon, norm)


def pgd(logits_fn, x, y, *, epsilon, step_size, steps, loss_fn=losses.cross_entropy,
        x_init=None, random_start=True, clamp_start=False, seed=None, targeted=False,
        track_iterates=False, track_start=False, unroll=False, norm="Linf"):
    """Projected sign-gradient ascent on ``loss_fn`` (descent if ``targeted``).

    With ``norm='L2'``: projected normalised-gradient ascent, ``x <- Proj(x + step * g /
    (||g||_2 + 1e-12))`` onto the L2 ball of radius ``epsilon`` and [0, 1] (``project``);
    the random start is uniform in the L2 ball (``starts.random_start``).

    Start: ``x_init`` if given (used as is, not projected: references feed the raw
    start to the first forward), else ``x + U(-eps, eps)`` if ``random_start`` (clamped
    to [0, 1] first when ``clamp_start``: FAT/CAT/AWP do, ST-AT/TRADES do not), else
    ``x``.  Exactly ``steps`` updates ``x <- Proj(x + step * sign(grad))``.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      y: integer labels ``[B]``.
      epsilon: the budget in ``norm`` (L-inf: in [0, 1] units).
      step_size: the step, in [0, 1] units.
      steps: the number of updates.
      loss_fn: ``loss_fn(logits, y)`` per example.
      x_init: the start point, or None.
      random_start: without ``x_init``, start at ``x + U(-eps, eps)``; else at ``x``.
      clamp_start: clamp the random start to [0, 1].
      seed: None for a stateful start draw, or an int ``[2]`` seed.
      targeted: descend the loss (toward ``y``) instead of ascending it.
      track_iterates: also return ``fooled_any[B]``, misclassified at any iterate after a
        step (semisup-adv ``attack_pgd.py:pgd`` records correctness after each of its
        steps, never at the start: RST's "robust only if correct at every iterate").
      track_start: with ``track_iterates``, the start counts too, a stricter rule than the
        official one.
      unroll: the steps as a Python loop instead of a ``tf.while_loop`` (MirroredStrategy
        allows no collective, e.g. a synchronized BatchNorm's all-reduce, inside one).
      norm: ``'Linf'`` or ``'L2'`` (then ``epsilon`` and ``step_size`` are L2 lengths).

    Returns:
      ``x_adv`` (shaped as ``x``, within ``epsilon`` of it and in [0, 1]), or
      ``(x_adv, fooled_any)`` with ``track_iterates``.
    """
    x = tf.convert_to_tensor(x)
    if x_init is not None:
        x_adv = tf.cast(x_init, x.dtype)
    elif random_start:
        x_adv = starts.random_start(x, "uniform_clamped" if clamp_start else "uniform",
                                    epsilon=epsilon, seed=seed, norm=norm)
    else:
        x_adv = x
    step = losses.as_dtype(-step_size if targeted else step_size, x.dtype)
    y32 = tf.cast(y, tf.int32)

    def wrong(logits):
        return tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), y32)

    def body(i, x_adv, fooled):
        if track_iterates:
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                logits = logits_fn(x_adv)
                loss = tf.reduce_sum(loss_fn(logits, y))
            grad = tape.gradient(loss, x_adv)
            # Iterate i is the result of step i (i >= 1): the forward at it is the one
            # that also takes the next step's gradient.
            counted = wrong(logits) if track_start else wrong(logits) & (i > 0)
            fooled = fooled | counted
        else:
            grad = input_gradient(logits_fn, x_adv, y, loss_fn)
        # A SavedModel signature's gradient has batch dimension None; against a batch of
        # one, broadcasting then loses the static 1 that the loop's shape invariant holds.
        x_next = tf.ensure_shape(
            project(x_adv + step * ascent_direction(grad, norm), x, epsilon, norm), x_adv.shape)
        return i + 1, x_next, tf.ensure_shape(fooled, [x_adv.shape[0]])

    fooled = tf.zeros([tf.shape(x)[0]], tf.bool)
    if unroll:
        for i in range(steps):
            _, x_adv, fooled = body(tf.constant(i), x_adv, fooled)
    elif steps > 0:
        _, x_adv, fooled = tf.while_loop(lambda i, *_: i < steps, body,
                                         (tf.constant(0), x_adv, fooled))
    if not track_iterates:
        return x_adv
    return x_adv, fooled | wrong(logits_fn(project(x_adv, x, epsilon, norm)))


def cw_inf(logits_fn, x, y, *, epsilon, step_size, steps, **kwargs):
    """"CW-inf" as the adversarial-training literature means it: PGD on the CW margin.

    ST-AT ``test.py``: 100 steps of 2/255 from a uniform random start, no kappa.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      y: integer labels ``[B]``.
      epsilon: the budget in ``norm`` (L-inf: in [0, 1] units).
      step_size: the step, in [0, 1] units.
      steps: the number of updates.
      **kwargs: further keywords of ``pgd`` (``x_init``, ``seed``, ...).

    Returns:
      What ``pgd`` returns.
    """
    return pgd(logits_fn, x, y, epsilon=epsilon, step_size=step_size, steps=steps,
               loss_fn=losses.cw_margin, **kwargs)


def early_stopped_pgd(logits_fn, x, y, *, epsilon, step_size, steps, tau, loss_fn,
                      x_init, step_noise=None, norm="Linf"):
    """FAT's early-stopped PGD-K-tau: the PGD iteration with a per-example stop.

    Zhang et al., ICML 2020, Alg. 1; reference ``Friendly-Adversarial-Training/earlystop.py``.

    Before each of at most ``steps`` updates every still-running example is checked:
    misclassified with its counter (started at ``tau``) at 0 -> it stops and keeps this
    iterate; misclassified with counter > 0 -> the counter is decremented (never reset) and
    it goes on; correctly classified -> it goes on.  The first check is at ``x_init``.
    Running examples take ``Proj(x + step * sign(grad) + step_noise[k])``; examples still
    running after ``steps`` updates keep their last, unchecked iterate.

    Per-example masks inside one ``tf.while_loop``: no data-dependent shapes, so it traces
    once; in inference-mode BN (as the reference) every example's trajectory is independent
    of the others', so masking equals the reference's shrinking batch.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x: clean images ``[B, H, W, C]``, float in [0, 1] (the dtype is followed).
      y: integer labels ``[B]``.
      epsilon: the budget in ``norm`` (L-inf: in [0, 1] units).
      step_size: the step, in [0, 1] units.
      steps: the maximum number of updates K.
      tau: the misclassified iterates tolerated, an int or a ``[B]`` tensor.
      loss_fn: ``loss_fn(logits, y)`` per example (the reference's batch-mean CE and
        summed KL have the same sign).
      x_init: the start point.
      step_noise: ``[steps, *x.shape]`` noise added to each step (FAT's
        ``omega * N(0, 1)``), or None.
      norm: ``'Linf'`` (sign steps) or ``'L2'`` (normalised-gradient steps, L2 ball).

    Returns:
      ``(x_adv, passes)``: ``passes[i]`` (int32) is the number of gradient steps example
      ``i`` took (the reference's ``count``, FAT Figure 5's backward propagations).
    """
    x = tf.convert_to_tensor(x)
    y32 = tf.cast(y, tf.int32)
    x_adv = tf.cast(x_init, x.dtype)
    step = losses.as_dtype(step_size, x.dtype)
    batch = tf.shape(x)[0]
    counter = tf.broadcast_to(tf.cast(tau, tf.int32), [batch])
    running = tf.ones([batch], tf.bool)
    passes = tf.zeros([batch], tf.int32)

    def cond(k, x_adv, counter, running, passes):
        return tf.logical_and(k < steps, tf.reduce_any(running))

    def body(k, x_adv, counter, running, passes):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = logits_fn(x_adv)
            loss = tf.reduce_sum(loss_fn(logits, y))
        wrong = tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), y32)
        stop = running & wrong & (counter == 0)
        counter = counter - tf.cast(running & wrong & (counter > 0), tf.int32)
        running = running & ~stop
        grad = tape.gradient(loss, x_adv)
        x_new = x_adv + step * ascent_direction(grad, norm)
        if step_noise is not None:
            x_new = x_new + tf.cast(tf.gather(step_noise, k), x.dtype)
        mask = tf.reshape(running, [-1] + [1] * (len(x.shape) - 1))
        x_adv = tf.ensure_shape(tf.where(mask, project(x_new, x, epsilon, norm), x_adv),
                                x_adv.shape)
        # (ensure_shape: a batch of one keeps its static size; see ``pgd``.)
        return (k + 1, x_adv, tf.ensure_shape(counter, running.shape),
                tf.ensure_shape(running, running.shape),
                tf.ensure_shape(passes + tf.cast(running, tf.int32), running.shape))

    if steps == 0:
        return x_adv, passes
    _, x_adv, _, _, passes = tf.while_loop(cond, body, (tf.constant(0), x_adv, counter,
                                                        running, passes))
    return x_adv, passes
