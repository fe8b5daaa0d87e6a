"""Measurements: ``python -m benchmarks.<name>`` (see benchmarks/README.md)."""

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # python -m benchmarks.<name>: no TensorFlow banners
    from tf_st.cli import quiet_startup as _quiet_startup
    _quiet_startup(_sys.argv[1:])
