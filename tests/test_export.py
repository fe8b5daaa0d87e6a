"""SavedModel export: signature, layout, model card, atomicity, and equivalence of the
reloaded model's logits and input gradients with the in-memory classifier."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from export.saved_model import export_classifier, load
from tf_st.models.layers import TorchBatchNorm


def bn_classifier():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, padding="same")(inp)
    h = TorchBatchNorm()(h)
    h = keras.layers.ReLU()(h)
    out = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    bn = model.layers[2]
    rng = np.random.RandomState(0)
    bn.set_weights([rng.uniform(0.5, 1.5, 6), rng.randn(6), rng.randn(6), rng.uniform(0.5, 2, 6)])
    return model


def test_reloaded_savedmodel_matches_logits_and_input_gradients(tmp_path):
    model = bn_classifier()
    path = export_classifier(model, str(tmp_path / "exp"), model_card={"arch": "tiny"})
    assert path == str(tmp_path / "exp" / "1")
    assert sorted(os.listdir(tmp_path / "exp")) == ["1"]  # no temp dirs left behind
    loaded = load(str(tmp_path / "exp"))
    assert loaded.input_name == "image" and loaded.output_name == "logits"
    assert loaded.model_card == {"arch": "tiny"}
    x = tf.constant(np.random.RandomState(1).uniform(0, 1, (4, 8, 8, 3)).astype("float32"))
    np.testing.assert_allclose(loaded(x).numpy(), model(x, training=False).numpy(), atol=1e-5)
    y = tf.constant([0, 1, 2, 3])
    grads = []
    for fn in (loaded, lambda t: model(t, training=False)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, fn(x)))
        grads.append(tape.gradient(loss, x).numpy())
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-5)
    assert np.abs(grads[0]).max() > 0
    sig = tf.saved_model.load(path).signatures["serving_default"]
    out = sig(image=x)
    assert set(out) == {"logits", "probabilities"}
    np.testing.assert_allclose(out["probabilities"].numpy().sum(1), 1.0, rtol=1e-5)


def test_versions_increment_and_overwrite_is_explicit(tmp_path):
    model = bn_classifier()
    d = str(tmp_path / "exp")
    export_classifier(model, d)
    export_classifier(model, d)
    assert sorted(os.listdir(d)) == ["1", "2"]
    with pytest.raises(FileExistsError):
        export_classifier(model, d, version=1)
    card = {"clean_acc": 0.5}
    export_classifier(model, d, version=1, overwrite=True, model_card=card)
    with open(os.path.join(d, "1", "model_card.json")) as f:
        assert json.load(f) == card
    assert load(d).path.endswith("2")  # highest version, as TF Serving


def test_load_rejects_non_image_signatures(tmp_path):
    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, 10), tf.float32, name="features")])
        def serve(self, features):
            return {"logits": features * 2.0}

    m = Module()
    tf.saved_model.save(m, str(tmp_path / "vec"), signatures={"serving_default": m.serve})
    with pytest.raises(ValueError, match="4-D float"):
        load(str(tmp_path / "vec"))
    with pytest.raises(FileNotFoundError):
        load(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no signature"):
        load(str(tmp_path / "vec"), signature="other")


def test_foreign_savedmodel_with_single_output_is_accepted(tmp_path):
    class Module(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.ones((3, 2)))

        @tf.function(input_signature=[tf.TensorSpec((None, 4, 4, 3), tf.float32, name="x")])
        def serve(self, x):
            return {"output_0": tf.reduce_mean(x, axis=[1, 2]) @ self.w}

    m = Module()
    tf.saved_model.save(m, str(tmp_path / "foreign"), signatures={"serving_default": m.serve})
    loaded = load(str(tmp_path / "foreign"))
    assert loaded.output_name == "output_0" and loaded.image_shape == (4, 4, 3)
    assert loaded(np.ones((2, 4, 4, 3), "float32")).shape == (2, 2)
