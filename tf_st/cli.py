"""What every command-line entry point of tf_st does with errors.

Expected failures -- bad flags or input, unreadable or unwritable files, a dataset that
is not there, a corrupt image -- print one ``error: ...`` line on stderr and exit with
status 2 (an exception with an ``exit_code`` attribute exits with that code, e.g. 3 for
a diverged training); an interruption (Ctrl-C, SIGTERM turned into ``KeyboardInterrupt``) prints one
line and exits with 130.  Tracebacks are for bugs: they appear for any other exception,
and for expected ones too with ``--verbose_errors`` or ``TF_ST_DEBUG=1``.

``python -m trainers.*``, ``python -m tf_st.evaluation`` (``export.evaluate``),
``tf_st.analysis``, ``trainers.pseudo_label``, ``tf_st.models.convert`` and
``benchmarks.*`` all go through ``run_command``, so they share one policy:

  * ``--help`` (``-h``, ``--helpshort``, ``--helpfull``) prints the command's own flags,
    grouped, with units and defaults (the trainer: the presets that apply), and exits 0;
  * an unknown flag (with absl's "did you mean"), a bad value or a stray argument prints
    one ``error:`` line and exits 2 before any work;
  * TensorFlow's C++ start-up banners stay off the console unless ``--verbose`` is given
    or the user set ``TF_CPP_MIN_LOG_LEVEL`` (``quiet_startup``);
  * every float flag (epsilons, step sizes) accepts a fraction: ``8/255`` = ``0.0313...``.
"""

import contextlib
import os
import shlex
import sys
import textwrap

from absl import flags

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# In absl's global registry (the trainers and benchmarks); CLIs with their own
# FlagValues define their own copy with ``define_verbose_errors(their_flags)``.
VERBOSE_ERRORS = None


class _Verbosity:
    """``--verbose`` or ``--verbose_errors`` of one registry, read like a flag holder."""

    def __init__(self, flag_values):
        self._fv = flag_values

    @property
    def value(self):
        return bool(self._fv["verbose"].value or self._fv["verbose_errors"].value)


def define_verbose_errors(flag_values=flags.FLAGS):
    """Defines ``--verbose`` and ``--verbose_errors`` in ``flag_values``.

    Args:
      flag_values: the ``absl.flags.FlagValues`` registry of one command.

    Returns:
      An object whose ``value`` is true when either flag is set (for ``guarded``).
    """
    if "verbose" not in flag_values:
        flags.DEFINE_bool("verbose", False, "TensorFlow's start-up logs, and tracebacks of "
                          "expected errors.", flag_values=flag_values)
    if "verbose_errors" not in flag_values:
        flags.DEFINE_bool("verbose_errors", False, "Print tracebacks of expected errors "
                          "too (also: TF_ST_DEBUG=1).", flag_values=flag_values)
    return _Verbosity(flag_values)


VERBOSE_ERRORS = define_verbose_errors()

HELP_ARGS = ("-h", "-help", "--help", "--helpshort", "--helpfull", "-?")


def help_requested(argv):
    """Whether ``argv`` (program name first) asks for help."""
    return any(a in HELP_ARGS for a in argv[1:])


def _verbose_requested(argv):
    return any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1")
               for a in argv)


