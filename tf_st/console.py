"""The console script ``tf-st``: one command for the three CLIs.

    tf-st train --method=st --dataset=cifar10_mini     (= python -m trainers.train)
    tf-st evaluate --saved_model=runs/.../export ...   (= python -m tf_st.evaluation)
    tf-st analysis <name> [flags]                      (= python -m tf_st.analysis)

Each subcommand takes exactly the flags of the module it names; ``tf-st <cmd> --help``
lists them.
"""

import sys

from tf_st.cli import quiet_startup

COMMANDS = {
    "train": "train a method, export the best model and evaluate it (tf_st.experiment)",
    "evaluate": "evaluate a SavedModel under attack (tf_st.evaluation)",
    "analysis": "the papers' diagnostics and figures (tf_st.analysis)",
}


def usage():
    return "usage: tf-st <command> [flags]\n" + "\n".join(
        f"  {name:9s} {text}" for name, text in COMMANDS.items())


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage(), file=sys.stderr if len(argv) < 2 else sys.stdout)
        return 2 if len(argv) < 2 else 0
    command, rest = argv[1], argv[2:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n{usage()}", file=sys.stderr)
        return 2
    quiet_startup(rest)
    program = f"tf-st {command}"
    if command == "train":
        from tf_st.experiment.cli import cli_main
        return cli_main([program] + rest, program=program)
    if command == "evaluate":
        from tf_st.evaluation.cli import main as evaluate
        return evaluate([program] + rest, program=program)
    from tf_st.analysis.cli import main as analysis
    return analysis(["tf-st"] + rest)


if __name__ == "__main__":
    sys.exit(main())
