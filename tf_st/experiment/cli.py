r"""The training CLI: ``python -m trainers.train --method=st --dataset=svhn``
(= ``python -m tf_st.experiment`` = ``tf-st train``).

``python -m trainers.<key>`` is the same thing with ``--method=<key>`` preset (thin
alias modules).  Every flag is defined here, once, at import, from the declarations of
``tf_st.experiment.config``: the run settings and one flag per hyperparameter field of
every registered method (``tf_st.methods``' ``HParams`` dataclasses; two methods sharing
a field name share its flag, e.g. ``--beta``).  So importing several trainers in one
process (tests) never defines a flag twice, and a setting is declared in exactly one place.

An unset flag (``None``) takes the paper preset for the dataset
(``tf_st.training.presets``), else the method's dataclass default.  A method flag given
for a method that has no such hyperparameter is an error, as is any invalid value; all
of this is checked before any work.  Expected failures print ``error: ...`` on stderr
and exit with status 2 (bad input) or 3 (training diverged: a non-finite loss stops the
run before anything of that epoch is saved or exported); ``--verbose_errors`` shows the
traceback too.
"""


import os
import sys

from absl import flags

from tf_st import cli, data, methods
from tf_st.attacks.specs import describe_names, parse as parse_attack
from tf_st.experiment import config, runner

FLAGS = flags.FLAGS

_METHOD = flags.DEFINE_enum("method", None, sorted(methods.METHODS), "Training method.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard a run in --output_dir that was "
                               "started with other settings (otherwise the run refuses).")
_FLAGS = config.FlagSet(FLAGS, methods.METHODS)
# Settings field -> flag holder (flag names equal Settings field names).
_RUN = _FLAGS.run
_ATTACK = _FLAGS.attack
_METHOD_FLAGS, _METHOD_FLAG_OWNERS = _FLAGS.method, _FLAGS.owners


def _known_attacks(names):
    try:
        for a in names or []:
            if a:
                parse_attack(a)
    except ValueError:
        return False
    return True


flags.register_validator("final_attacks", _known_attacks,
                         f"unknown attack in --final_attacks; use {describe_names()}")


class UsageError(ValueError):
    pass


def settings_from_flags(method_key):
    """``Settings`` from the parsed flags (method hyperparameters included)."""
    try:
        return _FLAGS.settings(method_key)
    except ValueError as e:
        raise UsageError(str(e)) from None


def flagfile_text(settings):
    """``flags.txt``: the resolved settings as flags, so ``--flagfile`` re-runs them."""
    return _FLAGS.flagfile_text(settings)


def main_for(default_method=None, program=None):
    """The trainer's ``main(argv) -> exit status``, to call with the flags parsed.

    Args:
      default_method: the alias modules' preset ``--method`` (None: ``--method`` is
        required).
      program: how the user started it, for the "resume with" line on Ctrl-C (default:
        ``python -m trainers.<key>`` or ``python -m trainers.train``).

    Returns:
      ``main``; it returns 0, 2 (bad input), 3 (training diverged) or 130 (interrupted).
    """
    program = program or _program(default_method)

    def main(argv):
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
        settings = None
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
        except KeyboardInterrupt:
            return cli.report(KeyboardInterrupt(interrupted_message(settings, program, argv)))
        except Exception as e:  # noqa: BLE001 - cli.report re-raises bugs
            return cli.report(e)  # 2 for bad input, 3 (NonFiniteLossError.exit_code) diverged
        print(outputs_message(settings))
        return 0

    return main


def _program(default_method):
    return f"python -m trainers.{default_method}" if default_method else "python -m trainers.train"


def interrupted_message(settings, program, argv):
    """What Ctrl-C leaves behind and the command that resumes (``settings``: resolved,
    or None when the run had not started)."""
    command = cli.command_line(program, argv)
    if settings is None or not os.path.isdir(settings.output_dir or ""):
        return f"nothing was saved; start again with: {command}"
    from tf_st.training.callbacks import read_metrics
    try:
        epochs = len(read_metrics(os.path.join(settings.output_dir, "metrics.csv")))
    except Exception:  # noqa: BLE001 - the hint must not hide the interruption
        epochs = None
    if not epochs:
        saved = f"no epoch had finished, so {settings.output_dir} holds only the settings"
    else:
        saved = (f"{settings.output_dir} holds {epochs} finished epoch(s) (checkpoint, "
                 "metrics.csv, best weights)")
    return f"{saved}; resume with: {command}"


def outputs_message(settings):
    """Where a finished run put its outputs."""
    d = settings.output_dir
    parts = [f"outputs in {d}:"]
    for name, what in (("export", "SavedModel(s) with model_card.json"),
                       ("evaluation.json", "final evaluation report"),
                       ("metrics.csv", "per-epoch metrics"),
                       ("flags.txt", "settings (--flagfile re-runs them)")):
        if os.path.exists(os.path.join(d, name)):
            parts.append(f"{name}/ ({what})" if name == "export" else f"{name} ({what})")
    reports = sorted(f for f in os.listdir(d) if f.startswith("evaluation") and
                     f.endswith(".json") and f != "evaluation.json") if os.path.isdir(d) else []
    parts += [f"{f} (evaluation report)" for f in reports]
    return " ".join(parts[:1]) + " " + ", ".join(parts[1:])


