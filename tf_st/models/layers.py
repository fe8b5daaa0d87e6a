"""Layers with PyTorch semantics, so that imported reference checkpoints and training
dynamics match the official code
(docs/reference-implementations.md "PyTorch to Keras parity")."""

import dataclasses

import keras
import tensorflow as tf
from keras import ops

# FusedBatchNormV3 computes in these input dtypes (not float64: float64 models take the
# composite path, which is what the float64 parity tests exercise).
_FUSED_DTYPES = ("float32", "float16", "bfloat16")
# Inference-mode inputs in these dtypes (mixed precision) take the fused kernel too.
_REDUCED_DTYPES = ("float16", "bfloat16")


@dataclasses.dataclass(frozen=True)
class BatchGroups:
    """How a train-mode ``TorchBatchNorm`` splits its batch into groups.

    The batch is cut into ``groups`` equal consecutive slices, each normalised with its own
    statistics; the moving statistics are updated with the groups' statistics in ``order``
    (see ``batch_groups``, which builds and validates it).

    Attributes:
      groups: number of slices (>= 1).
      order: group indices whose statistics update the moving ones, in this order.
    """
    groups: int
    order: tuple


def batch_groups(groups, update_order=None):
    """The ``BatchGroups`` to pass as ``model(x, training=True, batch_groups=...)``.

    (Or through ``stateless_call``.)  Every ``TorchBatchNorm`` of the functional ``model`` in
    training mode splits its batch into ``groups`` equal consecutive slices and normalises
    each with its own statistics, exactly as ``groups`` separate forwards would; the moving
    statistics are then updated with the groups' statistics in ``update_order``.

    One forward of ``concat([a, b])`` with ``batch_groups(2)`` thus equals ``f(a)`` then
    ``f(b)`` in outputs, gradients and moving statistics, with convolutions twice as large
    (faster on most hardware).

    The setting is a call argument, not global state: Keras' functional models hand any
    extra call keyword to each of their layers that registered it as a call-context
    argument (``TorchBatchNorm`` does, ``Layer._register_call_context_args``).  A
    ``TorchBatchNorm`` inside a nested sub-model is not reached that way
    (``check_batch_groups_reach`` tells).

    Args:
      groups: number of equal consecutive slices of the batch (>= 1).
      update_order: group indices (repeats allowed) whose statistics update the moving
        ones, in this order; None for every group in order, ``()`` for none.

    Returns:
      A frozen ``BatchGroups``.

    Raises:
      ValueError: ``groups < 1`` or an index outside ``[0, groups)``.
    """
    order = tuple(range(groups)) if update_order is None else tuple(update_order)
    if groups < 1 or any(not 0 <= g < groups for g in order):
        raise ValueError(f"batch_groups({groups}, {update_order}): bad group index")
    return BatchGroups(int(groups), tuple(int(g) for g in order))


