"""Thin CLIs: ``python -m trainers.train --method=<key>`` and its aliases
``python -m trainers.<key>``; the shared runner is ``trainers.runner``."""

import os as _os

# Entry points of the project: keep TensorFlow's C++ start-up chatter off the console
# unless the user asked for it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