_GROUPS = (("data", "data"), ("optim", "model and optimisation"),
           ("evaluation", "model selection and evaluation"), ("run", "run"),
           ("runtime", "runtime and devices"), ("method", "adversarial weight perturbation"))


def _arg_value(argv, name):
    value = None
    for a in argv[1:]:
        if a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
    return value


def _title(key):
    cls = methods.METHODS[key]
    doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or key).strip()
    first = " ".join(doc.split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".")


def help_page(default_method, argv, full=False, program=None):
    """The trainer's ``--help``: its flags grouped, units marked, and the presets that
    apply to ``--method``/``--dataset`` as given on the command line (default dataset
    ``cifar10_mini``); ``full``: every method's hyperparameters, not only this one's."""
    program = program or _program(default_method)
    key = _arg_value(argv, "method") or default_method
    if key not in methods.METHODS:
        key = None
    dataset = _arg_value(argv, "dataset") or config.Settings.dataset
    notes, resolved = {}, None
    if key is not None:
        try:
            resolved = runner.resolve(config.Settings(
                method=key, dataset=dataset, norm=_arg_value(argv, "norm") or "linf"))
        except Exception:  # noqa: BLE001 - help never fails; presets just go unshown
            resolved = None
    units = {"epsilon", "step_size", "eval_step_size"} | {
        name for name, owners in _METHOD_FLAG_OWNERS.items()
        if any(f.metadata.get("unit") for f in _hparam_fields(owners))}
    for name in units:
        notes[name] = cli.UNIT_NOTE
    if _arg_value(argv, "norm") == "l2":
        # Under L2 the shared budget is an L2 length over the whole image (it may exceed 1).
        units -= {"epsilon", "step_size", "eval_step_size"}
        for name in ("epsilon", "step_size", "eval_step_size"):
            notes[name] = "an L2 length in [0, 1] pixel units, may exceed 1"
    if resolved is not None:
        where = f"{key} on {dataset}"
        for f in config.fields():
            if f.metadata["preset"] and getattr(resolved, f.name) is not None:
                notes[f.name] = _join(notes.get(f.name), f"preset for {where}: "
                                      f"{cli.format_number(getattr(resolved, f.name))}")
        own = {field: flag for flag, owners in _METHOD_FLAG_OWNERS.items()
               for k, field in owners.items() if k == key}
        for field, value in resolved.hparams.items():
            flag = field if field in _ATTACK else own.get(field)
            if flag:
                notes[flag] = _join(notes.get(flag),
                                    f"for {where}: "
                                    f"{cli.format_number(value, flag in units)}")
    groups = [("method and run directory", (["method"] if not default_method else [])
               + ["output_dir", "overwrite"])]
    for group, title in _GROUPS:
        groups.append((title, [f.name for f in config.fields()
                               if f.metadata["group"] == group and f.name != "output_dir"]))
    groups.append(("inner attack (every adversarial method)", list(_ATTACK)))
    if key is not None and not full:
        groups.append((f"hyperparameters of {key}", sorted(
            n for n, owners in _METHOD_FLAG_OWNERS.items() if key in owners)))
    else:
        groups.append(("method hyperparameters ([methods] that take each)",
                       sorted(_METHOD_FLAG_OWNERS)))
    groups.append(("messages", ["verbose", "verbose_errors"]))
    if key is not None:
        summary = (f"Trains {_title(key)} ('{key}'), exports the best epoch as a SavedModel "
                   "and evaluates it under attack.")
    else:
        summary = ("Trains a method (--method), exports the best epoch as a SavedModel and "
                   "evaluates it under attack.")
    summary += ("  An unset flag takes the paper's preset for the method and dataset "
                "(shown for the --method/--dataset given here).")
    footer = ("--flagfile=<run dir>/flags.txt re-runs a run's settings; rerunning the same "
              "command resumes an interrupted run.  --helpfull lists every method's "
              "hyperparameters.")
    return cli.help_text(program, summary, groups, FLAGS, notes, footer)


def _hparam_fields(owners):
    import dataclasses
    out = []
    for key, field in owners.items():
        out += [f for f in dataclasses.fields(methods.METHODS[key].HParams) if f.name == field]
    return out


def _join(a, b):
    return f"{a}; {b}" if a else b


def cli_main(argv, default_method=None, program=None):
    """The trainer command line under ``tf_st.cli``'s policy; returns the exit status.

    Args:
      argv: the command line, program name first.
      default_method: the alias modules' preset ``--method``.
      program: how the user runs it (help and resume lines).

    Returns:
      0, 2 (bad command line or input), 3 (training diverged) or 130 (interrupted).
    """
    program = program or _program(default_method)
    return cli.run_command(main_for(default_method, program), argv, FLAGS,
                           lambda full: help_page(default_method, argv, full, program),
                           cli.VERBOSE_ERRORS)


def run_cli(default_method=None, program=None):
    """``sys.exit(cli_main(sys.argv, ...))``: the entry point of ``python -m trainers.*``."""
    sys.exit(cli_main(list(sys.argv), default_method, program))


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
