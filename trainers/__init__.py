"""Thin CLIs: ``python -m trainers.train --method=<key>`` and its aliases
``python -m trainers.<key>``; the shared runner is ``trainers.runner``."""

import os as _os
import sys as _sys

# Entry points of the project: keep TensorFlow's C++ start-up chatter off the console
# unless the user asked for it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# --deterministic needs oneDNN's reordered float kernels off, which TensorFlow reads once at
# import: decide it here, before any trainer imports TensorFlow (the trainer's flags are
# defined later).  absl expands --flagfile=... (a run's flags.txt) the way the parser
# will, and the last of --deterministic / --nodeterministic wins, as in the parser.


def _deterministic_requested(argv):
    from absl import flags as _flags
    try:
        args = _flags.FlagValues().read_flags_from_files(argv, force_gnu=False)
    except Exception:  # noqa: BLE001 - a bad flagfile is reported by the real parser
        args = argv
    wanted = False
    for a in args:
        if a in ("--deterministic", "--deterministic=true", "--deterministic=True",
                 "--deterministic=1"):
            wanted = True
        elif a in ("--nodeterministic", "--deterministic=false", "--deterministic=False",
                   "--deterministic=0"):
            wanted = False
    return wanted


if _deterministic_requested(_sys.argv[1:]):
    _os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
