"""Model zoo: the architectures used by Squeeze Training and its baselines.

Every model is a functional ``keras.Model`` taking NHWC float images in [0, 1] and returning
logits (no softmax; float32 logits under a mixed-precision policy, floatx otherwise).  Any
input normalisation is the caller's business (the reference repos feed raw [0, 1] images,
except AT-AWP which normalises in the script).  Every BatchNorm is a
:class:`~tf_st.models.layers.TorchBatchNorm` (PyTorch momentum/eps/unbiased running
variance) and every layer is named after its PyTorch parameter path, so checkpoints of the
reference implementations import with :func:`load_torch_state_dict`.

================== ==================================================== =================
key                reference                                            PyTorch params
================== ==================================================== =================
``resnet18``       kuangliu/pytorch-cifar ResNet-18 (ST-AT, MART, CAT)  11,173,962 (C=10)
``preact_resnet18`` robust_overfitting / AWP PreActResNet-18            11,172,170 (C=10)
``wrn34_10``       TRADES WideResNet-34-10 (TRADES, MART, AWP, ST, FAT)  46,160,474 (C=10)
``wrn34_5``        TRADES WideResNet-34-5
``wrn28_10``       TRADES-style WideResNet-28-10 (RST, ST-RST)           36,479,194 (C=10)
``wrn32_10``       FAT's WRN_madry depth 32 = the WRN-34-10 layers      46,160,474 (C=10)
``small_cnn``      none — small CNN for tests and CPU demos             ≈75K
================== ==================================================== =================

(Parameter counts exclude TRADES' unused ``sub_block1`` and the BN running statistics.)
"""

from tf_st.models.layers import TorchBatchNorm, batch_groups, set_batchnorm
from tf_st.models.resnet import preact_resnet18, resnet18
from tf_st.models.small_cnn import small_cnn
from tf_st.models.torch_import import (StateDictMismatchError, keras_to_torch_state_dict,
                                       load_torch_state_dict, torch_state_dict_template)
from tf_st.models.wideresnet import wide_resnet


def _wrn(depth, widen_factor):
    def builder(num_classes=10, input_shape=(32, 32, 3), name=None):
        return wide_resnet(depth, widen_factor, num_classes, input_shape, name)
    return builder


# Explicit registry: arch key -> builder(num_classes, input_shape, name).
ARCHS = {
    "resnet18": resnet18,
    "preact_resnet18": preact_resnet18,
    "wrn34_10": _wrn(34, 10),
    "wrn34_5": _wrn(34, 5),
    "wrn28_10": _wrn(28, 10),
    # FAT's WRN_madry-32-10 has n=(32-2)/6=5 blocks per stage, i.e. the depth-34 TRADES
    # layer structure (without the unused sub_block1); only the name differs.
    "wrn32_10": _wrn(34, 10),
    "small_cnn": small_cnn,
}


def build(arch, num_classes, input_shape=(32, 32, 3), name=None):
    """Builds ``arch`` (a key of :data:`ARCHS`) as a functional Keras model producing logits.

    Args:
      arch: architecture key, e.g. ``"resnet18"`` or ``"wrn34_10"``.
      num_classes: number of logits.
      input_shape: HWC shape of one image (the reference nets assume 32×32).
      name: Keras model name; defaults to ``arch``.

    Raises:
      ValueError: unknown ``arch`` (the message lists the known keys).
    """
    if arch not in ARCHS:
        raise ValueError(f"Unknown arch {arch!r}; known: {', '.join(sorted(ARCHS))}")
    return ARCHS[arch](num_classes=int(num_classes), input_shape=tuple(input_shape),
                       name=name or arch)


__all__ = [
    "ARCHS", "build", "wide_resnet", "resnet18", "preact_resnet18", "small_cnn",
    "TorchBatchNorm", "batch_groups", "set_batchnorm", "load_torch_state_dict", "torch_state_dict_template",
    "keras_to_torch_state_dict", "StateDictMismatchError",
]
