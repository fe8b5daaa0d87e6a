"""Moved to ``tf_st.saved_model`` (export and loading in one module); kept for older
imports."""

from tf_st.saved_model import (MODEL_CARD, LoadedClassifier, export_classifier,  # noqa: F401
                               load, versions)