def check_batch_groups_reach(model):
    """Checks that ``batch_groups=`` reaches every ``TorchBatchNorm`` of ``model``.

    A functional model passes call-context arguments only to its own layers, so every
    ``TorchBatchNorm`` must be one of them, not inside a nested model.

    Args:
      model: a Keras model.

    Raises:
      ValueError: a ``TorchBatchNorm`` sits in a nested model (the message names them).
    """
    own = {id(layer) for layer in model.layers}
    nested = [layer.name for layer in all_layers(model)
              if isinstance(layer, TorchBatchNorm) and id(layer) not in own]
    if nested:
        raise ValueError(
            f"{model.name}: BatchNorm layers {nested} sit in a nested model, which does not "
            "pass batch_groups on; use group_forwards=False for this network")


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

    Speed: in training mode, float32/16/bfloat16 NHWC inputs take TensorFlow's fused
    kernel (``FusedBatchNormV3`` called with eps 1e-5 itself: ``tf.nn.fused_batch_norm``
    would raise eps to 1.001e-5); it returns the unbiased batch variance PyTorch's
    running-variance rule needs.  ``fused=False`` (or a float64 model)
    takes the composite moments path, equal up to rounding.  In inference mode float32
    takes Keras' affine form, and float16/bfloat16 (mixed precision) the fused inference
    kernel, which normalises the 16-bit activations without a float32 round trip.

    ``synchronized=True`` (``--sync_batchnorm``): under a ``tf.distribute`` strategy the
    batch statistics are those of the global batch (an all-reduce per BN), so replicas
    normalise and update exactly as one device with the global batch would.  Without it
    each replica uses the statistics of its own slice, as PyTorch ``DataParallel`` does.

    Args:
      momentum: Keras momentum, the weight of the old moving value (PyTorch's 0.1 is 0.9).
      epsilon: added to the variance (PyTorch's default 1e-5).
      unbiased_moving_variance: update ``moving_variance`` with the unbiased batch variance,
        as PyTorch does; False for Keras' rule.
      fused: use the fused kernels where the input allows it (training mode; inference
        mode in float16/bfloat16).
      **kwargs: passed to ``keras.layers.BatchNormalization`` (``axis``, ``name``,
        ``synchronized``, ...).
    """

    def __init__(self, momentum=0.9, epsilon=1e-5, unbiased_moving_variance=True, fused=True,
                 **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)
        # A functional model called with ``batch_groups=`` hands it to this layer
        # (private Keras API, pinned by tests/test_keras_internals.py).
        self._register_call_context_args("batch_groups")
        self.unbiased_moving_variance = unbiased_moving_variance
        self.fused = fused

    def _fusable(self, x):
        return (self.fused and len(x.shape) == 4 and self.axis % 4 == 3 and self.center
                and self.scale and keras.backend.standardize_dtype(x.dtype) in _FUSED_DTYPES)

    def call(self, inputs, training=None, mask=None, batch_groups=None):
        """Normalises ``inputs``; in training mode also updates the moving statistics.

        Args:
          inputs: the tensor to normalise (NHWC for the fused path).
          training: batch statistics and a moving update if true (and the layer is
            trainable); the moving statistics otherwise.
          mask: passed to Keras' BatchNormalization, which then does the whole call.
          batch_groups: a ``BatchGroups`` (from ``batch_groups``) splitting the batch into
            groups with their own statistics; None for one group.

        Returns:
          The normalised tensor, in the layer's compute dtype, shaped as ``inputs``.
        """
        if mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        if not (training and self.trainable):
            if self._fusable(inputs) and keras.backend.standardize_dtype(
                    inputs.dtype) in _REDUCED_DTYPES:
                return self._fused_inference(inputs)
            # Inference: Keras' affine form; in float32 on CPU the fused kernel was slower
            # here once its gradient is needed (attacks back-propagate through it).
            return super().call(inputs, training=training, mask=mask)
        groups, order = (batch_groups.groups, batch_groups.order) if batch_groups else (1, (0,))
        parts = tf.split(inputs, groups, axis=0) if groups > 1 else [inputs]
        outputs, stats = zip(*(self._normalize(p) for p in parts))
        m = self.momentum
        for g in order:
            mean, variance = stats[g]
            self.moving_mean.assign(
                self.moving_mean * m + ops.cast(mean, self.moving_mean.dtype) * (1.0 - m))
            self.moving_variance.assign(
                self.moving_variance * m
                + ops.cast(variance, self.moving_variance.dtype) * (1.0 - m))
        y = outputs[0] if groups == 1 else tf.concat(outputs, axis=0)
        return ops.cast(y, self.compute_dtype)

    def _fused_inference(self, x):
        """Moving-statistics normalisation of a float16/bfloat16 ``x`` by the fused kernel.

        The kernel takes the 16-bit activations with float32 statistics and parameters,
        computes in float32 and rounds once, as Keras' affine form does; but Keras gets
        there by casting the activations to float32 and back in every BatchNorm, forward
        and gradient.  Without those casts the inner attack loop of TRADES-style methods
        (K inference-mode forwards and input gradients of ResNet-18 in ``mixed_bfloat16``)
        runs faster (``python -m benchmarks.bn_inference``; measured in
        benchmarks/RESULTS.md).  ``fused=False`` keeps Keras' form.
        """
        return self._fused_kernel(x, ops.cast(self.moving_mean, "float32"),
                                  ops.cast(self.moving_variance, "float32"))[0]

    def _fused_kernel(self, x, mean=None, variance=None):
        """``FusedBatchNormV3`` on NHWC ``x`` with this layer's gamma, beta and eps:
        training mode (batch statistics) without ``mean``/``variance``, inference mode
        with them.  Returns ``(y, batch mean, unbiased batch variance)`` (the two are
        the given statistics in inference mode)."""
        training = mean is None
        empty = tf.constant([], tf.float32)
        return tf.raw_ops.FusedBatchNormV3(
            x=x, scale=ops.cast(self.gamma, "float32"), offset=ops.cast(self.beta, "float32"),
            mean=empty if training else mean, variance=empty if training else variance,
            epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
            is_training=training)[:3]

    def _normalize(self, x):
        """One group: ``(normalised x, (batch mean, variance for the moving update))``."""
        if self._fusable(x) and not self.synchronized:
            y, mean, unbiased = self._fused_kernel(x)
            if self.unbiased_moving_variance:
                return y, (mean, unbiased)
            n = ops.cast(ops.prod(ops.shape(x)[:-1]), unbiased.dtype)
            return y, (mean, unbiased * ops.maximum(n - 1.0, 1.0) / n)
        compute_dtype = keras.backend.result_type(x.dtype, "float32")
        x = ops.cast(x, compute_dtype)
        axes = [a for a in range(len(x.shape)) if a != self.axis % len(x.shape)]
        mean, variance = ops.moments(x, axes=axes, synchronized=self.synchronized)
        moving_variance = variance
        if self.unbiased_moving_variance:
            n = ops.cast(ops.prod(ops.take(ops.shape(x), axes)), x.dtype)
            if self.synchronized:
                n = n * tf.distribute.get_strategy().num_replicas_in_sync
            moving_variance = variance * n / ops.maximum(n - 1.0, 1.0)
        y = ops.batch_normalization(
            x=x, mean=mean, variance=variance, axis=self.axis,
            offset=ops.cast(self.beta, x.dtype) if self.center else None,
            scale=ops.cast(self.gamma, x.dtype) if self.scale else None,
            epsilon=self.epsilon)
        return y, (mean, moving_variance)

    def get_config(self):
        """Keras serialisation config.

        Returns:
          BatchNormalization's config plus ``unbiased_moving_variance`` and ``fused``.
        """
        config = super().get_config()
        config["unbiased_moving_variance"] = self.unbiased_moving_variance
        config["fused"] = self.fused
        return config


def set_batchnorm(model, **attributes):
    """Sets ``fused`` / ``synchronized`` on every ``TorchBatchNorm`` of ``model``.

    The attributes are read when the model is next traced.

    Args:
      model: a Keras model (nested models included).
      **attributes: ``fused=bool`` and/or ``synchronized=bool``.

    Raises:
      ValueError: an attribute other than ``fused`` and ``synchronized``.
    """
    unknown = set(attributes) - {"fused", "synchronized"}
    if unknown:
        raise ValueError(f"unknown BatchNorm setting(s) {sorted(unknown)}")
    for layer in all_layers(model):
        if isinstance(layer, TorchBatchNorm):
            for name, value in attributes.items():
                setattr(layer, name, bool(value))


def all_layers(model):
    """Every layer of ``model``, nested models' layers included (``model`` excluded).

    Keras 3 has no public recursive walk (``Model.layers`` lists only the top level); this
    uses the private ``Layer._flatten_layers``, pinned by tests/test_keras_internals.py.

    Args:
      model: a Keras model or layer.

    Returns:
      A list of layers.
    """
    return list(model._flatten_layers(include_self=False, recursive=True))
