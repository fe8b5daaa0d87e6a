"""Every setting of a run, declared once.

``Settings`` is a dataclass whose fields carry their metadata (``setting(...)``: default,
help, kind, choices, bounds, whether an unset value comes from the paper presets).  From
this one declaration come:

  * the command-line flags and their help (``define_flags``; the trainer CLI, the console
    script and ``analysis.sweep``'s ``--train_flags`` all parse through it),
  * validation (``validate``; absl checks the same bounds while parsing),
  * ``flags.txt`` and its ``--flagfile`` round trip (``flagfile_text``),
  * ``settings.json`` and the mismatch check of a rerun (``Settings.as_json``, compared
    by ``tf_st.training.rundir``) and the model card's ``flags`` block,
  * the tests' parametrisation (``tests/test_config.py`` iterates over ``fields()``).

A method's hyperparameters are declared in its own ``HParams`` dataclass
(``tf_st.methods.hparams``) and become flags here, one per field name over all
registered methods.  Paper presets (``tf_st.training.presets``) fill what is left unset.
"""

import dataclasses
import math
from typing import Optional

from absl import flags

KINDS = ("str", "int", "float", "bool", "enum", "ints", "floats", "strs")


def setting(default, help, *, kind, group, choices=None, minimum=None, maximum=None,
            unit=False, preset=False, flag=True):
    """A run setting: a ``dataclasses.field`` carrying its declaration.

    Args:
      default: the default value (a list becomes a tuple).
      help: the help text.
      kind: the flag type, one of ``KINDS`` (``ints``/``floats``/``strs`` are
        comma-separated lists held as tuples).
      group: the help section (``run``, ``runtime``, ``method``, ...).
      choices: allowed values.
      minimum: inclusive lower bound.
      maximum: inclusive upper bound.
      unit: the value is in [0, 1] image units.
      preset: ``None`` means "the paper preset" (``tf_st.training.presets``).
      flag: False keeps the field off the command line.

    Returns:
      The field.
    """
    assert kind in KINDS, kind
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata=dict(
        help=help, kind=kind, group=group, choices=tuple(choices) if choices else None,
        minimum=minimum, maximum=maximum, unit=unit, preset=preset, flag=flag))


def _datasets():
    from tf_st import data
    return sorted(data.DATASETS)


def _archs():
    from tf_st import models
    return sorted(models.ARCHS)


# Choices that come from a registry are resolved when the flags are defined.
_DYNAMIC_CHOICES = {"dataset": _datasets, "arch": _archs}

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker")


