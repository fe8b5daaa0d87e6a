"""Shared pieces of the baseline methods (Madry AT, TRADES, MART, collaborative-only)
and of their two-neighbour "†" variants (ST paper, Appendix C, Table 6).

A baseline generates ``neighbours`` perturbed copies of the batch, each by the
method's own attack from its own random start (stateless draw index ``k`` for the
``k``-th copy, so the copies differ and are replica-invariant).  The copies are keyed
``adv`` (first), ``adv2`` (second), ...; the outer loss averages the per-copy
regulariser (the paper: "the mean of regularization is adopted for the outer
optimization").
"""

import dataclasses

import tensorflow as tf

from tf_st.attacks.specs import PGD
from tf_st.methods.hparams import hparam
from tf_st.models.layers import all_layers

ATTACK_BN_MODES = ("eval", "train", "batch_stats")


def attack_bn_hparam(default="eval"):
    """The ``attack_bn`` hyperparameter: the BatchNorm mode of the inner attack.

    Args:
      default: ``'eval'``, ``'train'`` or ``'batch_stats'``.

    Returns:
      An ``hparam`` field.
    """
    return hparam(default, "BatchNorm mode while generating the attack: eval (TRADES/MART "
                  "references), train (updates moving statistics every attack step, "
                  "robust_overfitting/AT-AWP) or batch_stats (batch statistics, no update; ST).",
                  choices=ATTACK_BN_MODES)


def beta_hparam(default, source):
    """The ``beta`` hyperparameter: the regulariser weight.

    Args:
      default: its default.
      source: where the default comes from, shown in the help (``"TRADES: 6"``).

    Returns:
      An ``hparam`` field.
    """
    return hparam(default, f"Regulariser weight ({source}).", minimum=0)


def neighbours_hparam(count):
    """The number of perturbed copies per example.

    Fixed by the method key (``trades`` vs ``trades2``), so not a flag.

    Args:
      count: the number of copies.

    Returns:
      An ``hparam`` field.
    """
    return hparam(count, "Perturbed copies per benign example (ST paper Appendix C).",
                  minimum=1, integer=True, cli=False)


def init_std_hparam():
    """The ``init_std`` hyperparameter: the std of the normal start ``x + std N(0, 1)``.

    Returns:
      An ``hparam`` field.
    """
    return hparam(0.001, "Standard deviation of the normal start x + std N(0, 1).", minimum=0)


def neighbour_names(count, prefix="adv"):
    """The keys of the perturbed copies: ``('adv',)`` for one, ``('adv', 'adv2')`` for two, ...

    Args:
      count: the number of copies.
      prefix: the first key.

    Returns:
      A tuple of names.
    """
    return tuple(prefix if k == 0 else f"{prefix}{k + 1}" for k in range(count))


def attack_forward(method, mode):
    """The logits function an attack uses.

    Inference BN (``eval``, TRADES/MART), batch statistics with moving-statistic updates on
    every attack forward (``train``, robust_overfitting/AWP), or batch statistics without
    updates (``batch_stats``, ST).

    Args:
      method: the ``AdversarialMethod``.
      mode: ``'eval'``, ``'train'`` or ``'batch_stats'``.

    Returns:
      ``method.forward_eval``, ``forward_train`` or ``forward_batch_stats``.
    """
    return {"eval": method.forward_eval, "train": method.forward_train,
            "batch_stats": method.forward_batch_stats}[mode]


def synchronized_replicas(net):
    """Whether a train-mode attack forward of ``net`` holds a collective.

    True under several replicas with a BatchNorm that all-reduces its statistics; such a
    forward is allowed in no ``tf.while_loop`` or ``tf.cond`` under MirroredStrategy.

    Args:
      net: a Keras model.

    Returns:
      A bool.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return False
    return any(getattr(layer, "synchronized", False) for layer in all_layers(net))


def pgd_neighbours(method, x, y, init, start, forward, attack=None):
    """The PGD point of each neighbour of ``method.names``.

    The ``k``-th neighbour starts at ``init[name]`` if given, else at ``start(x, k)``, and runs
    ``attack`` through ``forward``.

    Args:
      method: the ``AdversarialMethod`` (its ``names``, ``attack``, ``primary``).
      x: NHWC float images in [0, 1].
      y: integer labels ``[B]``.
      init: ``{name: start}`` or None.
      start: ``start(x, k)`` drawing the ``k``-th start.
      forward: the logits function of the attack (``attack_forward``).
      attack: the attack spec; None for ``method.attack``.

    Returns:
      ``{name: x_adv}``.
    """
    attack = attack or method.attack
    if forward != method.forward_eval and synchronized_replicas(method.primary) \
            and isinstance(attack, PGD):
        attack = dataclasses.replace(attack, unroll=True)
    out = {}
    for k, name in enumerate(method.names):
        x0 = start(x, k) if init is None else tf.cast(init[name], x.dtype)
        out[name] = attack.perturb(forward, x, y, x_init=x0)
    return out
