"""Inference-mode BatchNorm folded into the convolution before it.

In inference mode a BatchNorm is the per-channel affine map ``z * a + c`` with
``a = gamma / sqrt(moving_variance + eps)`` and ``c = beta - moving_mean * a``; after a
convolution ``z = conv(x, W)`` that is ``conv(x, W * a) + c``, the same function of ``x``
and of every weight (gradients included) up to floating-point rounding.  The attacks of
TRADES, MART, Madry and FAT run ten or more inference-mode forwards and input backwards
per step: folded, each BatchNorm costs no elementwise pass of its own, forward or
backward, and the bias and the following ReLU fuse into the convolution (TensorFlow's
remapper).  On this project's 2-core CPU that was not faster (``benchmarks/RESULTS.md``),
so methods use it only when built with ``fold_batchnorm=True``.

Only conv -> BN pairs fold (ResNet-18, the small CNN); a BN after a ReLU (pre-activation
ResNet, WideResNet) is left as it is.  The weights are read on every call, so the folded
function follows training.

Private Keras internals used (Keras has no public way to re-run a functional graph with
some layers replaced); each is pinned by tests/test_keras_internals.py:
``keras.src.models.functional.Functional`` (the class of functional models),
``Functional._nodes_by_depth`` (the graph's nodes, to find conv -> BN pairs),
``Functional._run_through_graph(x, operation_fn=...)`` (the graph walk ``Functional.call``
itself uses, with each layer's call replaced) and ``Layer._call_context_args`` (which
layers take ``training``).
"""

import keras
import tensorflow as tf
from keras.src.models.functional import Functional

from tf_st.models.layers import TorchBatchNorm


def _foldable_conv(layer):
    return (type(layer) is keras.layers.Conv2D and layer.data_format == "channels_last"
            and layer.groups == 1 and layer.activation is keras.activations.linear)


def conv_bn_pairs(model):
    """Finds the conv -> BN pairs of ``model`` that can be folded.

    A pair is a Conv2D (channels-last, ungrouped, linear activation) whose only consumer is a
    TorchBatchNorm over channels, both called once in ``model``'s graph.

    Args:
      model: a functional Keras model.

    Returns:
      ``{conv layer name: TorchBatchNorm layer}``.
    """
    consumers = {}
    calls = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if node.operation is None or node.is_input:
                continue
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
            for t in node.input_tensors:
                consumers.setdefault(id(t), []).append(node)
    pairs = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            conv = node.operation
            if node.is_input or not _foldable_conv(conv) or calls[id(conv)] != 1:
                continue
            users = consumers.get(id(node.outputs[0]), [])
            if len(users) != 1:
                continue
            bn = users[0].operation
            if (isinstance(bn, TorchBatchNorm) and calls[id(bn)] == 1
                    and bn.axis % 4 == 3 and len(users[0].input_tensors) == 1):
                pairs[conv.name] = bn
    return pairs


def _bn_affine(bn, dtype):
    """``(a, c)`` of the inference-mode BN, computed as Keras' BatchNormalization does."""
    mean = tf.cast(bn.moving_mean, dtype)
    inv = tf.math.rsqrt(tf.cast(bn.moving_variance, dtype) + bn.epsilon)
    if bn.scale:
        inv = inv * tf.cast(bn.gamma, dtype)
    offset = tf.cast(bn.beta, dtype) if bn.center else tf.zeros_like(mean)
    return inv, offset - mean * inv


def _folded_conv(conv, bn):
    def call(x):
        # Fold in the variables' precision (float32 under a mixed policy), then compute in
        # the input's dtype, as Keras' layers cast their weights.
        dtype = conv.kernel.dtype
        a, c = _bn_affine(bn, dtype)
        kernel = tf.cast(conv.kernel, dtype) * a
        if conv.use_bias:
            c = c + tf.cast(conv.bias, dtype) * a
        y = tf.nn.conv2d(x, tf.cast(kernel, x.dtype), strides=conv.strides,
                         padding=conv.padding.upper(), dilations=conv.dilation_rate)
        return tf.nn.bias_add(y, tf.cast(c, x.dtype))
    return call


def fold_batchnorm(model):
    """The inference forward of ``model`` with every conv -> BN pair folded.

    Args:
      model: a functional (or Sequential) Keras model.

    Returns:
      A function ``x -> model(x, training=False)`` (NHWC images in, logits out) with every
      conv -> BN pair folded into one biased convolution; a model with no such pair gets
      ``model(x, training=False)`` itself.
    """
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    pairs = conv_bn_pairs(graph) if isinstance(graph, Functional) else {}
    if not pairs:
        return lambda x: model(x, training=False)
    folded_bns = {id(bn) for bn in pairs.values()}

    def operation_fn(op):
        if op.name in pairs:
            return _folded_conv(op, pairs[op.name])
        if id(op) in folded_bns:
            return lambda x, **_: x

        def call(*args, **kwargs):
            if "training" in getattr(op, "_call_context_args", {}):
                kwargs["training"] = False
            return op(*args, **kwargs)
        return call

    def forward(x):
        x = tf.cast(x, graph.inputs[0].dtype)
        # Private: the walk Functional.call makes, with our per-layer calls (see above).
        return graph._run_through_graph(x, operation_fn=operation_fn)

    return forward
