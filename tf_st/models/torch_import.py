"""Import PyTorch ``state_dict``s of the reference implementations into tf_st models.

The models of :mod:`tf_st.models` name every layer after its PyTorch parameter path, so a
PyTorch key ``<layer path>.<param>`` maps to the Keras layer ``<layer path>`` and:

=========================  ==========================  ===================================
PyTorch                    Keras                       conversion
=========================  ==========================  ===================================
Conv2d ``weight``          Conv2D ``kernel``           OIHW → HWIO (transpose 2, 3, 1, 0)
Conv2d ``bias``            Conv2D ``bias``             as is
Linear ``weight``          Dense ``kernel``            (out, in) → (in, out)
Linear ``bias``            Dense ``bias``              as is
BatchNorm ``weight``       ``gamma``                   as is
BatchNorm ``bias``         ``beta``                    as is
BatchNorm ``running_mean`` ``moving_mean``             as is
BatchNorm ``running_var``  ``moving_variance``         as is (both unbiased, see layers.py)
=========================  ==========================  ===================================

Key normalisation: a leading ``module.`` (``nn.DataParallel``) is stripped;
``*.num_batches_tracked`` buffers are dropped (PyTorch uses them only when
``momentum=None``); keys under ``ignore_prefixes`` (default TRADES' unused ``sub_block1.``)
are dropped.  All checks run before any variable is written, so a failed load leaves the
model untouched.
"""

import keras
import numpy as np

DEFAULT_IGNORE_PREFIXES = ("sub_block1.",)


class StateDictMismatchError(ValueError):
    """The state dict does not fit the model; the message lists every offending key.

    Args:
      missing: model keys absent from the state dict.
      unexpected: state-dict keys the model does not have.
      mismatched: ``(key, expected torch shape, given shape)`` triples.
    """

    def __init__(self, missing=(), unexpected=(), mismatched=()):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)  # (key, expected torch shape, got shape)
        lines = ["PyTorch state dict does not match the Keras model:"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): "
                         f"{', '.join(self.unexpected)}")
        for key, expected, got in self.mismatched:
            lines.append(f"  shape mismatch for {key}: expected {tuple(expected)}, "
                         f"got {tuple(got)}")
        super().__init__("\n".join(lines))


def _conv_to_keras(w):
    return np.transpose(w, (2, 3, 1, 0))


def _conv_to_torch(k):
    return np.transpose(k, (3, 2, 0, 1))


def _identity(a):
    return a


def _iter_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # nested functional/sequential models
            yield from _iter_layers(layer)
        else:
            yield layer


def _param_map(model):
    """torch key -> (keras variable, to_keras, to_torch) for every weight of ``model``."""
    entries = {}
    for layer in _iter_layers(model):
        if not layer.weights:
            continue
        name = layer.name
        if isinstance(layer, keras.layers.Conv2D):
            if layer.groups != 1 or getattr(layer, "lora_rank", None):
                raise NotImplementedError(f"{name}: grouped/LoRA convs are not supported")
            params = [("weight", layer.kernel, _conv_to_keras, _conv_to_torch)]
            if layer.use_bias:
                params.append(("bias", layer.bias, _identity, _identity))
        elif isinstance(layer, keras.layers.Dense):
            params = [("weight", layer.kernel, np.transpose, np.transpose)]
            if layer.use_bias:
                params.append(("bias", layer.bias, _identity, _identity))
        elif isinstance(layer, keras.layers.BatchNormalization):
            if not (layer.scale and layer.center):
                raise NotImplementedError(f"{name}: BN without affine parameters")
            params = [("weight", layer.gamma, _identity, _identity),
                      ("bias", layer.beta, _identity, _identity),
                      ("running_mean", layer.moving_mean, _identity, _identity),
                      ("running_var", layer.moving_variance, _identity, _identity)]
        else:
            raise NotImplementedError(
                f"layer {name!r} ({type(layer).__name__}) has weights but no PyTorch mapping")
        for suffix, var, to_keras, to_torch in params:
            key = f"{name}.{suffix}"
            if key in entries:
                raise ValueError(f"duplicate PyTorch key {key!r} (layer names must be unique)")
            entries[key] = (var, to_keras, to_torch)
    return entries


