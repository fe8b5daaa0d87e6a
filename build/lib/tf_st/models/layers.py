"""Layers with PyTorch semantics, so that imported reference checkpoints and training
dynamics match the official code (reference-implementations.md §7)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_st")
class TorchBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization with PyTorch's defaults and running-variance rule.

    PyTorch ``BatchNorm2d(momentum=0.1, eps=1e-5)`` normalises with the biased batch
    variance but feeds the *unbiased* one (n/(n-1)) into ``running_var``; Keras uses
    the biased one for both.  Keras ``momentum`` is the weight of the old value, so
    PyTorch's 0.1 is Keras' 0.9.

    Like every Keras BN, calling it with ``training=True`` assigns the moving
    statistics.  Code that needs batch statistics *without* an update (ST's inner
    loop) goes through ``Model.stateless_call`` and discards the returned state.
    """

    def __init__(self, momentum=0.9, epsilon=1e-5, unbiased_moving_variance=True, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)
        self.unbiased_moving_variance = unbiased_moving_variance

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        inputs = ops.cast(inputs, compute_dtype)
        reduction_axes = [a for a in range(len(inputs.shape)) if a != self.axis % len(inputs.shape)]
        mean, variance = ops.moments(inputs, axes=reduction_axes)
        moving_variance_update = variance
        if self.unbiased_moving_variance:
            n = ops.cast(ops.prod(ops.take(ops.shape(inputs), reduction_axes)), inputs.dtype)
            moving_variance_update = variance * n / ops.maximum(n - 1.0, 1.0)
        m = self.momentum
        self.moving_mean.assign(
            ops.cast(self.moving_mean, inputs.dtype) * m + mean * (1.0 - m))
        self.moving_variance.assign(
            ops.cast(self.moving_variance, inputs.dtype) * m + moving_variance_update * (1.0 - m))
        outputs = ops.batch_normalization(
            x=inputs, mean=mean, variance=variance, axis=self.axis,
            offset=ops.cast(self.beta, inputs.dtype) if self.center else None,
            scale=ops.cast(self.gamma, inputs.dtype) if self.scale else None,
            epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["unbiased_moving_variance"] = self.unbiased_moving_variance
        return config
