"""SavedModel export of classifiers and loading of any image-to-logits SavedModel.

Export layout (TF Serving): ``<export_dir>/<version>/{saved_model.pb, variables/,
fingerprint.pb, model.keras, model_card.json}``.  The ``serving_default`` signature takes
``image`` (float32 NHWC in [0, 1]) and returns ``logits`` and ``probabilities``.  Only the
classifier is exported (inference-mode BatchNorm), never the training wrapper.  The
version directory is written under a temporary name and renamed into place, so a crash
never leaves a half-written version that TF Serving or ``load`` would pick up.

``model.keras`` (``KERAS_FILE``) is the same classifier in Keras' own format, inside the
version directory so that it appears atomically with the SavedModel (TF Serving reads
only ``saved_model.pb``, ``variables/`` and ``assets*/`` of a version and ignores other
files): Keras 3 loads no SavedModel, and ``keras.models.load_model(
"<export_dir>/<version>/model.keras")`` gives back a ``keras.Model`` (to fine-tune,
inspect or re-export) whose logits are the SavedModel's.  tf_st's architectures use one
custom layer (``tf_st.models.layers.TorchBatchNorm``, registered serializable as
``tf_st>TorchBatchNorm``); Keras finds it once ``tf_st.models`` has been imported.

Loading accepts not only tf_st's exports: any SavedModel whose ``serving_default`` (or
named) signature takes one 4-D float NHWC batch and returns ``logits`` (or a single
output) becomes a logits function (evaluation's input); so does a ``.keras`` file
(``KerasClassifier``: the model called with ``training=False``).  Both live in this
bottom-level module so that the run layer (export), evaluation (load) and the ``export``
package share one implementation.
"""

import json
import os

import keras
import tensorflow as tf

from tf_st import provenance
from tf_st.fileio import atomic_path, atomic_write_json, remove_stale_temporaries

MODEL_CARD = "model_card.json"
KERAS_FILE = "model.keras"  # inside the version directory, beside saved_model.pb


def versions(export_dir):
    return [int(d) for d in os.listdir(export_dir)
            if d.isdigit() and os.path.isdir(os.path.join(export_dir, d))]


class LoadedClassifier:
    """A loaded SavedModel as a logits function: ``clf(x) -> logits`` (float32).

    Accepts any SavedModel whose ``serving_default`` (or ``signature``) signature has
    one 4-D float input and either an output named ``logits`` or a single output."""

    def __init__(self, path, signature="serving_default"):
        self.path = _resolve_version(path)
        try:
            self._module = tf.saved_model.load(self.path)
        except Exception as e:  # noqa: BLE001 - protobuf, OpError, OSError: all one answer
            reason = (getattr(e, "message", None) or str(e)).strip().splitlines()
            raise ValueError(f"cannot load the SavedModel at {self.path} "
                             f"({type(e).__name__}: {reason[0] if reason else 'no detail'}); "
                             "is it a complete export?") from e
        sigs = getattr(self._module, "signatures", {})
        if signature not in sigs:
            raise ValueError(f"SavedModel at {self.path} has no signature {signature!r} "
                             f"(has: {sorted(sigs)})")
        self._fn = sigs[signature]
        args, kwargs = self._fn.structured_input_signature
        inputs = list(kwargs.items())
        if args or len(inputs) != 1:
            raise ValueError(f"signature {signature!r} must take exactly one named input, "
                             f"got args={args} kwargs={sorted(kwargs)}")
        self.input_name, spec = inputs[0]
        if spec.shape.rank != 4 or not spec.dtype.is_floating:
            raise ValueError(f"signature input {self.input_name!r} must be a 4-D float "
                             f"NHWC image batch, got {spec}")
        self.input_spec = spec
        outputs = self._fn.structured_outputs
        if "logits" in outputs:
            self.output_name = "logits"
        elif len(outputs) == 1:
            self.output_name = next(iter(outputs))
        else:
            raise ValueError(f"signature {signature!r} has outputs {sorted(outputs)}; "
                             "expected one named 'logits' or a single output")
        self.model_card = _read_card(os.path.join(self.path, MODEL_CARD))

    @property
    def image_shape(self):
        return tuple(self.input_spec.shape[1:])

    def __call__(self, x):
        x = tf.cast(x, self.input_spec.dtype)
        return self._fn(**{self.input_name: x})[self.output_name]


