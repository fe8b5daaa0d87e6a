r"""The one trainer: ``python -m trainers.train --method=st --dataset=svhn``.

``python -m trainers.<key>`` is the same thing with ``--method=<key>`` preset (thin
alias modules).  Every flag is defined here, once, at import: the shared run flags and
one flag per hyperparameter field of every registered method (``tf_st.methods``'
``HParams`` dataclasses; two methods sharing a field name share its flag, e.g.
``--beta``).  So importing several trainers in one process (tests) never defines a flag
twice, and a method's hyperparameters are declared in exactly one place.

An unset flag (``None``) takes the paper preset for the dataset
(``tf_st.training.presets``), else the method's dataclass default.  A method flag given
for a method that has no such hyperparameter is an error, as is any invalid value; all
of this is checked before any work.  Expected failures print ``error: ...`` on stderr
and exit with status 2 (bad input) or 3 (training diverged: a non-finite loss stops the
run before anything of that epoch is saved or exported); ``--verbose_errors`` shows the
traceback too.
"""


from absl import app, flags

from tf_st import cli, data, methods, models
from tf_st.attacks.specs import parse as parse_attack
from tf_st.methods.hparams import cli_fields, field_kind
from trainers import runner

FLAGS = flags.FLAGS

_METHOD = flags.DEFINE_enum("method", None, sorted(methods.METHODS), "Training method.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard a run in --output_dir that was "
                               "started with other settings (otherwise the run refuses).")