@dataclasses.dataclass
class Settings:
    """Everything a run needs; ``tf_st.experiment.resolve`` fills unset values from the presets.

    Each field is declared with ``setting(...)``, whose help text documents it (and is the
    flag's ``--help``).

    Args:
      hparams: the method's own hyperparameters (fields of its ``HParams``), including the
        inner attack's ``epsilon`` / ``step_size`` / ``steps``.
    """
    method: str = setting(None, "Training method.", kind="str", group="run", flag=False)
    # -- data
    dataset: str = setting(
        "cifar10_mini", "cifar10, cifar100, svhn, image_folder, or the bundled cifar10_mini "
        "(3,000 train / 1,000 held-out CIFAR-10 *training* images).", kind="enum", group="data")
    data_dir: Optional[str] = setting(None, "TFDS data dir, or image-folder root.", kind="str",
                                      group="data")
    train_examples: Optional[int] = setting(
        None, "Train on the first N training examples only (image folders are "
        "class-interleaved, so the prefix is balanced).", kind="int", group="data", minimum=1)
    augment: Optional[str] = setting(None, "Per-example augmentation (preset per dataset).",
                                     kind="enum", group="data", choices=("none", "crop_flip"),
                                     preset=True)
    # Robust self-training: a pseudo-labelled set mixed into every batch (tf_st.data.rst).
    unlabeled: Optional[str] = setting(
        None, "Robust self-training: pseudo-labelled set (.npz with images and labels, or an "
        "image folder <dir>/<class>/<image>) mixed into every batch; RST presets apply "
        "(tf_st.training.presets.rst_preset).", kind="str", group="data")
    unlabeled_fraction: float = setting(0.5, "Fraction of each batch drawn from --unlabeled.",
                                        kind="float", group="data", minimum=0.0)
    # -- model and optimisation
    arch: Optional[str] = setting(None, "Architecture (preset: resnet18).", kind="enum",
                                  group="optim", preset=True)
    epochs: Optional[int] = setting(None, "Training epochs (preset).", kind="int",
                                    group="optim", minimum=1, preset=True)
    steps_per_epoch: Optional[int] = setting(None, "Cap on steps per epoch (quick runs).",
                                             kind="int", group="optim", minimum=1)
    batch_size: Optional[int] = setting(None, "Global batch size (preset 128).", kind="int",
                                        group="optim", minimum=1, preset=True)
    lr: Optional[float] = setting(None, "Base learning rate (preset).", kind="float",
                                  group="optim", preset=True)
    lr_milestones: Optional[tuple] = setting(
        None, "1-based epochs at which lr is cut x0.1 (preset).", kind="ints", group="optim",
        preset=True)
    lr_multipliers: Optional[tuple] = setting(
        None, "lr / base lr after each --lr_milestones entry (preset: 0.1, 0.01, ...; FAT: "
        "0.1,0.01,0.005).", kind="floats", group="optim", preset=True)
    weight_decay: Optional[float] = setting(
        None, "Coupled (PyTorch-style) L2 weight decay (preset 5e-4).", kind="float",
        group="optim", minimum=0.0, preset=True)
    momentum: Optional[float] = setting(None, "SGD momentum (preset 0.9).", kind="float",
                                        group="optim", minimum=0.0, preset=True)
    lr_schedule: Optional[str] = setting(
        None, "piecewise: x0.1 at --lr_milestones; cosine: per epoch (RST). Preset: piecewise "
        "(cosine with --unlabeled).", kind="enum", group="optim",
        choices=("piecewise", "cosine"), preset=True)
    nesterov: Optional[bool] = setting(None, "Nesterov momentum (preset: off; on with "
                                       "--unlabeled, as RST).", kind="bool", group="optim",
                                       preset=True)
    # -- model selection and evaluation
    # Model selection on "test" (the references' rule, so the default) or on a
    # class-balanced holdout of `holdout_examples` training images (never trained on).
    selection_split: str = setting(
        "test", "Per-epoch model selection on the test split (the references' rule) or on a "
        "class-balanced holdout of training images.", kind="enum", group="evaluation",
        choices=("test", "holdout"))
    holdout_examples: int = setting(1000, "Holdout size with --selection_split=holdout.",
                                    kind="int", group="evaluation", minimum=1)
    output_dir: Optional[str] = setting(None, "Run directory.", kind="str", group="run")
    eval_examples: Optional[int] = setting(
        None, "Per-epoch evaluation on the first N test examples (default all).", kind="int",
        group="evaluation", minimum=1)
    eval_batch_size: int = setting(500, "Evaluation batch size.", kind="int",
                                   group="evaluation", minimum=1)
    # ST-AT utils.py:evaluate and test.py: PGD/CW steps of 2/255 on every dataset; under
    # --norm=l2 2.5 * eps / 20 (tf_st.training.presets.eval_step_size).
    eval_step_size: Optional[float] = setting(
        None, "Step size of the evaluation's PGD/CW attacks (preset: 2/255 as ST-AT; "
        "--norm=l2: 2.5 * eps / 20, the robustness library's rule).", kind="float",
        group="evaluation", unit=True, preset=True)
    final_attacks: tuple = setting(
        ("clean", "fgsm", "pgd20", "pgd100", "cw100"),
        "Attacks of the final evaluation of the exported model ('' to skip).", kind="strs",
        group="evaluation")
    final_examples: Optional[int] = setting(
        None, "Final evaluation on the first N test examples (default all).", kind="int",
        group="evaluation", minimum=1)
    seed: int = setting(1, "Seed for weights, data order, noise (ST-AT: 1); each use draws "
                        "from its own stream of it (tf_st.seeds).", kind="int", group="run",
                        minimum=0, maximum=(1 << 24) - 1)
    # The threat model of training (every PGD-like inner attack), of the per-epoch PGD-20
    # selection and of the final evaluation; the methods that implement L2 list it in
    # their ``norms`` (the others refuse --norm=l2 before any work).  Under l2 the unset
    # epsilon/step_size/steps take tf_st.training.presets.L2_HPARAMS.
    norm: str = setting(
        "linf", "Threat model of training, selection and evaluation: linf, or l2 (eps an L2 "
        "radius, preset 0.5, step 0.1, 7 steps; every method, natural's selection and "
        "evaluation only).", kind="enum", group="method", choices=("linf", "l2"))
    # -- runtime
    strategy: str = setting("auto", "tf.distribute strategy.", kind="enum", group="runtime",
                            choices=STRATEGIES)
    # 'auto': float16 (with loss scaling) on GPUs, bfloat16 elsewhere (CPUs with AMX /
    # AVX512-BF16, TPUs).
    mixed_precision: bool = setting(
        False, "Mixed-precision compute, float32 master weights, logits and losses (float16 "
        "with loss scaling on GPUs, bfloat16 otherwise).", kind="bool", group="runtime")
    mixed_precision_dtype: str = setting(
        "auto", "Compute dtype of --mixed_precision (auto: float16 on GPUs, bfloat16 "
        "elsewhere).", kind="enum", group="runtime", choices=("auto", "float16", "bfloat16"))
    # BatchNorm statistics over the global batch under a multi-replica strategy (one
    # all-reduce per BN); without it every replica normalises with its own slice.
    sync_batchnorm: bool = setting(
        False, "BatchNorm statistics over the global batch across replicas (equal to one "
        "device); default: per replica, as PyTorch DataParallel.", kind="bool", group="runtime")
    # Bit-exact CPU runs: op determinism, one thread per op and between ops, oneDNN off
    # (TF_ENABLE_ONEDNN_OPTS=0 must be set before TensorFlow is imported; the CLIs do it).
    # Measured: op determinism alone still diverged between runs.
    deterministic: bool = setting(
        False, "Bit-exact CPU runs (op determinism, single-threaded ops, oneDNN off): slower "
        "(measure with benchmarks), same results after kill and resume.", kind="bool",
        group="runtime")
    cpu_devices: int = setting(
        1, "Split the CPU into N logical devices (with --strategy=auto or mirrored: "
        "MirroredStrategy over them).", kind="int", group="runtime", minimum=1)
    intra_op_threads: int = setting(0, "Threads within an op (0: all cores).", kind="int",
                                    group="runtime", minimum=0)
    inter_op_threads: int = setting(0, "Ops run at once (0: TensorFlow's default).",
                                    kind="int", group="runtime", minimum=0)
    jit_compile: bool = setting(False, "XLA-compile the train step (Keras' 'auto' is off "
                                "under strategies).", kind="bool", group="runtime")
    # -- adversarial weight perturbation on top of the method (tf_st.methods.awp); unset
    # values take presets.awp_preset(method).
    awp: bool = setting(False, "Adversarial weight perturbation on top of the method "
                        "(csdongxian/AWP).", kind="bool", group="method")
    awp_gamma: Optional[float] = setting(
        None, "AWP size gamma (preset: 0.01 madry, 0.005 others).", kind="float",
        group="method", minimum=0.0, preset=True)
    awp_warmup: Optional[int] = setting(
        None, "First epoch with AWP, counted from --awp_first_epoch (preset: 0 madry, 10 "
        "others).", kind="int", group="method", minimum=0, preset=True)
    awp_proxy_lr: Optional[float] = setting(
        None, "Learning rate of AWP's proxy step (preset: 0.01 madry, 0.1 others).",
        kind="float", group="method", preset=True)
    # The number the warm-up gives the first epoch: 0 as AT-AWP's loop counts (madry
    # preset), 1 as TRADES-AWP's (every other method).
    awp_first_epoch: Optional[int] = setting(
        None, "The number --awp_warmup gives the first epoch (preset: 0 madry, as AT-AWP "
        "counts; 1 others, as TRADES-AWP).", kind="int", group="method", minimum=0, maximum=1,
        preset=True)
    # The method's own hyperparameters (its HParams dataclass), including the inner
    # attack's epsilon / step_size / steps.
    hparams: dict = dataclasses.field(default_factory=dict, metadata=dict(flag=False))

    def as_json(self):
        """The settings as JSON-ready values (tuples as lists).

        Returns:
          A dict of every field.
        """
        out = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def fields():
    """The declared settings that are flags (in declaration order).

    Returns:
      A list of ``dataclasses.Field``.
    """
    return [f for f in dataclasses.fields(Settings) if f.metadata.get("flag", True)]


