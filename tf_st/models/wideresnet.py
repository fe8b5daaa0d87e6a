"""TRADES-style Wide ResNet with PyTorch-compatible layer names.

Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016), as coded in
yaodongyu/TRADES ``models/wideresnet.py`` (also used by MART, AWP, FAT-for-TRADES/MART,
ST-AT and, at depth 28, RST) —
docs/reference-implementations.md "TRADES / WideResNet":

* widths ``[16, 16k, 32k, 64k]``, ``n = (depth - 4) / 6`` blocks per stage, strides 1/2/2;
* pre-activation BasicBlock: ``BN-ReLU → conv3x3(stride) → BN-ReLU → conv3x3``; when
  in ≠ out channels the BN-ReLU output of x feeds **both** conv1 and the 1×1 stride-s
  ``convShortcut``; otherwise the shortcut is the identity on the raw x;
* final ``bn1`` → ReLU → ``avg_pool2d(8)`` → ``fc``;
* init: conv ~ N(0, sqrt(2 / (k·k·out))), BN γ=1 β=0, fc bias 0 (fc weight keeps
  PyTorch's default kaiming-uniform).

Layer names (TRADES parameter paths)::

    conv1,
    block{1,2,3}.layer.{i}.bn1 / .conv1 / .bn2 / .conv2 / .convShortcut,
    bn1, fc

Deviations: TRADES builds an extra ``sub_block1`` that ``forward`` never uses (TRADES
issue #7); it is not built here and its checkpoint keys are ignored on import
(:func:`tf_st.models.torch_import.load_torch_state_dict`).  ``dropRate`` is fixed at its
default 0 (no reference training script changes it).

WRN-32-10 of FAT (``models/wrn_madry.py``, Madry et al.'s WRN) uses ``n = (depth - 2)/6``,
so depth 32 gives 5 blocks per stage — exactly the layers of TRADES' WRN-34-10 without
``sub_block1`` (FAT issue #3;
docs/reference-implementations.md "FAT / Training scripts").  ``wrn32_10`` therefore
builds ``wide_resnet(34, 10)`` and only the model name differs.
"""

import keras
from keras import layers

from tf_st.models import _common as C


def wrn_conv_init():
    """TRADES' conv init: ``m.weight.data.normal_(0, sqrt(2. / (k*k*out_channels)))``.

    A He-normal on fan_out, *untruncated* (Keras' ``he_normal`` is truncated).

    Returns:
      A ``keras.initializers.VarianceScaling``.
    """
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out",
                                              distribution="untruncated_normal")


def _wrn_block(x, out_planes, stride, name, init, pad):
    in_planes = int(x.shape[-1])
    equal_in_out = in_planes == out_planes
    if equal_in_out and stride != 1:
        raise ValueError(f"{name}: identity shortcut with stride {stride} (TRADES would "
                         "fail too)")
    act = C.relu(C.bn(x, f"{name}.bn1"), f"{name}.relu1")
    out = C.conv3x3(act, out_planes, stride, f"{name}.conv1", init, pad)
    out = C.relu(C.bn(out, f"{name}.bn2"), f"{name}.relu2")
    out = C.conv3x3(out, out_planes, 1, f"{name}.conv2", init, pad)
    if equal_in_out:
        shortcut = x
    else:
        shortcut = C.conv1x1(act, out_planes, stride, f"{name}.convShortcut", init)
    return layers.Add(name=f"{name}.add")([shortcut, out])


def wide_resnet(depth=34, widen_factor=10, num_classes=10, input_shape=(32, 32, 3),
                name=None, pad_at_stride_1=False):
    """TRADES WideResNet-``depth``-``widen_factor``.

    Args:
      depth: total depth, ``6n + 4`` with ``n >= 1`` blocks per stage (34, 28, ...).
      widen_factor: width multiplier k (widths ``[16, 16k, 32k, 64k]``).
      num_classes: number of logits.
      input_shape: HWC shape of one image (the final pool assumes 32×32).
      name: Keras model name; defaults to ``wrn{depth}_{widen_factor}``.
      pad_at_stride_1: give stride-1 3x3 convs their own ZeroPadding2D layer (same numbers
        and weights); see ``_common.conv3x3``.

    Returns:
      A functional ``keras.Model`` from NHWC images in [0, 1] to logits.

    Raises:
      ValueError: ``depth`` is not ``6n + 4`` with ``n >= 1``.
    """
    if depth < 10 or (depth - 4) % 6 != 0:
        raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1, got {depth}")
    n = (depth - 4) // 6
    widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    init = wrn_conv_init()
    inputs = C.image_input(input_shape)
    x = C.conv3x3(inputs, widths[0], 1, "conv1", init, pad_at_stride_1,
                  dtype=C.stem_dtype())
    for b, (width, stride) in enumerate(zip(widths[1:], (1, 2, 2)), start=1):
        for i in range(n):
            x = _wrn_block(x, width, stride if i == 0 else 1, f"block{b}.layer.{i}", init,
                           pad_at_stride_1)
    x = C.relu(C.bn(x, "bn1"), "relu")
    x = C.avgpool_flatten(x, 8, "head")
    logits = C.linear(x, num_classes, "fc", bias_initializer="zeros")
    return keras.Model(inputs, logits, name=name or f"wrn{depth}_{widen_factor}")


def _wrn(depth, widen_factor):
    def builder(num_classes=10, input_shape=(32, 32, 3), name=None, pad_at_stride_1=False):
        return wide_resnet(depth, widen_factor, num_classes, input_shape, name, pad_at_stride_1)
    return builder


C.register_arch("wrn34_10", _wrn(34, 10))
C.register_arch("wrn34_5", _wrn(34, 5))
C.register_arch("wrn28_10", _wrn(28, 10))
# FAT's WRN_madry-32-10 has n=(32-2)/6=5 blocks per stage, i.e. the depth-34 TRADES
# layer structure (without the unused sub_block1); only the name differs.
C.register_arch("wrn32_10", _wrn(34, 10))
