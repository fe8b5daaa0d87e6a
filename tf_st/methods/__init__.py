"""Training methods: one module per method, one lowercase key per method everywhere.

``build(key, classifier, **hparams)`` returns a ``keras.Model`` with ``generate``,
``training_loss`` and ``train_step`` (see ``base.AdversarialMethod``); ``get(key)``
returns the class.

Methods register themselves: a subclass of ``AdversarialMethod`` defined in a module of
this package with ``key = "..."`` in its own body lands in ``METHODS`` (see
``registry``).  Importing this package imports every public module of it (sorted by
name), so a new method is one new module here and nothing else; its class is then
also importable from ``tf_st.methods`` under its own name, as the existing ones are.
"""

import importlib
import pkgutil

from tf_st.methods.base import AdversarialMethod, StepHook
from tf_st.methods.registry import METHODS, get


def _import_modules():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_modules()

# MadryAT, TRADES, ... as attributes of the package, as before the registry.
_CLASSES = {cls.__name__: cls for cls in METHODS.values()}
globals().update(_CLASSES)


def build(key, classifier, **hparams):
    """Builds the training method ``key`` around ``classifier``.

    Args:
      key: a method key of ``METHODS`` (``"st"``, ``"trades"``, ``"mart"``, ...).
      classifier: the network (a Keras model from NHWC images in [0, 1] to logits), or
        ``{name: network}`` for a method that trains several (CAT).
      **hparams: the method's hyperparameters (fields of its ``HParams``, e.g.
        ``epsilon=8/255``, ``beta=6``) and the constructor options of
        ``AdversarialMethod`` (``seed``, ``group_forwards``, ...).

    Returns:
      The method: a ``keras.Model`` to ``compile`` and ``fit`` on ``(x, y)`` batches.

    Raises:
      ValueError: an unknown ``key`` or hyperparameter, or a value out of range.

    Example:
      >>> import keras
      >>> import tf_st
      >>> net = tf_st.models.build("small_cnn", 10, input_shape=(32, 32, 3))
      >>> method = tf_st.methods.build("trades", net, beta=6.0, steps=2)
      >>> method.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
      >>> method.key, method.beta
      ('trades', 6.0)
    """
    return get(key)(classifier, **hparams)


__all__ = ["AdversarialMethod", "METHODS", "StepHook", "build", "get", *sorted(_CLASSES)]