# Settings field -> flag holder (flag names equal Settings field names).
_RUN = {
    "dataset": flags.DEFINE_enum(
        "dataset", "cifar10_mini", sorted(data.DATASETS),
        "cifar10, cifar100, svhn, image_folder, or the bundled cifar10_mini (3,000 train / "
        "1,000 held-out CIFAR-10 *training* images)."),
    "data_dir": flags.DEFINE_string("data_dir", None, "TFDS data dir, or image-folder root."),
    "arch": flags.DEFINE_enum("arch", None, sorted(models.ARCHS), "Architecture (preset: resnet18)."),
    "epochs": flags.DEFINE_integer("epochs", None, "Training epochs (preset).", lower_bound=1),
    "train_examples": flags.DEFINE_integer(
        "train_examples", None, "Train on the first N training examples only (image folders "
        "are class-interleaved, so the prefix is balanced).", lower_bound=1),
    "steps_per_epoch": flags.DEFINE_integer("steps_per_epoch", None,
                                            "Cap on steps per epoch (quick runs).", lower_bound=1),
    "batch_size": flags.DEFINE_integer("batch_size", None, "Global batch size (preset 128).",
                                       lower_bound=1),
    "lr": flags.DEFINE_float("lr", None, "Base learning rate (preset)."),
    "lr_milestones": flags.DEFINE_list("lr_milestones", None,
                                       "1-based epochs at which lr is cut x0.1 (preset)."),
    "lr_multipliers": flags.DEFINE_list(
        "lr_multipliers", None, "lr / base lr after each --lr_milestones entry (preset: 0.1, "
        "0.01, ...; FAT: 0.1,0.01,0.005)."),
    "weight_decay": flags.DEFINE_float("weight_decay", None,
                                       "Coupled (PyTorch-style) L2 weight decay (preset 5e-4).",
                                       lower_bound=0.0),
    "momentum": flags.DEFINE_float("momentum", None, "SGD momentum (preset 0.9).", lower_bound=0.0),
    "augment": flags.DEFINE_enum("augment", None, ["none", "crop_flip"],
                                 "Per-example augmentation (preset per dataset)."),
    "lr_schedule": flags.DEFINE_enum("lr_schedule", None, ["piecewise", "cosine"],
                                     "piecewise: x0.1 at --lr_milestones; cosine: per epoch "
                                     "(RST). Preset: piecewise (cosine with --unlabeled)."),
    "nesterov": flags.DEFINE_bool("nesterov", None, "Nesterov momentum (preset: off; on with "
                                  "--unlabeled, as RST)."),
    "unlabeled": flags.DEFINE_string(
        "unlabeled", None, "Robust self-training: pseudo-labelled set (.npz with images and "
        "labels, or an image folder <dir>/<class>/<image>) mixed into every batch; RST "
        "presets apply (tf_st.training.presets.rst_preset)."),
    "unlabeled_fraction": flags.DEFINE_float("unlabeled_fraction", 0.5,
                                             "Fraction of each batch drawn from --unlabeled."),
    "selection_split": flags.DEFINE_enum(
        "selection_split", "test", ["test", "holdout"], "Per-epoch model selection on the "
        "test split (the references' rule) or on a class-balanced holdout of training images."),
    "holdout_examples": flags.DEFINE_integer("holdout_examples", 1000, "Holdout size with "
                                             "--selection_split=holdout.", lower_bound=1),
    "output_dir": flags.DEFINE_string("output_dir", None, "Run directory."),
    "eval_examples": flags.DEFINE_integer(
        "eval_examples", None, "Per-epoch evaluation on the first N test examples (default all).",
        lower_bound=1),
    "eval_batch_size": flags.DEFINE_integer("eval_batch_size", 500, "Evaluation batch size.",
                                            lower_bound=1),
    "eval_step_size": flags.DEFINE_float(
        "eval_step_size", 2 / 255, "Step size of the evaluation's PGD/CW attacks (ST-AT: 2/255)."),
    "final_attacks": flags.DEFINE_list(
        "final_attacks", ["clean", "fgsm", "pgd20", "pgd100", "cw100"],
        "Attacks of the final evaluation of the exported model ('' to skip)."),
    "final_examples": flags.DEFINE_integer(
        "final_examples", None, "Final evaluation on the first N test examples (default all).",
        lower_bound=1),
    "seed": flags.DEFINE_integer("seed", 1, "Seed for weights, data order, noise (ST-AT: 1)."),
    "strategy": flags.DEFINE_enum("strategy", "auto", ["auto", "default", "one_device",
                                                       "mirrored", "multi_worker"],
                                  "tf.distribute strategy."),
    "cpu_devices": flags.DEFINE_integer(
        "cpu_devices", 1, "Split the CPU into N logical devices (with --strategy=auto or "
        "mirrored: MirroredStrategy over them).", lower_bound=1),
    "intra_op_threads": flags.DEFINE_integer(
        "intra_op_threads", 0, "Threads within an op (0: all cores).", lower_bound=0),
    "inter_op_threads": flags.DEFINE_integer(
        "inter_op_threads", 0, "Ops run at once (0: TensorFlow's default).", lower_bound=0),
    "deterministic": flags.DEFINE_bool(
        "deterministic", False, "Bit-exact CPU runs (op determinism, single-threaded ops, "
        "oneDNN off): slower (measure with benchmarks), same results after kill and resume."),
    "mixed_precision": flags.DEFINE_bool(
        "mixed_precision", False, "Mixed-precision compute, float32 master weights, logits "
        "and losses (float16 with loss scaling on GPUs, bfloat16 otherwise)."),
    "mixed_precision_dtype": flags.DEFINE_enum(
        "mixed_precision_dtype", "auto", ["auto", "float16", "bfloat16"],
        "Compute dtype of --mixed_precision (auto: float16 on GPUs, bfloat16 elsewhere)."),
    "sync_batchnorm": flags.DEFINE_bool(
        "sync_batchnorm", False, "BatchNorm statistics over the global batch across replicas "
        "(equal to one device); default: per replica, as PyTorch DataParallel."),
    "jit_compile": flags.DEFINE_bool(
        "jit_compile", False, "XLA-compile the train step (Keras' 'auto' is off under strategies)."),
    "awp": flags.DEFINE_bool("awp", False, "Adversarial weight perturbation on top of the "
                             "method (csdongxian/AWP)."),
    "awp_gamma": flags.DEFINE_float("awp_gamma", None, "AWP size gamma (preset: 0.01 madry, "
                                    "0.005 others).", lower_bound=0.0),
    "awp_warmup": flags.DEFINE_integer("awp_warmup", None, "First epoch with AWP, counted from "
                                       "--awp_first_epoch (preset: 0 madry, 10 others).",
                                       lower_bound=0),
    "awp_first_epoch": flags.DEFINE_integer(
        "awp_first_epoch", None, "The number --awp_warmup gives the first epoch (preset: 0 "
        "madry, as AT-AWP counts; 1 others, as TRADES-AWP).", lower_bound=0, upper_bound=1),
    "awp_proxy_lr": flags.DEFINE_float("awp_proxy_lr", None, "Learning rate of AWP's proxy "
                                       "step (preset: 0.01 madry, 0.1 others)."),
}
# The inner-attack budget every adversarial method shares (HParams base fields).
_ATTACK = {
    "epsilon": flags.DEFINE_float("epsilon", None, "L-inf budget in [0, 1] (preset 8/255)."),
    "step_size": flags.DEFINE_float("step_size", None, "Inner step size in [0, 1] (preset)."),
    "steps": flags.DEFINE_integer("steps", None, "Inner iterations K (preset 10).", lower_bound=0),
}
for _name in ("epsilon", "step_size", "eval_step_size"):
    flags.register_validator(_name, lambda v: v is None or 0.0 <= v <= 1.0,
                             f"--{_name} must be in [0, 1] image units (8/255 = 0.0314, not 8)")
flags.register_validator("lr", lambda v: v is None or v > 0, "--lr must be positive")
flags.register_validator("lr_milestones",
                         lambda v: v is None or all(str(m).isdigit() for m in v),
                         "--lr_milestones must be comma-separated epoch numbers")


def _known_attacks(names):
    try:
        for a in names or []:
            if a:
                parse_attack(a)
    except ValueError:
        return False
    return True