def _read_card(card):
    """The model card at ``card`` (a dict), or None when there is none."""
    if not os.path.exists(card):
        return None
    try:
        with open(card) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"the model card {card} is unreadable ({e})") from None


class KerasClassifier:
    """A ``.keras`` file as a logits function: ``clf(x) -> logits`` (float32), the model
    called with ``training=False`` on ``x`` cast to its input dtype, as the SavedModel's
    ``serve`` endpoint calls it.  ``model``: the loaded ``keras.Model``; ``model_card``:
    the card of the directory holding the file (an export's version directory), if any."""

    def __init__(self, path):
        self.path = path
        try:
            self.model = keras.saving.load_model(path, compile=False)
        except Exception as e:  # noqa: BLE001 - zip, config and class errors: one answer
            reason = " ".join(str(e).split())[:300] or "no detail"
            hint = ("; a custom class must be registered (keras.saving."
                    "register_keras_serializable) and imported first: for tf_st's "
                    "layers, import tf_st.models" if "Could not locate" in str(e) else "")
            raise ValueError(f"cannot load the Keras file {path} ({type(e).__name__}: "
                             f"{reason}){hint}") from e
        if not isinstance(self.model, keras.Model):
            raise ValueError(f"{path} holds a {type(self.model).__name__}, not a keras.Model")
        self.model_card = _read_card(os.path.join(os.path.dirname(os.path.abspath(path)),
                                                  MODEL_CARD))

    @property
    def image_shape(self):
        return tuple(self.model.input_shape[1:])

    def __call__(self, x):
        dtype = self.model.inputs[0].dtype if self.model.inputs else "float32"
        return tf.cast(self.model(tf.cast(x, dtype), training=False), tf.float32)


def _resolve_version(path):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no SavedModel directory at {path}")
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    found = versions(path)
    if not found:
        raise FileNotFoundError(f"{path} holds neither saved_model.pb nor numbered versions")
    return os.path.join(path, str(max(found)))


