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
    return get(key)(classifier, **hparams)


__all__ = ["AdversarialMethod", "METHODS", "StepHook", "build", "get", *sorted(_CLASSES)]
