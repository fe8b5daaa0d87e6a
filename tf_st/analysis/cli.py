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
    if any(a in ("-h", "--help", "--helpfull") for a in argv[2:]):
        print(fv.get_help())
        return 0

    def run(_):
        cli.parse_flags(fv, [f"{argv[0]} {name}"] + list(argv[2:]))
        module.run(fv)
        return 0
    return cli.guarded(run, fv["verbose_errors"])(argv)
