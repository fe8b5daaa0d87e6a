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


NORMS = ("Linf", "L2")


def radius_text(epsilon, norm="Linf"):
    """A radius as users write it: ``8/255`` in L-inf, ``0.5`` in L2.

    Args:
      epsilon: the radius, in [0, 1] units.
      norm: ``'Linf'`` or ``'L2'``.

    Returns:
      The text.
    """
    return f"{255 * epsilon:.4g}/255" if norm == "Linf" else f"{epsilon:.4g}"


def check_norm(norm):
    """The canonical spelling of a threat model's norm.

    Args:
      norm: ``'Linf'`` or ``'L2'`` (any case; ``'inf'`` and ``'2'`` too).

    Returns:
      ``'Linf'`` or ``'L2'``.

    Raises:
      ValueError: another norm.
    """
    key = str(norm).strip().lower()
    canonical = {"linf": "Linf", "inf": "Linf", "l_inf": "Linf", "l2": "L2", "2": "L2"}
    if key not in canonical:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS} (the threat model)")
    return canonical[key]


def check_budget(name, value, norm="Linf"):
    """Checks a perturbation size for the threat model ``norm``.

    An L-inf size is in [0, 1] image units (``check_unit_interval``); an L2 size is the
    radius of a ball over the whole image in the same [0, 1] units, so it may exceed 1
    (0.5 is CIFAR-10's usual budget) but must be finite and >= 0.

    Args:
      name: the setting's name, for the message.
      value: the value.
      norm: ``'Linf'`` or ``'L2'``.

    Returns:
      ``value`` as a float.

    Raises:
      ValueError: ``value`` is out of range for ``norm``.
    """
    if check_norm(norm) == "Linf":
        return check_unit_interval(name, value)
    import math
    if not (math.isfinite(float(value)) and float(value) >= 0.0):
        raise ValueError(
            f"{name}={value!r} must be a finite number >= 0: an L2 size is the radius of "
            "a ball over the whole image in [0, 1] pixel units (e.g. 0.5 on CIFAR-10)")
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
