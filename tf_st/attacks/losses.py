"""Per-example losses shared by attacks, training methods and evaluation.

Every function returns one value per example (shape ``[B]``); callers choose the
reduction, because the references differ (batch mean, batch sum, sum / B).  Logits in
float16/bfloat16 (mixed precision) are promoted to float32 before any softmax.
"""

import numpy as np
import tensorflow as tf


def as_dtype(value, dtype):
    """``value`` as a ``dtype`` tensor.

    Python numbers are converted directly: a ``tf.cast`` of a Python float goes through
    float32 first (2/255 would become 0.0078431377... in float64), which breaks float64
    parity.

    Args:
      value: a Python number, numpy array, tensor or variable.
      dtype: the target dtype.

    Returns:
      A tensor of ``dtype``.
    """
    if isinstance(value, (tf.Tensor, tf.Variable, np.ndarray)):
        return tf.cast(value, dtype)
    return tf.constant(value, dtype)


def as_float(logits):
    """Promotes low-precision logits to float32; float32/float64 pass through.

    Args:
      logits: a tensor or array.

    Returns:
      A float32 or float64 tensor.
    """
    logits = tf.convert_to_tensor(logits)
    if logits.dtype in (tf.float16, tf.bfloat16):
        return tf.cast(logits, tf.float32)
    return logits


def cross_entropy(logits, y):
    """Softmax cross-entropy of integer labels ``y``.

    Args:
      logits: ``[B, classes]`` logits (float16/bfloat16 promoted to float32).
      y: integer labels ``[B]``.

    Returns:
      Per-example values ``[B]``.
    """
    logits = as_float(logits)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=logits)


def true_class_logit(logits, y):
    """The logit of each example's true class.

    Args:
      logits: ``[B, classes]`` logits (or probabilities).
      y: integer labels ``[B]``.

    Returns:
      ``logits[i, y[i]]`` per example ``[B]``.
    """
    return tf.gather(logits, tf.cast(y, tf.int32), axis=1, batch_dims=1)


def max_other_logit(logits, y):
    """Largest logit among classes other than ``y`` (the CW / MART "top other" class).

    Args:
      logits: ``[B, classes]`` logits (float16/bfloat16 promoted to float32).
      y: integer labels ``[B]``.

    Returns:
      Per-example values ``[B]``.
    """
    logits = as_float(logits)
    mask = tf.equal(tf.range(tf.shape(logits)[1])[None, :], tf.cast(y, tf.int32)[:, None])
    return tf.reduce_max(tf.where(mask, tf.constant(-float("inf"), logits.dtype), logits), axis=1)


def cw_margin(logits, y):
    """CW margin ``max_{j != y} z_j - z_y`` (no kappa), maximised by the CW-inf attack.

    ST-AT ``test.py`` and CAT ``utils_plus.py`` use exactly this margin, averaged over the
    batch, with PGD steps
    (docs/reference-implementations.md "ST-AT / Evaluation", "CAT / Evaluation").

    Args:
      logits: ``[B, classes]`` logits (float16/bfloat16 promoted to float32).
      y: integer labels ``[B]``.

    Returns:
      Per-example values ``[B]``.
    """
    logits = as_float(logits)
    return max_other_logit(logits, y) - true_class_logit(logits, y)


def kl_divergence(target_logits, logits):
    """``KL(softmax(target) || softmax(logits))`` per example.

    Equals PyTorch ``F.kl_div(log_softmax(logits), softmax(target), reduction='none')``
    summed over classes: no epsilon clamp, and classes whose target probability
    underflows to 0 contribute 0 (``xlogy``), unlike ``keras.losses.KLDivergence``,
    which clips both inputs to [1e-7, 1]
    (docs/reference-implementations.md "PyTorch to Keras parity / KL divergence").

    Args:
      target_logits: the target's ``[B, classes]`` logits.
      logits: the other ``[B, classes]`` logits.

    Returns:
      Per-example values ``[B]``.
    """
    target_logits, logits = as_float(target_logits), as_float(logits)
    p = tf.nn.softmax(target_logits)
    return tf.reduce_sum(tf.math.xlogy(p, p) - p * tf.nn.log_softmax(logits), axis=1)


def kl_from_clean(logits_fn, x, divergence=kl_divergence):
    """TRADES' inner objective as an attack loss ``loss(z, y)``.

    Per example ``divergence(p(x), p(z))`` (default ``KL(p(x) || p(z))``), with the clean
    logits ``logits_fn(x)`` computed once, here (one forward, at the caller's point in the
    forward order), and held constant (stop-gradient).  The TRADES references recompute
    them in eval mode at every step; it is the same value.  Used by TRADES, CAT's TRADES
    member and FAT-TRADES.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
      x: the clean images, NHWC float in [0, 1].
      divergence: ``divergence(target_logits, logits)`` per example.

    Returns:
      A function ``loss(z, y)`` of the attacked logits (``y`` unused).
    """
    z_nat = tf.stop_gradient(logits_fn(x))
    return lambda z, _: divergence(z_nat, z)


