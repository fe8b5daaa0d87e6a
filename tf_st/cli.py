"""What every command-line entry point of tf_st does with errors.

Expected failures -- bad flags or input, unreadable or unwritable files, a dataset that
is not there, a corrupt image -- print one ``error: ...`` line on stderr and exit with
status 2 (an exception with an ``exit_code`` attribute exits with that code, e.g. 3 for
a diverged training); an interruption (Ctrl-C, SIGTERM turned into ``KeyboardInterrupt``) prints one
line and exits with 130.  Tracebacks are for bugs: they appear for any other exception,
and for expected ones too with ``--verbose_errors`` or ``TF_ST_DEBUG=1``.

``python -m trainers.*``, ``python -m tf_st.evaluation`` (``export.evaluate``),
``trainers.pseudo_label``, ``tf_st.models.convert`` and ``benchmarks.*`` all go through
``guarded``.
"""

import os
import sys

from absl import flags

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# In absl's global registry (the trainers and benchmarks); CLIs with their own
# FlagValues define their own copy with ``define_verbose_errors(their_flags)``.
VERBOSE_ERRORS = None


def define_verbose_errors(flag_values=flags.FLAGS):
    return flags.DEFINE_bool("verbose_errors", False, "Print tracebacks of expected errors "
                             "too (also: TF_ST_DEBUG=1).", flag_values=flag_values)


if "verbose_errors" not in flags.FLAGS:
    VERBOSE_ERRORS = define_verbose_errors()
else:  # pragma: no cover - a module reload
    VERBOSE_ERRORS = flags.FLAGS["verbose_errors"]


def deterministic_requested(argv):
    """Whether ``argv`` asks for ``--deterministic``, read as absl's parser will: a
    ``--flagfile=...`` (a run's ``flags.txt``) expanded, the last of ``--deterministic`` /
    ``--nodeterministic`` winning."""
    try:
        args = flags.FlagValues().read_flags_from_files(list(argv), force_gnu=False)
    except Exception:  # noqa: BLE001 - a bad flagfile is reported by the real parser
        args = list(argv)
    wanted = False
    for a in args:
        if a in ("--deterministic", "--deterministic=true", "--deterministic=True",
                 "--deterministic=1"):
            wanted = True
        elif a in ("--nodeterministic", "--deterministic=false", "--deterministic=False",
                   "--deterministic=0"):
            wanted = False
    return wanted


def prepare_environment(argv):
    """What a training entry point must do before TensorFlow is imported: keep its C++
    start-up chatter off the console, and turn oneDNN's reordered float kernels off for
    ``--deterministic`` (TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import, before
    the flags are parsed)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if deterministic_requested(argv):
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"


# Python errors of bad input; their whole message is shown.
_INPUT_ERRORS = (ValueError, OSError, flags.Error, LookupError)


def parse_flags(flag_values, argv):
    """Parses ``argv`` (program name first) into ``flag_values`` from their defaults (a
    second call in one process starts afresh); a bad flag or a stray argument raises,
    which ``guarded`` reports as one line -- before ``--verbose_errors`` is known, so
    without a traceback."""
    flag_values.unparse_flags()
    rest = flag_values(list(argv))
    if len(rest) > 1:
        raise ValueError(f"unexpected arguments: {rest[1:]}")


def expected_error(e):
    """Whether ``e`` is a user-facing failure (bad input, missing or unwritable files, or
    an error that carries its own ``exit_code``) rather than a bug."""
    import tensorflow as tf
    if hasattr(e, "exit_code"):
        return True
    if isinstance(e, _INPUT_ERRORS):
        # KeyError/IndexError are LookupErrors, and bugs as often as not: only ours.
        return not isinstance(e, LookupError) or type(e).__name__.endswith("NotFoundError")
    # tf.data's decode and file errors reach here as OpErrors (named by the loaders).
    return isinstance(e, (tf.errors.InvalidArgumentError, tf.errors.NotFoundError,
                          tf.errors.DataLossError, tf.errors.PermissionDeniedError))


def verbose(flag=None):
    if os.environ.get("TF_ST_DEBUG", "") not in ("", "0"):
        return True
    flag = flag if flag is not None else VERBOSE_ERRORS
    if isinstance(flag, bool):
        return flag
    try:
        return bool(flag.value)
    except flags.UnparsedFlagAccessError:
        return False


def report(e, verbose_flag=None):
    """Prints ``e`` as one line (or re-raises it when verbose); returns the exit status."""
    if isinstance(e, KeyboardInterrupt):
        print(f"interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if verbose(verbose_flag) or not expected_error(e):
        raise e
    text = (getattr(e, "message", None) or str(e)).strip() or type(e).__name__
    if not isinstance(e, _INPUT_ERRORS) and not hasattr(e, "exit_code"):
        # A TF OpError's text goes on with graph nodes; its first line is the reason.
        text = text.splitlines()[0]
    print(f"error: {text}", file=sys.stderr)
    return getattr(e, "exit_code", EXIT_BAD_INPUT)


def guarded(main, verbose_flag=None):
    """``main(argv) -> status`` with the error policy above (for ``absl.app.run`` or
    ``sys.exit(guarded(main)(sys.argv))``)."""

    def run(argv):
        try:
            return main(argv)
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - re-raised unless expected
            return report(e, verbose_flag)

    return run