def _torch_shape(var, to_torch):
    return tuple(to_torch(np.empty(tuple(var.shape), dtype=np.uint8)).shape)


def torch_state_dict_template(model):
    """The PyTorch ``state_dict`` that :func:`load_torch_state_dict` expects for ``model``.

    Buffers such as ``num_batches_tracked`` are left out.

    Args:
      model: a model built by :func:`tf_st.models.build`.

    Returns:
      ``{torch key: torch shape tuple}``.
    """
    return {key: _torch_shape(var, to_torch)
            for key, (var, _, to_torch) in _param_map(model).items()}


def keras_to_torch_state_dict(model):
    """The inverse conversion: the weights of ``model`` as a PyTorch state dict.

    Args:
      model: a model built by :func:`tf_st.models.build`.

    Returns:
      ``{torch key: numpy array in PyTorch layout}``.
    """
    return {key: np.ascontiguousarray(to_torch(np.array(var.numpy())))
            for key, (var, _, to_torch) in _param_map(model).items()}


def _to_numpy(value):
    """numpy view of a numpy array, a (CPU/GPU) torch tensor or anything array-like,
    without importing torch."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def normalize_key(key):
    """Strips the ``module.`` prefix(es) added by ``nn.DataParallel``/DDP.

    Args:
      key: a PyTorch state-dict key.

    Returns:
      The key without leading ``module.`` prefixes.
    """
    while key.startswith("module."):
        key = key[len("module."):]
    return key


def load_torch_state_dict(model, state_dict, strict=True,
                          ignore_prefixes=DEFAULT_IGNORE_PREFIXES):
    """Loads a PyTorch ``state_dict`` (reference names → arrays/tensors) into ``model``.

    Args:
      model: a model built by :func:`tf_st.models.build` (or any model whose layer names
        are PyTorch parameter paths).
      state_dict: mapping from PyTorch keys to numpy arrays (torch tensors also work).
      strict: if True (default) missing and unexpected keys are errors; if False they are
        reported in the return value and skipped.  Shape mismatches are always errors.
      ignore_prefixes: keys (after ``module.`` stripping) starting with one of these are
        dropped silently; the default drops TRADES' unused ``sub_block1`` branch.

    Returns:
      dict with lists ``loaded``, ``missing``, ``unexpected`` and ``ignored`` (keys as
      normalised).

    Raises:
      StateDictMismatchError: listing missing / unexpected keys (strict) and every
        mis-shaped key with expected and given shapes.  Nothing is written then.
      ValueError: a key appears twice (with and without the ``module.`` prefix).
      NotImplementedError: the model has a layer the mapping does not cover (grouped
        convs, BN without affine parameters, ...).
    """
    entries = _param_map(model)
    given, ignored = {}, []
    for raw_key, value in state_dict.items():
        key = normalize_key(str(raw_key))
        if key.endswith("num_batches_tracked") or any(key.startswith(p)
                                                      for p in (ignore_prefixes or ())):
            ignored.append(key)
            continue
        if key in given:
            raise ValueError(f"key {key!r} appears twice (with and without 'module.')")
        given[key] = value
    missing = [k for k in entries if k not in given]
    unexpected = [k for k in given if k not in entries]
    mismatched, assignments = [], []
    for key, value in given.items():
        if key not in entries:
            continue
        var, to_keras, to_torch = entries[key]
        array = _to_numpy(value)
        expected = _torch_shape(var, to_torch)
        if tuple(array.shape) != expected:
            mismatched.append((key, expected, tuple(array.shape)))
            continue
        assignments.append((var, to_keras(array)))
    if mismatched or (strict and (missing or unexpected)):
        raise StateDictMismatchError(missing if strict else (),
                                     unexpected if strict else (), mismatched)
    for var, array in assignments:
        var.assign(np.asarray(array, dtype=keras.backend.standardize_dtype(var.dtype)))
    return {"loaded": [k for k in given if k in entries], "missing": missing,
            "unexpected": unexpected, "ignored": ignored}
