r"""The training CLI: ``python -m trainers.train --method=st --dataset=svhn``
(= ``python -m tf_st.experiment`` = ``tf-st train``).

``python -m trainers.<key>`` is the same thing with ``--method=<key>`` preset (thin
alias modules).  Every flag is defined here, once, at import, from the declarations of
``tf_st.experiment.config``: the run settings and one flag per hyperparameter field of
every registered method (``tf_st.methods``' ``HParams`` dataclasses; two methods sharing
a field name share its flag, e.g. ``--beta``).  So importing several trainers in one
process (tests) never defines a flag twice, and a setting is declared in exactly one
place.

An unset flag (``None``) takes the paper preset for the dataset
(``tf_st.training.presets``), else the method's dataclass default.  A method flag given
for a method that has no such hyperparameter is an error, as is any invalid value; all
of this is checked before any work.  Expected failures print ``error: ...`` on stderr
and exit with status 2 (bad input) or 3 (training diverged: a non-finite loss stops the
run before anything of that epoch is saved or exported); ``--verbose_errors`` shows the
traceback too.
"""


from absl import app, flags

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