@contextlib.contextmanager
def _stderr_silenced():
    """Points file descriptor 2 at /dev/null: TensorFlow's C++ libraries write their
    load-time lines ("All log messages before absl::InitializeLog()...", oneDNN and CUDA
    notices) before any log level applies, so only the descriptor can hold them back."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_QUIETED = False


def quiet_startup(argv):
    """Imports TensorFlow without its C++ start-up banners, unless asked for.

    A command calls this before anything imports TensorFlow (the packages ``tf_st``,
    ``trainers``, ``export`` and ``benchmarks`` do it while ``python -m`` looks up the
    module).  ``--verbose`` or a ``TF_CPP_MIN_LOG_LEVEL`` set by the user keeps every
    line; otherwise C++ logs below FATAL are off for the process (its errors reach the
    user as Python exceptions, which the error policy reports).

    Args:
      argv: the command's arguments (``--deterministic`` and ``--verbose`` are read).
    """
    global _QUIETED
    prepare_environment(argv)
    if _QUIETED or "tensorflow" in sys.modules:
        return
    _QUIETED = True
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or _verbose_requested(argv):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with _stderr_silenced():
        import tensorflow  # noqa: F401


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
    """Turns oneDNN's reordered float kernels off for ``--deterministic`` (TensorFlow
    reads TF_ENABLE_ONEDNN_OPTS once, at import, before the flags are parsed).

    Args:
      argv: the command's arguments (a ``--flagfile`` is read too).
    """
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


# ------------------------------------------------------------------ numbers and help

def parse_number(text):
    """A float from ``"0.0314"`` or a fraction ``"8/255"``.

    Args:
      text: the flag's text (or a number, returned as a float).

    Returns:
      The value as a float.

    Raises:
      ValueError: the text is neither a number nor ``a/b`` with ``b != 0``.
    """
    if not isinstance(text, str):
        return float(text)
    if text.count("/") == 1:
        num, den = (part.strip() for part in text.split("/"))
        value = float(den)
        if value == 0:
            raise ValueError(f"{text!r} divides by zero")
        return float(num) / value
    return float(text)


class FractionFloatParser(flags.FloatParser):
    """absl's float parser that also reads ``8/255`` (so every epsilon and step flag
    takes the papers' notation; the bounds are checked on the value)."""

    def __init__(self, lower_bound=None, upper_bound=None):
        super().__init__(lower_bound, upper_bound)
        if lower_bound is not None and upper_bound is not None:
            self.syntactic_help = f"a number in [{lower_bound:g}, {upper_bound:g}]"
        self.syntactic_help += " (fractions such as 8/255 accepted)"

    def convert(self, argument):
        return parse_number(argument)


def define_float(name, default, help, flag_values=flags.FLAGS, lower_bound=None,
                 upper_bound=None):
    """``flags.DEFINE_float`` whose values may be fractions (``--epsilon=8/255``).

    Args:
      name: flag name.
      default: default value (a float or None).
      help: help text.
      flag_values: the registry.
      lower_bound: inclusive lower bound, or None.
      upper_bound: inclusive upper bound, or None.

    Returns:
      The flag holder.
    """
    parser = FractionFloatParser(lower_bound, upper_bound)
    return flags.DEFINE(parser, name, default, help, flag_values,
                        flags.ArgumentSerializer())


class FractionListParser(flags.ListParser):
    """Comma-separated floats, each a number or a fraction."""

    def parse(self, argument):
        items = argument if isinstance(argument, (list, tuple)) else super().parse(argument)
        return [parse_number(v) for v in items]

    def flag_type(self):
        return "floats"


def define_floats(name, default, help, flag_values=flags.FLAGS):
    """A comma-separated list of floats, each a number or a fraction (``2/255,4/255``).

    Args:
      name: flag name.
      default: default list, or None.
      help: help text.
      flag_values: the registry.

    Returns:
      The flag holder (its value a list of floats).
    """
    parser = FractionListParser()
    return flags.DEFINE(parser, name, default, help, flag_values, flags.CsvListSerializer(","))


UNIT_NOTE = "[0, 1] image units; 8/255 accepted"


def format_number(value, unit=False):
    """A value as help text shows it: ``8/255`` for a unit value that is a whole number of
    255ths, other floats to 6 significant digits, lists comma-separated.

    Args:
      value: a number, a list/tuple of numbers, or anything else (shown with ``str``).
      unit: whether the value is in [0, 1] image units.

    Returns:
      The text.
    """
    if isinstance(value, (list, tuple)):
        return ",".join(format_number(v, unit) for v in value)
    if isinstance(value, float):
        n = value * 255
        if unit and round(n) and abs(n - round(n)) < 1e-6:
            return f"{round(n)}/255"
        return f"{value:.6g}"
    return str(value)


