"""Thin CLIs: ``python -m trainers.train --method=<key>`` and its aliases
``python -m trainers.<key>``; the run layer they call is ``tf_st.experiment``."""

import sys as _sys

from tf_st.cli import deterministic_requested as _deterministic_requested  # noqa: F401
from tf_st.cli import prepare_environment as _prepare_environment

# Before any trainer imports TensorFlow: --deterministic (also through --flagfile) needs
# oneDNN off at import.
_prepare_environment(_sys.argv[1:])
