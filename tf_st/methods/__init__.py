"""Training methods: one module per method, one lowercase key per method everywhere.

``build(key, classifier, **hparams)`` returns a ``keras.Model`` with ``generate``,
``training_loss`` and ``train_step`` (see ``base.AdversarialMethod``).
"""

from tf_st.methods.base import AdversarialMethod
from tf_st.methods.squeeze import SqueezeTraining

METHODS = {
    "st": SqueezeTraining,
}


def build(key, classifier, **hparams):
    try:
        cls = METHODS[key]
    except KeyError:
        raise ValueError(f"unknown method {key!r}; choose one of {sorted(METHODS)}") from None
    return cls(classifier, **hparams)


__all__ = ["AdversarialMethod", "METHODS", "build"]
