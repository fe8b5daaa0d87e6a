"""Training methods: one module per method, one lowercase key per method everywhere.

``build(key, classifier, **hparams)`` returns a ``keras.Model`` with ``generate``,
``training_loss`` and ``train_step`` (see ``base.AdversarialMethod``).
"""

from tf_st.methods.alp import ALP
from tf_st.methods.base import AdversarialMethod, StepHook
from tf_st.methods.cat import CAT
from tf_st.methods.collaborative import CollaborativeTraining
from tf_st.methods.fat import FAT, FATMART, FATTRADES
from tf_st.methods.madry import MadryAT, MadryAT2
from tf_st.methods.mart import MART, MART2
from tf_st.methods.natural import NaturalTraining
from tf_st.methods.squeeze import SqueezeTraining
from tf_st.methods.trades import TRADES, TRADES2

METHODS = {
    "st": SqueezeTraining,
    "natural": NaturalTraining,
    "madry": MadryAT,
    "trades": TRADES,
    "mart": MART,
    "col": CollaborativeTraining,
    "madry2": MadryAT2,
    "trades2": TRADES2,
    "mart2": MART2,
    "alp": ALP,
    "cat": CAT,
    "fat": FAT,
    "fat_trades": FATTRADES,
    "fat_mart": FATMART,
}


def build(key, classifier, **hparams):
    try:
        cls = METHODS[key]
    except KeyError:
        raise ValueError(f"unknown method {key!r}; choose one of {sorted(METHODS)}") from None
    return cls(classifier, **hparams)


__all__ = ["AdversarialMethod", "METHODS", "StepHook", "build"]
