"""CIFAR ResNet-18 (standard and pre-activation) with PyTorch-compatible layer names.

``resnet18`` — He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), in
the CIFAR form of kuangliu/pytorch-cifar ``models/resnet.py``, which is what
qizhangli/ST-AT ``models/resnet.py`` uses
(docs/reference-implementations.md "ST-AT / Architectures"):
3×3 stem conv 64 (stride 1, no bias) → BN → ReLU, **no max-pool**; four stages of two
BasicBlocks (64/128/256/512, first-block strides 1/2/2/2); BasicBlock =
conv3x3-BN-ReLU-conv3x3-BN (+ shortcut) → ReLU; projection shortcut conv1x1(stride, no
bias)+BN when the shape changes; ``avg_pool2d(4)`` → Linear(512 → C).  11,173,962
PyTorch parameters for C=10 (= Keras *trainable* weights; Keras additionally stores the
BN moving mean/variance as non-trainable weights, PyTorch as buffers).

Layer names = PyTorch parameter paths::

    conv1, bn1,
    layer{1..4}.{0,1}.conv1 / .bn1 / .conv2 / .bn2,
    layer{2,3,4}.0.shortcut.0 (1×1 conv), layer{2,3,4}.0.shortcut.1 (BN),
    linear

``preact_resnet18`` — He et al., "Identity Mappings in Deep Residual Networks" (ECCV 2016),
as in locuslab/robust_overfitting ``preactresnet.py`` / csdongxian/AWP
``AT_AWP/preactresnet.py``: stem conv1 (no BN after it); PreActBlock
``out = ReLU(BN1(x)); shortcut = conv1x1(out) if shape changes else x;
out = conv2(ReLU(BN2(conv1(out)))) + shortcut``; final ``bn`` → ReLU → avg_pool 4 → linear.
Names::

    conv1,
    layer{1..4}.{0,1}.bn1 / .conv1 / .bn2 / .conv2,
    layer{2,3,4}.0.shortcut.0 (1×1 conv, no BN in the shortcut),
    bn, linear

Deviations from the references: none in the forward pass.  Initialisation follows PyTorch's
defaults in distribution (kaiming-uniform a=√5 for conv/linear weights, U(±1/√fan_in) linear
bias, BN γ=1 β=0) but not in random stream.  3×3 convs pad (1, 1) on both sides as PyTorch
does: 'same' at stride 1, an explicit ZeroPadding2D at stride 2 (see ``_common.conv3x3``).
"""

import keras
from keras import layers

from tf_st.models import _common as C

_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))


def _basic_block(x, planes, stride, name, init, pad):
    in_planes = int(x.shape[-1])
    out = C.conv3x3(x, planes, stride, f"{name}.conv1", init, pad)
    out = C.relu(C.bn(out, f"{name}.bn1"), f"{name}.relu1")
    out = C.conv3x3(out, planes, 1, f"{name}.conv2", init, pad)
    out = C.bn(out, f"{name}.bn2")
    if stride != 1 or in_planes != planes:
        shortcut = C.conv1x1(x, planes, stride, f"{name}.shortcut.0", init)
        shortcut = C.bn(shortcut, f"{name}.shortcut.1")
    else:
        shortcut = x  # PyTorch: empty nn.Sequential()
    out = layers.Add(name=f"{name}.add")([out, shortcut])
    return C.relu(out, f"{name}.relu2")


def _preact_block(x, planes, stride, name, init, pad):
    in_planes = int(x.shape[-1])
    out = C.relu(C.bn(x, f"{name}.bn1"), f"{name}.relu1")
    if stride != 1 or in_planes != planes:
        # The projection reads the *pre-activated* input (robust_overfitting/AWP).
        shortcut = C.conv1x1(out, planes, stride, f"{name}.shortcut.0", init)
    else:
        shortcut = x  # identity on the raw input
    out = C.conv3x3(out, planes, stride, f"{name}.conv1", init, pad)
    out = C.relu(C.bn(out, f"{name}.bn2"), f"{name}.relu2")
    out = C.conv3x3(out, planes, 1, f"{name}.conv2", init, pad)
    return layers.Add(name=f"{name}.add")([out, shortcut])


def _resnet(block, num_blocks, num_classes, input_shape, name, preact, pad=False):
    init = C.torch_default_kernel_init()
    inputs = C.image_input(input_shape)
    x = C.conv3x3(inputs, 64, 1, "conv1", init, pad, dtype=C.stem_dtype())
    if not preact:
        x = C.relu(C.bn(x, "bn1"), "relu")
    for stage, ((planes, stride), n) in enumerate(zip(_STAGES, num_blocks), start=1):
        for i in range(n):
            x = block(x, planes, stride if i == 0 else 1, f"layer{stage}.{i}", init, pad)
    if preact:
        x = C.relu(C.bn(x, "bn"), "relu")
    x = C.avgpool_flatten(x, 4, "head")
    logits = C.linear(x, num_classes, "linear")
    return keras.Model(inputs, logits, name=name)


@C.register_arch("resnet18")
def resnet18(num_classes=10, input_shape=(32, 32, 3), name="resnet18", pad_at_stride_1=False):
    """kuangliu/ST-AT CIFAR ResNet-18 (BasicBlock, [2, 2, 2, 2]).

    Args:
      num_classes: number of logits.
      input_shape: HWC shape of one image.
      name: Keras model name.
      pad_at_stride_1: give stride-1 3x3 convs their own ZeroPadding2D layer (same numbers
        and weights); see ``_common.conv3x3``.

    Returns:
      A functional ``keras.Model`` from NHWC images in [0, 1] to logits.
    """
    return _resnet(_basic_block, (2, 2, 2, 2), num_classes, input_shape, name, preact=False,
                   pad=pad_at_stride_1)


@C.register_arch("preact_resnet18")
def preact_resnet18(num_classes=10, input_shape=(32, 32, 3), name="preact_resnet18",
                    pad_at_stride_1=False):
    """robust_overfitting/AWP PreActResNet-18 (PreActBlock, [2, 2, 2, 2]).

    Args:
      num_classes: number of logits.
      input_shape: HWC shape of one image.
      name: Keras model name.
      pad_at_stride_1: give stride-1 3x3 convs their own ZeroPadding2D layer (same numbers
        and weights); see ``_common.conv3x3``.

    Returns:
      A functional ``keras.Model`` from NHWC images in [0, 1] to logits.
    """
    return _resnet(_preact_block, (2, 2, 2, 2), num_classes, input_shape, name, preact=True,
                   pad=pad_at_stride_1)
