"""Input checks shared by attacks, methods and CLIs: written once so every entry point
rejects the same mistakes with the same words."""


def check_unit_interval(name, value):
    """Checks that a perturbation size is in [0, 1] image units.

    "8" meant as 8/255 is the classic mistake, so the message says so.

    Args:
      name: the setting's name, for the message.
      value: the value.

    Returns:
      ``value`` as a float.

    Raises:
      ValueError: ``value`` is outside [0, 1].
    """
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(
            f"{name}={value!r} is outside [0, 1]: perturbation sizes are in [0, 1] image "
            f"units (8/255 = {8 / 255:.5f}, not 8)")
    return float(value)


def looks_like_probabilities(outputs):
    """Whether a model's outputs look like probabilities rather than logits.

    In [0, 1] with rows summing to 1: the attacks' losses assume logits, and after a softmax
    their gradients vanish, so robustness is overestimated.  The one test behind
    AutoAttack's sanity check and ``tf_st.evaluation``'s model warnings.

    Args:
      outputs: the model's outputs ``[B, classes]``.

    Returns:
      A bool.
    """
    import numpy as np
    z = np.asarray(outputs, np.float64)
    return bool(z.min() >= 0.0 and z.max() <= 1.0
                and np.allclose(z.sum(-1), 1.0, atol=1e-4))
