"""SavedModel export of classifiers and loading of any image-to-logits SavedModel."""

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # python -m export.<command>: no TensorFlow banners
    from tf_st.cli import quiet_startup as _quiet_startup
    _quiet_startup(_sys.argv[1:])

from export.saved_model import LoadedClassifier, export_classifier, load

__all__ = ["LoadedClassifier", "export_classifier", "load"]
