"""Analytic FLOP counts and the machine's measured matmul rate, for efficiency reports.

A forward pass costs F = sum over Conv2D/Dense layers of 2 * MACs (BN, ReLU, pooling
ignored).  A backward pass to the input only costs ~F; one that also produces weight
gradients ~2F.  These are the usual estimates, stated wherever they are used.
"""

import time

import keras
import numpy as np
import tensorflow as tf


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


def matmul_flops_per_second(n=2048, repeats=10):
    """Measured float32 matmul rate of this machine (FLOP/s)."""
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))

    @tf.function
    def mm(a, b):
        return tf.matmul(a, b)

    mm(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        mm(a, b).numpy()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def conv_flops_per_second(batch=64, size=16, channels=128, repeats=10):
    """Measured float32 rate of a ResNet-18-like 3x3 convolution (forward), FLOP/s."""
    x = tf.random.normal((batch, size, size, channels))
    w = tf.random.normal((3, 3, channels, channels))

    @tf.function
    def conv(x, w):
        return tf.nn.conv2d(x, w, 1, "SAME")

    conv(x, w).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        conv(x, w).numpy()
    flops = 2 * batch * size * size * channels * 9 * channels
    return flops * repeats / (time.perf_counter() - start)