def true_class_probability(logits, y):
    """The softmax probability of each example's true class.

    Args:
      logits: ``[B, classes]`` logits (float16/bfloat16 promoted to float32).
      y: integer labels ``[B]``.

    Returns:
      Per-example values ``[B]``.
    """
    return true_class_logit(tf.nn.softmax(as_float(logits)), y)


def first_argmax(values, axis=-1):
    """Index of the maximum, the *first* one on ties.

    PyTorch's rule; TF leaves ties unspecified
    (docs/reference-implementations.md "PyTorch to Keras parity / Ties").

    Args:
      values: a tensor.
      axis: the axis to reduce.

    Returns:
      int32 indices, ``values``' shape without ``axis``.
    """
    values = tf.convert_to_tensor(values)
    n = tf.shape(values)[axis]
    is_max = tf.equal(values, tf.reduce_max(values, axis=axis, keepdims=True))
    index = tf.range(n)
    shape = [1] * len(values.shape)
    shape[axis] = -1
    index = tf.reshape(index, shape)
    return tf.reduce_min(tf.where(is_max, index, n), axis=axis)


def first_argmin(values, axis=-1):
    """Index of the minimum, the *first* one on ties (see ``first_argmax``).

    Args:
      values: a tensor.
      axis: the axis to reduce.

    Returns:
      int32 indices, ``values``' shape without ``axis``.
    """
    return first_argmax(-tf.convert_to_tensor(values), axis=axis)


def _sorted_descending(logits):
    """Logits sorted in descending order (``pi_1 >= pi_2 >= ...``)."""
    return tf.sort(logits, axis=1, direction="DESCENDING")


def _pi(sorted_logits, k):
    """k-th largest logit (1-based); clamped to the last class when there are fewer
    than k classes (AutoAttack requires >= 3 classes for DLR and >= 4 for the targeted
    DLR; with fewer the official code fails, here the smallest logit is used)."""
    n = tf.shape(sorted_logits)[1]
    return tf.gather(sorted_logits, tf.minimum(k - 1, n - 1), axis=1)


def dlr(logits, y):
    """AutoAttack's Difference-of-Logits-Ratio loss (to be maximised).

    ``-(z_y - max_{j != y} z_j) / (pi_1 - pi_3 + 1e-12)`` with ``pi`` the logits sorted in
    descending order (docs/reference-implementations.md "AutoAttack / APGD").  The numerator
    equals the official index-based ``z_y - (pi_2 if argmax == y else pi_1)`` for every tie
    pattern.

    Args:
      logits: ``[B, classes]`` logits (float16/bfloat16 promoted to float32).
      y: integer labels ``[B]``.

    Returns:
      Per-example values ``[B]``.
    """
    logits = as_float(logits)
    s = _sorted_descending(logits)
    num = true_class_logit(logits, y) - max_other_logit(logits, y)
    return -num / (_pi(s, 1) - _pi(s, 3) + tf.constant(1e-12, logits.dtype))


def targeted_dlr(logits, y, y_target):
    """Targeted DLR (to be maximised).

    ``-(z_y - z_t) / (pi_1 - (pi_3 + pi_4) / 2 + 1e-12)``
    (docs/reference-implementations.md "AutoAttack / APGD").

    Args:
      logits: ``[B, classes]`` logits (float16/bfloat16 promoted to float32).
      y: integer labels ``[B]``.
      y_target: integer target classes ``[B]``.

    Returns:
      Per-example values ``[B]``.
    """
    logits = as_float(logits)
    s = _sorted_descending(logits)
    num = true_class_logit(logits, y) - true_class_logit(logits, y_target)
    den = _pi(s, 1) - tf.constant(0.5, logits.dtype) * (_pi(s, 3) + _pi(s, 4))
    return -num / (den + tf.constant(1e-12, logits.dtype))


def margin(logits, y):
    """``z_y - max_{j != y} z_j``: Square attack's margin loss, minimised.

    A value <= 0 means misclassified.

    Args:
      logits: ``[B, classes]`` logits (float16/bfloat16 promoted to float32).
      y: integer labels ``[B]``.

    Returns:
      Per-example values ``[B]``.
    """
    return -cw_margin(logits, y)
