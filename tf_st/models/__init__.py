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

from tf_st.models import _common
from tf_st.models.layers import TorchBatchNorm, batch_groups, set_batchnorm
from tf_st.models.resnet import preact_resnet18, resnet18
from tf_st.models.small_cnn import small_cnn
from tf_st.models.torch_import import (StateDictMismatchError, keras_to_torch_state_dict,
                                       load_torch_state_dict, torch_state_dict_template)
from tf_st.models.wideresnet import wide_resnet


def _import_model_modules():
    """Every public module of the package, so that each registers its architectures."""
    import importlib
    import pkgutil
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        # convert is a command (python -m tf_st.models.convert) that registers nothing;
        # importing it here would make runpy warn that it was imported before it ran.
        if not info.name.startswith("_") and info.name != "convert":
            importlib.import_module(f"{__name__}.{info.name}")


_import_model_modules()
# The registry (``tf_st.models._common.register_arch``): arch key -> builder(num_classes,
# input_shape, name).
ARCHS = _common.ARCHS
register_arch = _common.register_arch


def build(arch, num_classes, input_shape=(32, 32, 3), name=None, **options):
    """Builds ``arch`` (a key of :data:`ARCHS`) as a functional Keras model producing logits.

    The model takes NHWC float images in [0, 1] of shape ``(batch, *input_shape)`` and
    returns ``(batch, num_classes)`` logits (float32 under a mixed-precision policy, floatx
    otherwise).

    Args:
      arch: architecture key, e.g. ``"resnet18"`` or ``"wrn34_10"``.
      num_classes: number of logits.
      input_shape: HWC shape of one image (the reference nets assume 32×32).
      name: Keras model name; defaults to ``arch``.
      **options: construction options the architecture's builder takes, passed only
        when given.  The bundled architectures take ``pad_at_stride_1`` (default False:
        stride-1 3x3 convs pad with 'same'; True: with their own ZeroPadding2D layer,
        the same numbers and weights, ``_common.conv3x3``).

    Returns:
      A functional ``keras.Model`` (its variables created) mapping the images to
      logits.

    Raises:
      ValueError: unknown ``arch`` (the message lists the known keys).

    Example:
      >>> import tf_st
      >>> model = tf_st.models.build("small_cnn", 10, input_shape=(32, 32, 3))
      >>> model.output_shape
      (None, 10)
    """
    if arch not in ARCHS:
        raise ValueError(f"Unknown arch {arch!r}; known: {', '.join(sorted(ARCHS))}")
    return ARCHS[arch](num_classes=int(num_classes), input_shape=tuple(input_shape),
                       name=name or arch, **options)


__all__ = [
    "ARCHS", "build", "register_arch", "wide_resnet", "resnet18", "preact_resnet18", "small_cnn",
    "TorchBatchNorm", "batch_groups", "set_batchnorm", "load_torch_state_dict", "torch_state_dict_template",
    "keras_to_torch_state_dict", "StateDictMismatchError",
]
