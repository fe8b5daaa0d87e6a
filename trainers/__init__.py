"""Thin CLIs: ``python -m trainers.train --method=<key>`` and its aliases
``python -m trainers.<key>``; the shared runner is ``trainers.runner``."""

import os as _os
import sys as _sys

# Entry points of the project: keep TensorFlow's C++ start-up chatter off the console
# unless the user asked for it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# --deterministic needs oneDNN's reordered float kernels off, which TensorFlow reads once at
# import: decide it here, before any trainer imports TensorFlow (flags are parsed later).
if any(a in ("--deterministic", "--deterministic=true", "--deterministic=True")
       for a in _sys.argv[1:]):
    _os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