def choices(f):
    """The allowed values of a setting, registries (datasets, architectures) resolved now.

    Args:
      f: a field of ``Settings``.

    Returns:
      A tuple of values, or None when any value goes.
    """
    if f.name in _DYNAMIC_CHOICES:
        return tuple(_DYNAMIC_CHOICES[f.name]())
    return f.metadata.get("choices")


def validate(s):
    """Checks every set value against its declaration.

    Args:
      s: a ``Settings``.

    Raises:
      ValueError: naming the flag of the first value outside its declaration.
    """
    for f in fields():
        value = getattr(s, f.name)
        if value is None:
            continue
        m = f.metadata
        name = f"--{f.name}"
        if m["unit"] and getattr(s, "norm", "linf") == "l2":
            from tf_st.attacks.checks import check_budget
            check_budget(name, value, "L2")  # an L2 length may exceed 1
        elif m["unit"] and not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1] image units (8/255 = 0.0314, not 8)")
        if m["minimum"] is not None and value < m["minimum"]:
            raise ValueError(f"{name} must be >= {m['minimum']}, got {value!r}")
        if m["maximum"] is not None and value > m["maximum"]:
            raise ValueError(f"{name} must be <= {m['maximum']}, got {value!r}")
        allowed = choices(f)
        if allowed and value not in allowed:
            raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


