"""A small CNN for fast tests and CPU demos — not from any reference repository.

Layout (PyTorch-style names, so :mod:`tf_st.models.torch_import` works on it too)::

    conv1(32)-bn1-ReLU, maxpool 2                          32×32 → 16×16
    conv2(32)-bn2-ReLU, conv3(64)-bn3-ReLU, maxpool 2      16×16 → 8×8
    conv4(64)-bn4-ReLU
    global average pool → fc1(128)-ReLU → fc2(num_classes)

≈75K parameters for 10 classes, ≈10M multiply-adds per 32×32 image.  Global average pooling
(rather than flatten) keeps ``fc1``'s weight layout independent of NHWC/NCHW ordering and
lets the model accept any input size.  All convs are 3×3 stride 1 with symmetric padding
1 ('same'); BNs are :class:`~tf_st.models.layers.TorchBatchNorm`.
"""

import keras
from keras import layers

from tf_st.models import _common as C


@C.register_arch("small_cnn")
def small_cnn(num_classes=10, input_shape=(32, 32, 3), name="small_cnn", widths=(32, 32, 64, 64),
              hidden=128, pad_at_stride_1=False):
    """The small CNN of this module's docstring (not from a reference repository).

    Args:
      num_classes: number of logits.
      input_shape: HWC shape of one image (any size: global average pooling).
      name: Keras model name.
      widths: filters of conv1..conv4.
      hidden: units of ``fc1``.
      pad_at_stride_1: give the 3x3 convs their own ZeroPadding2D layer (same numbers and
        weights); see ``_common.conv3x3``.

    Returns:
      A functional ``keras.Model`` from NHWC images in [0, 1] to logits.
    """
    init = C.torch_default_kernel_init()
    inputs = C.image_input(input_shape)
    x = inputs
    for i, width in enumerate(widths, start=1):
        x = C.conv3x3(x, width, 1, f"conv{i}", init, pad_at_stride_1,
                      dtype=C.stem_dtype() if i == 1 else None)
        x = C.relu(C.bn(x, f"bn{i}"), f"relu{i}")
        if i in (1, 3):  # downsample early: keeps the cost ~10M multiply-adds per image
            x = layers.MaxPooling2D(2, name=f"pool{(i + 1) // 2}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(hidden, kernel_initializer=init,
                     bias_initializer=C.torch_default_bias_init(int(x.shape[-1])),
                     name="fc1")(x)
    x = C.relu(x, "relu_fc1")
    logits = C.linear(x, num_classes, "fc2")
    return keras.Model(inputs, logits, name=name)
