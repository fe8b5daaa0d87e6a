"""SavedModel export/load.

Export layout (TF Serving): ``<export_dir>/<version>/{saved_model.pb, variables/,
model_card.json}``.  The ``serving_default`` signature takes ``image`` (float32 NHWC in
[0, 1]) and returns ``logits`` and ``probabilities``.  Only the classifier is exported
(inference-mode BatchNorm), never the training wrapper.  The version directory is
written under a temporary name and renamed into place, so a crash never leaves a
half-written version that TF Serving or ``load`` would pick up.
"""

import os

import keras
import tensorflow as tf

# Loading lives with evaluation (the library does not import upward); re-exported here.
from tf_st.evaluation.saved_model import (MODEL_CARD, LoadedClassifier, load,  # noqa: F401
                                          versions)
from tf_st.fileio import atomic_path, atomic_write_json, remove_stale_temporaries



def export_classifier(classifier, export_dir, *, version=None, model_card=None, overwrite=False):
    """Exports ``classifier`` (a Keras model mapping [0,1] NHWC images to logits).

    ``version`` defaults to one more than the highest existing version.  Returns the
    version directory."""
    os.makedirs(export_dir, exist_ok=True)
    if version is None:
        version = max(versions(export_dir), default=0) + 1
    final = os.path.join(export_dir, str(int(version)))
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(f"{final} exists; pass overwrite=True or another version")
    height, width, channels = classifier.input_shape[1:]
    compute_dtype = classifier.inputs[0].dtype if classifier.inputs else "float32"

    def serve(image):
        logits = tf.cast(classifier(tf.cast(image, compute_dtype), training=False), tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    archive = keras.export.ExportArchive()
    archive.track(classifier)
    archive.add_endpoint(
        "serve", serve,
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.float32, name="image")])
    # A kill during an earlier export leaves its temporary directory behind.
    remove_stale_temporaries(export_dir)
    with atomic_path(final, directory=True) as tmp:
        archive.write_out(tmp, verbose=False)
        if model_card is not None:
            atomic_write_json(os.path.join(tmp, MODEL_CARD), model_card)
    return final