# ------------------------------------------------------------------------ flags

# The inner-attack budget every adversarial method shares (the HParams base fields,
# which are kept off the per-method flags so that they are defined once here).
ATTACK_FLAGS = {
    "epsilon": ("float", "L-inf budget in [0, 1] (preset 8/255); with --norm=l2 the L2 "
                "radius (preset 0.5, may exceed 1).", None),
    "step_size": ("float", "Inner step size in [0, 1] (preset; --norm=l2: 0.1).", None),
    "steps": ("int", "Inner iterations K (preset 10; --norm=l2: 7).", 0),
}


class FlagSet:
    """The trainer's flags on one ``absl.flags.FlagValues``.

    Run settings, the shared attack budget and one flag per method hyperparameter name.

    Args:
      fv: the ``absl.flags.FlagValues`` to define the flags on.
      method_classes: the method classes whose hyperparameters become flags.

    Raises:
      TypeError: a hyperparameter name with different types in different methods.
    """

    def __init__(self, fv, method_classes):
        self.fv = fv
        self.run = {}
        for f in fields():
            self.run[f.name] = _define(fv, f.name, f.metadata["kind"], f.default,
                                       f.metadata["help"], choices(f), f.metadata["minimum"],
                                       f.metadata["maximum"])
        self.attack = {name: _define(fv, name, kind, None, text, None, low, None)
                       for name, (kind, text, low) in ATTACK_FLAGS.items()}
        for name in ("epsilon", "step_size", "eval_step_size"):
            # Under --norm=l2 a length is an L2 radius: finite and >= 0, possibly > 1.
            flags.register_multi_flags_validator(
                [name, "norm"],
                lambda d, name=name: d[name] is None or (
                    d[name] >= 0.0 and math.isfinite(d[name]) if d["norm"] == "l2"
                    else 0.0 <= d[name] <= 1.0),
                f"--{name} must be in [0, 1] image units (8/255 = 0.0314, not 8); with "
                "--norm=l2 a finite L2 length >= 0", flag_values=fv)
        flags.register_validator("lr", lambda v: v is None or v > 0, "--lr must be positive",
                                 flag_values=fv)
        self.method, self.owners = _define_method_flags(fv, method_classes)

    def settings(self, method_key):
        """``Settings`` from the parsed flags (method hyperparameters included).

        Args:
          method_key: the method to build the settings for.

        Returns:
          An unresolved ``Settings``.

        Raises:
          ValueError: a method flag given for a method without that hyperparameter.
        """
        values = {name: holder.value for name, holder in self.run.items()}
        for f in fields():
            values[f.name] = _from_flag(f.metadata["kind"], f.name, values[f.name])
        hparams = {name: holder.value for name, holder in self.attack.items()}
        for flag_name, holder in self.method.items():
            owners = self.owners[flag_name]
            if method_key in owners:
                hparams[owners[method_key]] = holder.value
            elif self.fv[flag_name].present:
                raise ValueError(f"--{flag_name} does not apply to method {method_key!r} "
                                 f"(it is a hyperparameter of {', '.join(sorted(owners))})")
        return Settings(method=method_key, hparams=hparams, **values)

    def flagfile_text(self, settings):
        """``flags.txt``: the resolved settings as flags, so ``--flagfile`` re-runs them.

        Args:
          settings: the resolved ``Settings``.

        Returns:
          The text, one flag a line.
        """
        lines = [f"--method={settings.method}"]
        entries = [(f.name, getattr(settings, f.name)) for f in fields()]
        entries += [(name, settings.hparams.get(name)) for name in self.attack]
        for flag_name, owners in self.owners.items():
            if settings.method in owners:
                entries.append((flag_name, settings.hparams.get(owners[settings.method])))
        for name, value in entries:
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            if isinstance(value, bool):
                lines.append(f"--{name}" if value else f"--no{name}")
            else:
                lines.append(f"--{name}={value!r}" if isinstance(value, float)
                             else f"--{name}={value}")
        return "\n".join(lines) + "\n"


