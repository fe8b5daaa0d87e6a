"""SavedModel export of classifiers and loading of any image-to-logits SavedModel."""

import os as _os

# Entry points of the project: keep TensorFlow's C++ start-up chatter off the console
# unless the user asked for it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from export.saved_model import LoadedClassifier, export_classifier, load

__all__ = ["LoadedClassifier", "export_classifier", "load"]
