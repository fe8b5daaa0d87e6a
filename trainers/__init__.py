"""Thin CLIs: ``python -m trainers.train --method=<key>`` and its aliases
``python -m trainers.<key>``; the run layer they call is ``tf_st.experiment``."""

import sys as _sys

from tf_st.cli import deterministic_requested as _deterministic_requested  # noqa: F401
from tf_st.cli import quiet_startup as _quiet_startup

# Before any trainer imports TensorFlow: --deterministic (also through --flagfile) needs
# oneDNN off at import, and TensorFlow's start-up banners stay off the console.
if _sys.argv[:1] == ["-m"]:  # python -m trainers.<name> is starting
    _quiet_startup(_sys.argv[1:])