def _define(fv, name, kind, default, text, allowed, low, high):
    from tf_st import cli
    if kind == "floats":
        holder = cli.define_floats(name, list(default) if default is not None else None, text,
                                   flag_values=fv)
    elif kind in ("ints", "strs"):
        holder = flags.DEFINE_list(name, list(default) if default is not None else None, text,
                                   flag_values=fv)
    elif kind == "enum" or allowed:
        holder = flags.DEFINE_enum(name, default, list(allowed), text, flag_values=fv)
    elif kind == "bool":
        holder = flags.DEFINE_bool(name, default, text, flag_values=fv)
    elif kind == "int":
        holder = flags.DEFINE_integer(name, default, text, lower_bound=low, upper_bound=high,
                                      flag_values=fv)
    elif kind == "float":
        # Fractions too: --epsilon=8/255 (tf_st.cli.define_float).
        holder = cli.define_float(name, default, text, flag_values=fv, lower_bound=low,
                                  upper_bound=high)
    else:
        holder = flags.DEFINE_string(name, default, text, flag_values=fv)
    if kind == "ints":
        flags.register_validator(name, lambda v: v is None or all(str(m).isdigit() for m in v),
                                 f"--{name} must be comma-separated epoch numbers",
                                 flag_values=fv)
    return holder


def _from_flag(kind, name, value):
    if value is None:
        return None
    if kind == "ints":
        return tuple(int(v) for v in value)
    if kind == "floats":
        try:
            return tuple(float(v) for v in value)
        except ValueError:
            raise ValueError(f"--{name} must be comma-separated numbers") from None
    if kind == "strs":
        return tuple(value)
    return value


def _define_method_flags(fv, method_classes):
    """One flag per flag name over every method's HParams fields; returns ``(holders,
    {flag name: {method key: field name}})``."""
    from tf_st.methods.hparams import cli_fields, field_kind
    by_flag = {}
    for key, cls in sorted(method_classes.items()):
        for flag_name, f in cli_fields(cls.HParams):
            by_flag.setdefault(flag_name, []).append((key, f))
    holders, owners = {}, {}
    for flag_name, entries in sorted(by_flag.items()):
        kinds = {field_kind(f) for _, f in entries}
        if len(kinds) != 1:
            raise TypeError(f"--{flag_name} is a {sorted(kinds)} in different methods")
        kind = kinds.pop()
        keys = ", ".join(k for k, _ in entries)
        _, first = entries[0]
        text = f"[{keys}] {first.metadata['help']}"
        allowed = sorted({c for _, f in entries for c in (f.metadata.get("choices") or ())})
        holders[flag_name] = _define(fv, flag_name, kind if kind in KINDS else "str", None, text,
                                     allowed or None, None, None)
        minimum = {f.metadata.get("minimum") for _, f in entries}
        if len(minimum) == 1 and None not in minimum:
            (low,) = minimum
            flags.register_validator(flag_name, lambda v, low=low: v is None or v >= low,
                                     f"--{flag_name} must be >= {low}", flag_values=fv)
        owners[flag_name] = {k: f.name for k, f in entries}
    return holders, owners
