"""Output-discrepancy regularisers of the ST paper (Section 4.1), per example.

``symmetric_kl(z_a, z_b)`` is what ST-AT ships (``losses.py:stat_loss``): each KL term
has its *target detached*, ``0.5 * [KL(sg(p_b) || p_a) + KL(sg(p_a) || p_b)]``, so the
gradient reaching ``a`` is that of ``0.5 * KL(sg(p_b) || p_a)`` and vice versa.
``detach_targets=False`` gives the plain symmetric KL (both terms differentiated).

``js`` and ``l2`` are advertised by ST-AT's README but absent from its code; they are
differentiated fully (nothing detached):
  JS:  0.5 * [KL(p_a || m) + KL(p_b || m)],  m = (p_a + p_b) / 2
  L2:  || p_a - p_b ||_2^2
The paper names the first "the Jensen-Shannon divergence" and writes it
``1/2 (KL((f'+f'')/2, f') + KL((f'+f'')/2, f''))``; read with TRADES' convention (first
argument = target) that would be ``KL(m || p)``, which is not the JS divergence.  We
implement the JS divergence the paper names, i.e. the formula read with the mixture as
the *second* argument of each KL.
"""

import tensorflow as tf

from tf_st.attacks.losses import as_float, kl_divergence


def symmetric_kl(z_a, z_b, detach_targets=True):
    """Symmetric KL of two outputs, per example (ST-AT's ``stat_loss`` by default).

    Args:
      z_a: logits ``[B, classes]``.
      z_b: logits ``[B, classes]``.
      detach_targets: stop the gradient through each KL's target (ST-AT); False for the
        plain symmetric KL.

    Returns:
      ``0.5 * [KL(p_b || p_a) + KL(p_a || p_b)]`` per example ``[B]``.
    """
    sg = tf.stop_gradient if detach_targets else tf.identity
    return 0.5 * (kl_divergence(sg(z_b), z_a) + kl_divergence(sg(z_a), z_b))


def js(z_a, z_b):
    """Jensen-Shannon divergence of two outputs, per example, fully differentiated.

    Args:
      z_a: logits ``[B, classes]``.
      z_b: logits ``[B, classes]``.

    Returns:
      ``0.5 * [KL(p_a || m) + KL(p_b || m)]``, ``m = (p_a + p_b) / 2``, per example ``[B]``.
    """
    p_a, p_b = tf.nn.softmax(as_float(z_a)), tf.nn.softmax(as_float(z_b))
    m = 0.5 * (p_a + p_b)
    # xlogy keeps classes where both probabilities underflow to 0 at 0 instead of nan.
    kl_to_m = lambda p: tf.reduce_sum(tf.math.xlogy(p, p) - tf.math.xlogy(p, m), axis=1)  # noqa: E731
    return 0.5 * (kl_to_m(p_a) + kl_to_m(p_b))


def l2(z_a, z_b):
    """Squared L2 distance of two softmax outputs, per example, fully differentiated.

    Args:
      z_a: logits ``[B, classes]``.
      z_b: logits ``[B, classes]``.

    Returns:
      ``|| p_a - p_b ||_2^2`` per example ``[B]``.
    """
    return tf.reduce_sum(tf.square(tf.nn.softmax(as_float(z_a)) - tf.nn.softmax(as_float(z_b))), axis=1)


REGULARIZERS = {"symmetric_kl": symmetric_kl, "js": js, "l2": l2}


def get(name):
    """The regulariser named ``name``.

    Args:
      name: ``'symmetric_kl'``, ``'js'`` or ``'l2'``.

    Returns:
      A function ``reg(z_a, z_b)`` returning per-example values.

    Raises:
      ValueError: an unknown name.
    """
    try:
        return REGULARIZERS[name]
    except KeyError:
        raise ValueError(f"unknown regulariser {name!r}; choose one of {sorted(REGULARIZERS)}") from None