def load(path, signature="serving_default"):
    """A logits function of the model at ``path``: a ``.keras`` file
    (``KerasClassifier``), else a SavedModel directory or an export directory of numbered
    versions, the highest taken (``LoadedClassifier``).  Raises ``FileNotFoundError``
    when ``path`` is neither, ``ValueError`` when it does not load as an image
    classifier."""
    path = os.fspath(path)
    if path.endswith(".keras") and not os.path.isdir(path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no Keras file at {path}")
        return KerasClassifier(path)
    return LoadedClassifier(path, signature)


def float32_copy(classifier):
    """``classifier`` computing in float32: itself, or a float32 clone with its weights.

    A network trained under a mixed-precision policy (``mixed_float16``,
    ``mixed_bfloat16``) keeps float32 variables but computes in 16 bits, and its layers
    (and its saved Keras config) carry that policy.  The clone is the same functional
    graph with every layer's policy set to ``float32`` and the trained (float32) weights
    copied in, so that an export computes what the weights define, exactly.

    Args:
      classifier: a functional or ``Sequential`` Keras model.

    Returns:
      ``classifier`` when every layer already computes in its variables' dtype (float32
      or float64), else the float32 clone (a new model of the same name, weights and
      layer names).

    Raises:
      ValueError: a mixed-precision model Keras cannot clone (a subclassed model).
    """
    if not any(_is_mixed(layer) for layer in _walk(classifier)):
        return classifier

    def as_float32(layer):
        if isinstance(layer, keras.Model):
            return float32_copy(layer)
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    # The clone's own policy (the functional wrapper's) is the global one: float32 for
    # the copy even while a mixed global policy is still set (the run layer exports right
    # after training).
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        clone = keras.models.clone_model(classifier, clone_function=as_float32)
    except Exception as e:  # noqa: BLE001 - clone_model's refusals vary by model kind
        raise ValueError(f"cannot make a float32 copy of the mixed-precision "
                         f"{type(classifier).__name__} {classifier.name!r} for export "
                         f"({type(e).__name__}: {e})") from e
    finally:
        keras.config.set_dtype_policy(policy)
    clone.set_weights(classifier.get_weights())
    return clone


def _walk(model):
    """``model`` and its layers, nested models' layers included."""
    yield model
    for layer in getattr(model, "layers", ()):
        yield from _walk(layer)


def _is_mixed(layer):
    policy = getattr(layer, "dtype_policy", None)
    return policy is not None and policy.compute_dtype in ("float16", "bfloat16")


def export_classifier(classifier, export_dir, *, version=None, model_card=None, overwrite=False,
                      keras_file=True):
    """Exports ``classifier`` (a Keras model mapping [0,1] NHWC images to logits).

    ``version`` defaults to one more than the highest existing version.  Returns the
    version directory.

    Whatever the training precision, what is exported computes in float32: a
    mixed-precision classifier is exported as its ``float32_copy`` (float32 variables,
    float32 layers; the signature takes and returns float32), so evaluation of the
    export is exact; the SavedModel and ``model.keras`` both hold the copy.

    ``keras_file``: also write the classifier as ``<version>/model.keras``
    (``KERAS_FILE``, for ``keras.models.load_model``); a model Keras cannot serialize
    (a subclassed model without ``get_config``) is refused with the reason, before
    anything is written, unless ``keras_file=False``.

    ``model_card`` is written as ``model_card.json`` as given, except that a card with a
    ``provenance`` block (the run layer's always has one) gets it completed:
    ``tf_st.provenance.environment()`` (versions, time, command line), then what the
    block holds (the run's seeds, data, ...), ``saved_model`` (the version directory) and
    ``fingerprint`` (of the SavedModel as written); such a card also lists the Keras
    file (``"keras_file": "model.keras"``, relative to the version directory, or None
    without one).  ``model_card`` itself is not modified."""
    os.makedirs(export_dir, exist_ok=True)
    if version is None:
        version = max(versions(export_dir), default=0) + 1
    final = os.path.join(export_dir, str(int(version)))
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(f"{final} exists; pass overwrite=True or another version")
    classifier = float32_copy(classifier)
    height, width, channels = classifier.input_shape[1:]
    compute_dtype = classifier.inputs[0].dtype if classifier.inputs else "float32"

    def serve(image):
        logits = tf.cast(classifier(tf.cast(image, compute_dtype), training=False), tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    if keras_file:
        _check_serializable(classifier)
    archive = keras.export.ExportArchive()
    archive.track(classifier)
    archive.add_endpoint(
        "serve", serve,
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.float32, name="image")])
    # A kill during an earlier export leaves its temporary directory behind.
    remove_stale_temporaries(export_dir)
    with atomic_path(final, directory=True) as tmp:
        try:
            archive.write_out(tmp, verbose=False)
        except tf.errors.ResourceExhaustedError as e:  # a full disk, from TF's writer
            raise OSError(28, f"cannot write the SavedModel {final}: no space left on the "
                          f"device ({(e.message or '').strip()[:200]})") from None
        if keras_file:
            classifier.save(os.path.join(tmp, KERAS_FILE))
        if model_card is not None:
            card = dict(model_card)
            if isinstance(card.get("provenance"), dict):
                card["keras_file"] = KERAS_FILE if keras_file else None
                card["provenance"] = {**provenance.environment(),
                                      **card["provenance"],
                                      "saved_model": os.path.abspath(final),
                                      "fingerprint": provenance.saved_model_fingerprint(tmp)}
            atomic_write_json(os.path.join(tmp, MODEL_CARD), card)
    return final


def _check_serializable(classifier):
    """Refuses a classifier that ``.keras`` saving would fail on (or write unloadable)."""
    try:
        keras.saving.serialize_keras_object(classifier)
        config = classifier.get_config()
    except Exception as e:  # noqa: BLE001 - NotImplementedError, TypeError, ...
        reason = " ".join(str(e).split())[:200]
        raise ValueError(f"cannot write {KERAS_FILE} for {type(classifier).__name__}: Keras "
                         f"cannot serialize it ({type(e).__name__}: {reason}); give it a "
                         "get_config or pass keras_file=False") from e
    if config is None:
        raise ValueError(f"cannot write {KERAS_FILE} for {type(classifier).__name__}: its "
                         "get_config returns None; pass keras_file=False")
