"""The private Keras internals tf_st still relies on, each checked on its own so that a
Keras upgrade that drops or changes one fails here with a message naming it, rather
than somewhere deep in a method's step.

* ``TensorFlowTrainer._maybe_symbolic_build(iterator=, data_batch=)``: overridden by
  ``tf_st.methods.base.AdversarialMethod`` (multi-worker metric building);
* ``Layer._flatten_layers(include_self=, recursive=)``: ``tf_st.models.layers.all_layers``
  (the recursive layer walk behind ``set_batchnorm`` and ``neighbours``);
* ``Layer._register_call_context_args`` and ``Functional.call`` handing registered call
  keywords to its layers: ``TorchBatchNorm``'s ``batch_groups=`` (grouped forwards);
* ``Functional``, ``Functional._nodes_by_depth``, ``Functional._run_through_graph(x,
  operation_fn=)`` and ``Layer._call_context_args``: ``tf_st.models.folding``.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf


def _need(obj, attribute, user):
    if not hasattr(obj, attribute):
        pytest.fail(f"Keras {keras.__version__} no longer has {getattr(obj, '__name__', obj)}."
                    f"{attribute}, which {user} relies on")
    return getattr(obj, attribute)


def _model():
    inp = keras.Input((4, 4, 2))
    from tf_st.models.layers import TorchBatchNorm
    h = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")(inp)
    h = TorchBatchNorm(name="bn")(h)
    out = keras.layers.Dense(2, name="fc")(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inp, out)


def test_maybe_symbolic_build_keeps_its_keywords():
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    fn = _need(TensorFlowTrainer, "_maybe_symbolic_build",
               "tf_st.methods.base.AdversarialMethod")
    params = inspect.signature(fn).parameters
    assert {"iterator", "data_batch"} <= set(params), (
        f"Keras {keras.__version__} changed TensorFlowTrainer._maybe_symbolic_build"
        f"{inspect.signature(fn)}; AdversarialMethod._maybe_symbolic_build overrides it "
        "with (iterator, data_batch)")
    for method in ("fit", "evaluate"):
        assert "_maybe_symbolic_build(iterator=" in inspect.getsource(
            getattr(TensorFlowTrainer, method)), (
            f"Keras {keras.__version__}'s TensorFlowTrainer.{method} no longer calls "
            "_maybe_symbolic_build(iterator=...); AdversarialMethod's override (the first "
            "local replica's batch under a strategy) would silently stop applying")


def test_flatten_layers_walks_nested_models():
    from tf_st.models.layers import all_layers
    _need(keras.layers.Layer, "_flatten_layers", "tf_st.models.layers.all_layers")
    inner = _model()
    inp = keras.Input((4, 4, 2))
    outer = keras.Model(inp, keras.layers.ReLU(name="relu")(inner(inp)))
    names = {layer.name for layer in all_layers(outer)}
    assert {"conv", "bn", "fc", "relu"} <= names, (
        f"Layer._flatten_layers(recursive=True) no longer reaches nested layers: {names}")
    assert outer.name not in names


def test_functional_model_hands_batch_groups_to_torch_batchnorm():
    from tf_st.models.layers import TorchBatchNorm, batch_groups
    _need(keras.layers.Layer, "_register_call_context_args", "TorchBatchNorm (batch_groups=)")
    model = _model()
    bn = model.get_layer("bn")
    assert "batch_groups" in bn._call_context_args
    seen = []
    original = TorchBatchNorm.call

    def spy(self, inputs, training=None, mask=None, batch_groups=None):
        seen.append(batch_groups)
        return original(self, inputs, training=training, mask=mask, batch_groups=batch_groups)

    x = tf.constant(np.random.RandomState(0).uniform(0, 1, (4, 4, 4, 2)), tf.float32)
    spec = batch_groups(2, (1,))
    try:
        TorchBatchNorm.call = spy
        model(x, training=True, batch_groups=spec)
        model.stateless_call([v.value for v in model.trainable_variables],
                             [v.value for v in model.non_trainable_variables], x,
                             training=True, batch_groups=spec)
        model(x, training=True)
    finally:
        TorchBatchNorm.call = original
    assert seen == [spec, spec, None], (
        f"Keras {keras.__version__}'s Functional.call no longer passes a registered call-context "
        f"keyword to its layers (saw {seen}); grouped forwards would silently normalise the "
        "whole batch at once")


def test_nested_batchnorm_is_refused_for_grouped_forwards():
    from tf_st.models.layers import check_batch_groups_reach
    check_batch_groups_reach(_model())
    inner = _model()
    inp = keras.Input((4, 4, 2))
    outer = keras.Model(inp, inner(inp))
    with pytest.raises(ValueError, match="nested model"):
        check_batch_groups_reach(outer)


def test_functional_graph_internals_used_by_folding():
    from keras.src.models.functional import Functional

    from tf_st.models.folding import conv_bn_pairs
    model = _model()
    assert isinstance(model, Functional)
    _need(Functional, "_run_through_graph", "tf_st.models.folding")
    assert "operation_fn" in inspect.signature(Functional._run_through_graph).parameters
    assert isinstance(_need(model, "_nodes_by_depth", "tf_st.models.folding"), dict)
    assert "training" in _need(model.get_layer("bn"), "_call_context_args",
                               "tf_st.models.folding")
    assert set(conv_bn_pairs(model)) == {"conv"}
    x = tf.constant(np.random.RandomState(0).uniform(0, 1, (2, 4, 4, 2)), tf.float32)
    identity = model._run_through_graph(x, operation_fn=lambda op: op)
    np.testing.assert_allclose(np.asarray(identity), model(x, training=False).numpy(),
                               atol=1e-6)
