"""Hyperparameters declared once per method.

Each method owns a frozen dataclass (subclass of :class:`HParams`) whose fields carry
their default, their validation and their help text (field metadata, made by
:func:`hparam`).  From that one declaration come the constructor keywords
(``methods.build(key, net, beta=6)``), the checks (a bad value fails at construction,
before any work), the model-card dict (``dataclasses.asdict``) and the trainer's
command-line flags (``trainers.train`` defines one flag per field).  Before this,
every hyperparameter was written three times per method (signature, attribute,
``hparams()``) and the CLIs a fourth time.
"""

import dataclasses
from tf_st.attacks import checks


def hparam(default, help, *, choices=None, minimum=None, unit=False, integer=False,
           flag=None, what=None, cli=True, check=None):
    """A hyperparameter field of an ``HParams`` dataclass.

    Args:
      default: the default value.
      help: the help text (command-line ``--help`` and the field's documentation).
      choices: allowed values.
      minimum: inclusive lower bound.
      unit: the value is in [0, 1] image units.
      integer: the value is a whole number.
      flag: the command-line name when it differs from the field name (``--trades_reg``
        for TRADES' ``reg``).
      what: the noun used in error messages (``'regulariser'``).
      cli: False keeps the field off the command line (a variant's fixed setting such as
        ``neighbours``).
      check: a further ``check(value)`` that raises on a bad value.

    Returns:
      A ``dataclasses.field`` carrying these as metadata.
    """
    return dataclasses.field(default=default, metadata=dict(
        help=help, choices=tuple(choices) if choices else None, minimum=minimum, unit=unit,
        integer=integer, flag=flag, what=what, cli=cli, check=check))


def _validate(name, value, meta, norm="Linf"):
    what = meta.get("what") or name
    if meta.get("unit"):
        # An L2 budget is a radius over the whole image: it may exceed 1 (finite, >= 0).
        checks.check_budget(name, value, norm)
    if meta.get("integer") and (isinstance(value, bool) or int(value) != value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    minimum = meta.get("minimum")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        if what != name:
            raise ValueError(f"unknown {what} {value!r} ({name}); choose one of {list(choices)}")
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    if meta.get("check") is not None:
        meta["check"](value)


@dataclasses.dataclass(frozen=True)
class HParams:
    """The inner-attack budget every adversarial method shares.

    ST paper Section 5: eps 8/255, step 2/255, K = 10.  Each field is validated at
    construction as its ``hparam`` declares; a subclass adds a method's own fields.
    ``norm`` is the threat model of the inner attack (``'Linf'``, or ``'L2'`` for the
    methods whose class lists it in ``norms``); with ``'L2'`` ``epsilon`` and
    ``step_size`` are L2 lengths (which may exceed 1).  The trainer sets it from
    ``--norm`` (not a per-method flag).

    Raises:
      ValueError: a value out of range or not among the choices.
    """
    epsilon: float = hparam(8 / 255, "L-inf budget in [0, 1] image units.", unit=True, cli=False)
    step_size: float = hparam(2 / 255, "Inner step size in [0, 1] image units.", unit=True,
                              cli=False)
    steps: int = hparam(10, "Inner iterations K.", minimum=0, integer=True, cli=False)
    norm: str = hparam("Linf", "Threat model of the inner attack: Linf or L2 (--norm).",
                       cli=False, check=checks.check_norm)

    def __post_init__(self):
        object.__setattr__(self, "norm", checks.check_norm(self.norm))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _validate(f.name, value, f.metadata, self.norm)
            if f.type in (float, int, bool):
                object.__setattr__(self, f.name, f.type(value))

    @classmethod
    def build(cls, method_key, overrides):
        """``cls(**overrides)`` with an unknown keyword reported by name.

        Args:
          method_key: the method's key, for the message.
          overrides: ``{field name: value}``.

        Returns:
          The validated hyperparameters.

        Raises:
          ValueError: an unknown field, or a bad value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for method {method_key!r}; "
                             f"known: {sorted(known)}")
        return cls(**overrides)

    def as_dict(self):
        """The hyperparameters as a dict.

        Returns:
          ``dataclasses.asdict(self)``.
        """
        return dataclasses.asdict(self)


def cli_fields(cls) -> list:
    """The fields a trainer exposes as flags.

    Args:
      cls: an ``HParams`` subclass.

    Returns:
      ``[(flag name, dataclasses.Field)]``.
    """
    return [(f.metadata.get("flag") or f.name, f) for f in dataclasses.fields(cls)
            if f.metadata.get("cli", True)]


def field_kind(f) -> str:
    """The field's annotation, which picks its flag type.

    Args:
      f: a ``dataclasses.Field`` of an ``HParams`` subclass.

    Returns:
      ``'float'``, ``'int'``, ``'bool'`` or ``'str'``.
    """
    return f.type.__name__
