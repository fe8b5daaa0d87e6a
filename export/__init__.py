"""SavedModel export of classifiers and loading of any image-to-logits SavedModel."""

from export.saved_model import LoadedClassifier, export_classifier, load

__all__ = ["LoadedClassifier", "export_classifier", "load"]
