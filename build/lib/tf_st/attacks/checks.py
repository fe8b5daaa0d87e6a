"""Input checks shared by attacks, methods and CLIs: written once so every entry point
rejects the same mistakes with the same words."""


def check_unit_interval(name, value):
    """Perturbation sizes are in [0, 1] image units; "8" meant as 8/255 is the classic
    mistake, so the message says so."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(
            f"{name}={value!r} is outside [0, 1]: perturbation sizes are in [0, 1] image "
            f"units (8/255 = {8 / 255:.5f}, not 8)")
    return float(value)
