"""Dispatch of ``python -m tf_st.analysis <name>``: each subcommand gets its own flag
registry (the shared flags of ``common.define_shared`` plus its own), parsed from the
arguments after its name; errors follow ``tf_st.cli`` (one ``error:`` line, exit 2)."""

import importlib
import sys

from absl import flags

from tf_st import cli
from tf_st.analysis import SUBCOMMANDS, common


def usage():
    return ("usage: python -m tf_st.analysis <name> [--flags]  (name: "
            + ", ".join(SUBCOMMANDS) + "; <name> --help lists its flags)")


def main(argv):
    """``argv``: program name, subcommand, flags.  Returns the exit status."""
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage(), file=sys.stderr if len(argv) < 2 else sys.stdout)
        return 2 if len(argv) < 2 else 0
    name = argv[1]
    if name not in SUBCOMMANDS:
        print(f"error: unknown analysis {name!r}; {usage()}", file=sys.stderr)
        return 2
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")  # one trace per setting is by design, not a warning
    module = importlib.import_module(f"tf_st.analysis.{name}")
    fv = flags.FlagValues()
    common.define_shared(fv)
    module.define_flags(fv)
    shared = flags.FlagValues()
    common.define_shared(shared)
    own = [n for n in fv if n not in shared]
    program = ("tf-st analysis" if argv[0] == "tf-st" else "python -m tf_st.analysis") + f" {name}"

    def help_page(full):
        units = {n: cli.UNIT_NOTE for n in fv
                 if isinstance(fv[n].parser, (cli.FractionFloatParser, cli.FractionListParser))}
        return cli.help_text(program, "\n\n".join(cli.summary_of(module.__doc__).split("\n\n")[:2]),
                             [(f"{name}", own), ("models, data and output",
                                                 [n for n in shared if "verbose" not in n]),
                              ("messages", ["verbose", "verbose_errors"])], fv, units)

    def run(run_argv):
        try:
            module.run(fv)
        except KeyboardInterrupt:
            # The sweep keeps every finished run (and resumes an unfinished one); the
            # figures are written at the end, so rerunning recomputes them.
            raise KeyboardInterrupt(
                f"what finished is in {fv['output_dir'].value}; run again with: "
                f"{cli.command_line(program, run_argv)}") from None
        print(f"outputs in {fv['output_dir'].value}")
        return 0
    return cli.run_command(run, [f"{argv[0]} {name}"] + list(argv[2:]), fv, help_page,
                           cli._Verbosity(fv))