def _flag_line(flag, note=None):
    parser = flag.parser
    if flag.boolean:
        head = f"--[no]{flag.name}"
    elif getattr(parser, "enum_values", None):
        head = f"--{flag.name}=<{'|'.join(str(v) for v in parser.enum_values)}>"
    else:
        head = f"--{flag.name}=<{flag.flag_type()}>"
    default = flag.default
    unit = bool(note and UNIT_NOTE in note)
    if isinstance(default, (list, tuple)):
        default = format_number(default, unit) or "''"
    elif default is not None:
        default = format_number(default, unit)
    text = (flag.help or "").strip()
    if getattr(parser, "enum_values", None) and text.startswith("<"):
        text = text.split(">: ", 1)[-1]  # absl repeats the choices in an enum's help
    extra = [f"default: {default}"] if default is not None else []
    if note:
        extra.append(note)
    if extra:
        text += f" ({'; '.join(extra)})"
    body = textwrap.fill(text, 88, initial_indent="      ", subsequent_indent="      ")
    return f"  {head}\n{body}"


def help_text(program, summary, groups, flag_values, notes=None, footer=None):
    """The ``--help`` page of a command.

    Args:
      program: how the user runs it (``"python -m tf_st.evaluation"``).
      summary: a paragraph on what it does (may span lines).
      groups: ``[(title, [flag name, ...]), ...]``, in display order.
      flag_values: the registry holding the flags.
      notes: ``{flag name: note}`` shown instead of the default (units, presets).
      footer: a closing paragraph, or None.

    Returns:
      The page as one string.
    """
    notes = notes or {}
    lines = [f"usage: {program} [--flag=value ...]", "", summary.strip(), ""]
    for title, names in groups:
        names = [n for n in names if n in flag_values]
        if not names:
            continue
        lines.append(f"{title}:")
        lines += [_flag_line(flag_values[n], notes.get(n)) for n in names]
        lines.append("")
    if footer:
        lines += [footer.strip(), ""]
    return "\n".join(lines)


def own_flags(flag_values, modules):
    """The names of flags that ``modules`` (module names) defined in ``flag_values``,
    in definition order, for commands on absl's global registry (whose other flags are
    absl's and TensorFlow's own)."""
    by_module = flag_values.flags_by_module_dict()
    names = []
    for module in modules:
        for flag in by_module.get(module, []):
            if flag.name not in names:
                names.append(flag.name)
    return names


def summary_of(doc):
    """A module docstring as a help summary (reST double backquotes dropped)."""
    return (doc or "").replace("``", "").strip()


def run_command(main, argv, flag_values, help_fn, verbose_flag=None):
    """Runs a command under the one CLI policy.

    Args:
      main: ``main(argv) -> exit status``, called with the flags parsed.
      argv: the command line, program name first.
      flag_values: the command's registry (parsed here, from defaults).
      help_fn: ``help_fn(full: bool) -> str``, the ``--help`` page.
      verbose_flag: what ``guarded`` reads for tracebacks (default: the global flags).

    Returns:
      The exit status: 0 for help, 2 for a bad command line, else ``main``'s.
    """
    if help_requested(argv):
        print(help_fn("--helpfull" in argv[1:]))
        return 0

    def parse_and_run(argv):
        parse_flags(flag_values, argv)
        return main(argv)

    return guarded(parse_and_run, verbose_flag)(argv)


def command_line(program, argv):
    """``program`` and ``argv[1:]`` as one shell-quoted line (for "resume with: ...")."""
    return " ".join([program] + [shlex.quote(a) for a in argv[1:]])


def run_main(main, doc, program=None, argv=None):
    """``sys.exit`` with ``main``'s status, for commands on absl's global registry
    (the benchmarks): ``--help`` lists the flags their own module defined.

    Args:
      main: ``main(argv) -> exit status``.
      doc: the command's module docstring (the help's summary: its first paragraph).
      program: how the user runs it (default: ``python -m <package>.<module>`` from
        ``sys.argv[0]``).
      argv: the command line (default ``sys.argv``).
    """
    argv = list(sys.argv if argv is None else argv)
    if program is None:
        path = os.path.abspath(argv[0])
        program = "python -m {}.{}".format(os.path.basename(os.path.dirname(path)),
                                           os.path.splitext(os.path.basename(path))[0])

    def help_fn(full):
        own = [n for n in own_flags(flags.FLAGS, [argv[0], sys.argv[0], "__main__"])
               if n not in ("verbose", "verbose_errors")]
        summary = summary_of(doc).split("\n\n")[0]
        return help_text(program, summary, [("flags", own),
                                            ("messages", ["verbose", "verbose_errors"])],
                         flags.FLAGS)

    sys.exit(run_command(main, argv, flags.FLAGS, help_fn))
