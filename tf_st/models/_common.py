"""Building blocks shared by the architectures in :mod:`tf_st.models`.

Every helper takes the PyTorch parameter path of the layer it creates (``layer1.0.conv1``)
and uses it verbatim as the Keras layer name: Keras 3 accepts dots in layer names and the
weights file stores them unchanged, so the PyTorch → Keras mapping in
:mod:`tf_st.models.torch_import` is the identity on names.  Layers without parameters get
deterministic names too (``<path>_pad``, ``<block>.relu1``, ...) so that two builds of the
same architecture are name-for-name identical regardless of Keras' global name counters.
"""

import math

import keras
from keras import layers

from tf_st.models.layers import TorchBatchNorm

# The architecture registry: key -> builder(num_classes, input_shape, name).  Each model
# module registers its architectures where it defines them (``register_arch``);
# ``tf_st.models`` imports every model module, so a new architecture is one new module.
ARCHS = {}


def register_arch(key, builder=None):
    """Registers an architecture builder under ``key`` in :data:`ARCHS`.

    Usable directly (``register_arch("k", builder)``) or as a decorator
    (``@register_arch("k")``).  Registering the same function twice is a no-op.

    Args:
      key: architecture key, as passed to :func:`tf_st.models.build`.
      builder: ``builder(num_classes, input_shape, name, **options)`` returning a Keras model
        producing logits; None to get a decorator.

    Returns:
      ``builder`` itself when given, otherwise a decorator that registers and returns the
      function it decorates.

    Raises:
      ValueError: ``key`` is already registered to a different function.
    """
    def add(fn):
        if key in ARCHS and ARCHS[key] is not fn:
            raise ValueError(f"architecture {key!r} is already registered")
        ARCHS[key] = fn
        return fn
    return add if builder is None else add(builder)


def torch_default_kernel_init():
    """PyTorch's default Conv/Linear weight init: ``kaiming_uniform_(a=sqrt(5))``.

    That is U(-b, b) with ``b = gain*sqrt(3/fan_in)``, ``gain = sqrt(2/(1+5))``, i.e.
    ``b = 1/sqrt(fan_in)``; ``VarianceScaling(1/3, fan_in, uniform)`` has limit
    ``sqrt(3*(1/3)/fan_in)`` — the same distribution (Keras' fan_in for a HWIO kernel is
    ``k*k*in``, as in PyTorch).
    """
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in",
                                              distribution="uniform")


def torch_default_bias_init(fan_in):
    """PyTorch's default Linear/Conv bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def logits_dtype():
    """dtype for the final Dense layer.

    Under a mixed policy (``mixed_float16``/``mixed_bfloat16``) the logits are computed in
    float32 so that softmax/KL/CE losses stay accurate.  Otherwise ``None`` = follow the
    global policy, so a ``float64`` floatx yields float64 logits (nothing is hard-coded).
    """
    policy = keras.config.dtype_policy()
    if policy.compute_dtype != policy.variable_dtype:
        return "float32"
    return None


def stem_dtype():
    """dtype for the first convolution, the one that reads the images.

    Under a mixed policy it computes in float32, so that the images are not rounded to
    16 bits: bfloat16 keeps 8 significant bits, so above 0.5 its spacing (1/256) exceeds
    the pixel grid's 1/255, and a perturbation of 0.001 (TRADES' ``0.001 N(0, 1)``
    attack start) rounds away for three in four such pixels.  In the precision study,
    TRADES trained with a bfloat16 stem ended 1.4-1.9x rougher (TRADES' KL at its inner
    maximum) with lower accuracies under attack; with a float32 stem it matched float32
    (``benchmarks/RESULTS.md``).  The stem is one of ResNet-18's 20
    convolutions and about 0.3% of its FLOPs.  Otherwise ``None`` (follow the policy;
    float32 and float64 builds are unchanged).
    """
    return logits_dtype()


def conv3x3(x, filters, stride, name, kernel_initializer, pad_at_stride_1=False, dtype=None):
    """PyTorch ``Conv2d(k=3, stride, padding=1, bias=False)``.

    Stride 2: explicit symmetric ``ZeroPadding2D(1)`` + ``'valid'``: Keras ``'same'`` at
    stride 2 on an even input pads (0, 1) instead of (1, 1), which shifts the sampling
    grid by one pixel and breaks parity with PyTorch
    (docs/reference-implementations.md "PyTorch to Keras parity / Padding").
    Stride 1: ``'same'``, which pads (1, 1) there -- the same numbers, and the input
    gradient comes out of the convolution's backward at the input's size (through a pad
    layer it is computed on the padded size, then sliced: a copy of every activation
    gradient).  The weights and their names do not depend on the choice.

    ``pad_at_stride_1=True`` gives stride-1 convs their own ZeroPadding2D layer too (the
    construction before they took 'same'; ``models.build(..., pad_at_stride_1=True)``,
    ``benchmarks.vs_reference --ablate=pad_layers=true``).

    ``dtype``: the layers' dtype policy (``stem_dtype()`` for the stem), or None to
    follow the global policy.
    """
    if stride == 1 and not pad_at_stride_1:
        return layers.Conv2D(filters, 3, padding="same", use_bias=False,
                             kernel_initializer=kernel_initializer, name=name, dtype=dtype)(x)
    x = layers.ZeroPadding2D(padding=1, name=f"{name}_pad", dtype=dtype)(x)
    return layers.Conv2D(filters, 3, strides=stride, padding="valid", use_bias=False,
                         kernel_initializer=kernel_initializer, name=name, dtype=dtype)(x)


def conv1x1(x, filters, stride, name, kernel_initializer):
    """PyTorch ``Conv2d(k=1, stride, padding=0, bias=False)``; 'valid' matches exactly
    (both sample rows/cols 0, s, 2s, ...)."""
    return layers.Conv2D(filters, 1, strides=stride, padding="valid", use_bias=False,
                         kernel_initializer=kernel_initializer, name=name)(x)


def bn(x, name):
    """``nn.BatchNorm2d`` semantics (momentum 0.1 torch / 0.9 Keras, eps 1e-5, unbiased
    running variance), γ=1 β=0 init as in PyTorch."""
    return TorchBatchNorm(name=name)(x)


def relu(x, name):
    return layers.ReLU(name=name)(x)


def linear(x, units, name, kernel_initializer=None, bias_initializer=None):
    """``nn.Linear(in, units)`` producing the logits (float32 under mixed precision)."""
    fan_in = int(x.shape[-1])
    return layers.Dense(
        units,
        kernel_initializer=kernel_initializer or torch_default_kernel_init(),
        bias_initializer=bias_initializer or torch_default_bias_init(fan_in),
        dtype=logits_dtype(), name=name)(x)


def image_input(input_shape):
    """NHWC float input in [0, 1]; dtype follows floatx (float64 builds run in float64)."""
    return keras.Input(shape=tuple(input_shape), name="input")


def avgpool_flatten(x, pool, name):
    """``F.avg_pool2d(out, pool)`` then ``out.view(N, -1)``.

    With the reference input sizes the pooled map is 1×1, so NHWC and NCHW flattening
    agree; for larger inputs the flattened order (and hence linear-weight import) would
    differ from PyTorch — the reference nets assume 32×32 inputs anyway.
    """
    x = layers.AveragePooling2D(pool_size=pool, name=f"{name}_avgpool")(x)
    return layers.Flatten(name=f"{name}_flatten")(x)