flags.register_validator("final_attacks", _known_attacks,
                         "unknown attack in --final_attacks; use clean, fgsm, pgd<N>, cw<N>, "
                         "pgd_rst, aa, apgd-ce, apgd-t, fab-t or square")


def _define_method_flags():
    """One flag per (flag name) over every method's HParams fields; returns
    ``{flag name: {method key: field name}}``."""
    by_flag = {}
    for key, cls in sorted(methods.METHODS.items()):
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
        choices = sorted({c for _, f in entries for c in (f.metadata.get("choices") or ())})
        if choices:
            holder = flags.DEFINE_enum(flag_name, None, choices, text)
        elif kind == "bool":
            holder = flags.DEFINE_bool(flag_name, None, text)
        elif kind == "int":
            holder = flags.DEFINE_integer(flag_name, None, text)
        elif kind == "float":
            holder = flags.DEFINE_float(flag_name, None, text)
        else:
            holder = flags.DEFINE_string(flag_name, None, text)
        minimum = {f.metadata.get("minimum") for _, f in entries}
        if len(minimum) == 1 and None not in minimum:
            (low,) = minimum
            flags.register_validator(flag_name, lambda v, low=low: v is None or v >= low,
                                     f"--{flag_name} must be >= {low}")
        holders[flag_name] = holder
        owners[flag_name] = {k: f.name for k, f in entries}
    return holders, owners


_METHOD_FLAGS, _METHOD_FLAG_OWNERS = _define_method_flags()


class UsageError(ValueError):
    pass


def settings_from_flags(method_key):
    """``runner.Settings`` from the parsed flags (method hyperparameters included)."""
    values = {name: holder.value for name, holder in _RUN.items()}
    if values["lr_milestones"] is not None:
        values["lr_milestones"] = tuple(int(m) for m in values["lr_milestones"])
    if values["lr_multipliers"] is not None:
        try:
            values["lr_multipliers"] = tuple(float(m) for m in values["lr_multipliers"])
        except ValueError:
            raise UsageError("--lr_multipliers must be comma-separated numbers") from None
    values["final_attacks"] = tuple(values["final_attacks"] or ())
    hparams = {name: holder.value for name, holder in _ATTACK.items()}
    for flag_name, holder in _METHOD_FLAGS.items():
        owners = _METHOD_FLAG_OWNERS[flag_name]
        if method_key in owners:
            hparams[owners[method_key]] = holder.value
        elif FLAGS[flag_name].present:
            raise UsageError(f"--{flag_name} does not apply to method {method_key!r} "
                             f"(it is a hyperparameter of {', '.join(sorted(owners))})")
    return runner.Settings(method=method_key, hparams=hparams, **values)


def flagfile_text(settings):
    """``flags.txt``: the resolved settings as flags, so ``--flagfile`` re-runs them."""
    lines = [f"--method={settings.method}"]
    entries = [(name, getattr(settings, name)) for name in _RUN]
    entries += [(name, settings.hparams.get(name)) for name in _ATTACK]
    for flag_name, owners in _METHOD_FLAG_OWNERS.items():
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
            lines.append(f"--{name}={value!r}" if isinstance(value, float) else f"--{name}={value}")
    return "\n".join(lines) + "\n"


def main_for(default_method=None):
    """An ``absl.app`` main; ``default_method`` is the alias modules' preset ``--method``."""

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        key = _METHOD.value or default_method
        # All must happen before any TensorFlow op starts the runtime.
        from tf_st.distribute import set_threads, split_cpu
        split_cpu(_RUN["cpu_devices"].value)
        set_threads(_RUN["intra_op_threads"].value, _RUN["inter_op_threads"].value)
        if _RUN["strategy"].value == "multi_worker":
            from tf_st.distribute import make_strategy
            make_strategy("multi_worker")  # reads TF_CONFIG; before any op runs
        if _RUN["deterministic"].value:
            runner.make_deterministic()
        try:
            if key is None:
                raise UsageError("--method is required (one of "
                                 f"{', '.join(sorted(methods.METHODS))})")
            if default_method and _METHOD.value and _METHOD.value != default_method:
                raise UsageError(f"--method={_METHOD.value} given to the {default_method} "
                                 f"trainer; use python -m trainers.train --method=...")
            settings = runner.resolve(settings_from_flags(key))
            with data.naming_bad_images(settings.dataset, settings.data_dir):
                runner.run(settings, flagfile_text=flagfile_text(settings),
                           overwrite=_OVERWRITE.value)
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - cli.report re-raises bugs
            return cli.report(e)  # 2 for bad input, 3 (NonFiniteLossError.exit_code) diverged
        return 0

    return main


def run_cli(default_method=None):
    app.run(main_for(default_method))


def run_in_process(argv, default_method=None):
    """Parses ``argv`` (a list of flags, no program name) and runs the trainer in this
    process, restoring every flag afterwards; returns the exit status.  For tests."""
    from absl.testing import flagsaver
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        FLAGS(["train"] + list(argv))
        return main_for(default_method)(["train"])


if __name__ == "__main__":
    run_cli()
