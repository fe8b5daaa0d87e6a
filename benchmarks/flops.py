"""Analytic FLOP counts and the machine's measured matmul and convolution rates (float32
or another dtype, e.g. bfloat16), for efficiency reports.

A forward pass costs F = sum over Conv2D/Dense layers of 2 * MACs (BN, ReLU, pooling
ignored).  A backward pass to the input only costs ~F; one that also produces weight
gradients ~2F.  These are the usual estimates, stated wherever they are used.
"""

import time

import keras
import numpy as np
import tensorflow as tf

# Training-step FLOPs per image in units of the forward cost F, for K inner steps
# (derivations in benchmarks/step_time.py's docstring): natural 3F; ST (4K + 10) F
# (a lower bound); TRADES (2K + 7) F; Madry (2K + 3) F; MART (2K + 6) F.
FLOP_FACTORS = {
    "natural": lambda k: 3,
    "st": lambda k: 4 * k + 10,
    "trades": lambda k: 2 * k + 7,
    "madry": lambda k: 2 * k + 3,
    "mart": lambda k: 2 * k + 6,
}
# What AWP adds to a step: one proxy step on the method's outer loss (its forwards F
# each, their weight backward 2F each): Madry 1 forward -> 3F; TRADES, MART 2 -> 6F;
# ST 3 -> 9F.
AWP_EXTRA = {"madry": 3, "trades": 6, "mart": 6, "st": 9}
# One evaluation pass per image: PGD-K / CW-K K * (F + F input backward) + F (the clean
# forward); FGSM 2F + F; clean F.
EVAL_FACTORS = {"clean": 1, "fgsm": 3}


def eval_factor(attack):
    """FLOPs per image of one evaluation attack (``clean``, ``fgsm``, ``pgd<K>``,
    ``cw<K>``), in units of F."""
    if attack in EVAL_FACTORS:
        return EVAL_FACTORS[attack]
    steps = int(attack.lstrip("pgdcw"))
    return 2 * steps + 1


def forward_flops(model):
    """FLOPs of one forward pass of one example through ``model``."""
    total = 0
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape  # (None, H, W, C)
            k = np.prod(layer.kernel.shape[:-1])
            total += 2 * out[1] * out[2] * out[3] * k
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * np.prod(layer.kernel.shape)
    return int(total)


def _layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def matmul_flops_per_second(n=2048, repeats=10, dtype="float32"):
    """Measured matmul rate of this machine.

    Args:
        n: the matrices are ``n x n``.
        repeats: timed calls (after one untimed call that traces and warms up).
        dtype: the operands' dtype (``"float32"``, ``"bfloat16"``, ...); the numbers are
            drawn in float32 and cast, so the float32 inputs are the same as ever.

    Returns:
        FLOP/s (``2 n^3`` per product).
    """
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)

    @tf.function
    def mm(a, b):
        return tf.matmul(a, b)

    mm(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        mm(a, b).numpy()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def conv_flops_per_second(batch=64, size=16, channels=128, repeats=10, dtype="float32"):
    """Measured rate of a ResNet-18-like 3x3 stride-1 convolution (forward).

    ResNet-18 on a 32x32 input spends the same FLOPs per image in the 3x3 convolutions
    of each of its four stages; the default shape is the second stage's (128 channels at
    16x16), ``size=32, channels=64`` the first stage's.

    Args:
        batch: images per call.
        size: input height and width (NHWC, ``'SAME'`` padding).
        channels: input and output channels.
        repeats: timed calls (after one untimed call that traces and warms up).
        dtype: input and filter dtype (``"float32"``, ``"bfloat16"``, ...); the numbers
            are drawn in float32 and cast, so the float32 inputs are the same as ever.

    Returns:
        FLOP/s (``2 * batch * size^2 * channels^2 * 9`` per call).
    """
    x = tf.cast(tf.random.normal((batch, size, size, channels)), dtype)
    w = tf.cast(tf.random.normal((3, 3, channels, channels)), dtype)

    @tf.function
    def conv(x, w):
        return tf.nn.conv2d(x, w, 1, "SAME")

    conv(x, w).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        conv(x, w).numpy()
    flops = 2 * batch * size * size * channels * 9 * channels
    return flops * repeats / (time.perf_counter() - start)
