"""Per-example losses shared by attacks, training methods and evaluation.

Every function returns one value per example (shape ``[B]``); callers choose the
reduction, because the references differ (batch mean, batch sum, sum / B).  Logits in
float16/bfloat16 (mixed precision) are promoted to float32 before any softmax.
"""

import tensorflow as tf


def as_float(logits):
    """Promotes low-precision logits to float32; float32/float64 pass through."""
    logits = tf.convert_to_tensor(logits)
    if logits.dtype in (tf.float16, tf.bfloat16):
        return tf.cast(logits, tf.float32)
    return logits


def cross_entropy(logits, y):
    """Softmax cross-entropy of integer labels ``y``."""
    logits = as_float(logits)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=logits)


def true_class_logit(logits, y):
    return tf.gather(logits, tf.cast(y, tf.int32), axis=1, batch_dims=1)


def max_other_logit(logits, y):
    """Largest logit among classes other than ``y`` (the CW / MART "top other" class)."""
    logits = as_float(logits)
    mask = tf.equal(tf.range(tf.shape(logits)[1])[None, :], tf.cast(y, tf.int32)[:, None])
    return tf.reduce_max(tf.where(mask, tf.constant(-float("inf"), logits.dtype), logits), axis=1)


def cw_margin(logits, y):
    """CW margin ``max_{j != y} z_j - z_y`` (no kappa), maximised by the CW-inf attack.

    ST-AT ``test.py`` and CAT ``utils_plus.py`` use exactly this margin, averaged over the
    batch, with PGD steps (reference §1.5)."""
    logits = as_float(logits)
    return max_other_logit(logits, y) - true_class_logit(logits, y)


def kl_divergence(target_logits, logits):
    """``KL(softmax(target) || softmax(logits))`` per example.

    Equals PyTorch ``F.kl_div(log_softmax(logits), softmax(target), reduction='none')``
    summed over classes: no epsilon clamp, and classes whose target probability
    underflows to 0 contribute 0 (``xlogy``), unlike ``keras.losses.KLDivergence``,
    which clips both inputs to [1e-7, 1] (reference §7)."""
    target_logits, logits = as_float(target_logits), as_float(logits)
    p = tf.nn.softmax(target_logits)
    return tf.reduce_sum(tf.math.xlogy(p, p) - p * tf.nn.log_softmax(logits), axis=1)


def true_class_probability(logits, y):
    return true_class_logit(tf.nn.softmax(as_float(logits)), y)


def first_argmax(values, axis=-1):
    """Index of the maximum, the *first* one on ties (PyTorch's rule; TF leaves ties
    unspecified, reference §7)."""
    values = tf.convert_to_tensor(values)
    n = tf.shape(values)[axis]
    is_max = tf.equal(values, tf.reduce_max(values, axis=axis, keepdims=True))
    index = tf.range(n)
    shape = [1] * len(values.shape)
    shape[axis] = -1
    index = tf.reshape(index, shape)
    return tf.reduce_min(tf.where(is_max, index, n), axis=axis)


def first_argmin(values, axis=-1):
    return first_argmax(-tf.convert_to_tensor(values), axis=axis)
