"""SavedModel export/load: ``tf_st.saved_model`` (export and loading in one library
module, which the run layer uses); re-exported here for the ``export`` package."""

from tf_st.saved_model import (MODEL_CARD, LoadedClassifier, export_classifier,  # noqa: F401
                               load, versions)
