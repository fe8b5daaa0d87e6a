"""Shared pieces of the baseline methods (Madry AT, TRADES, MART, collaborative-only)
and of their two-neighbour "†" variants (ST paper, Appendix C, Table 6).

A baseline generates ``neighbours`` perturbed copies of the batch, each by the
method's own attack from its own random start (stateless draw index ``k`` for the
``k``-th copy, so the copies differ and are replica-invariant).  The copies are keyed
``adv`` (first), ``adv2`` (second), ...; the outer loss averages the per-copy
regulariser (the paper: "the mean of regularization is adopted for the outer
optimization").
"""

import tensorflow as tf

from tf_st.attacks.pgd import pgd

ATTACK_BN_MODES = ("eval", "train", "batch_stats")


def neighbour_names(count, prefix="adv"):
    """``('adv',)`` for one neighbour, ``('adv', 'adv2')`` for two, ..."""
    return tuple(prefix if k == 0 else f"{prefix}{k + 1}" for k in range(count))


def check_attack_bn(mode):
    if mode not in ATTACK_BN_MODES:
        raise ValueError(f"attack_bn must be one of {ATTACK_BN_MODES}, got {mode!r}")
    return mode


def attack_forward(method, mode):
    """The logits function an attack uses: inference BN (``eval``, TRADES/MART), batch
    statistics with moving-statistic updates on every attack forward (``train``,
    robust_overfitting/AWP), or batch statistics without updates (``batch_stats``, ST)."""
    return {"eval": method.forward_eval, "train": method.forward_train,
            "batch_stats": method.forward_batch_stats}[check_attack_bn(mode)]


def check_beta(beta):
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    return float(beta)


def check_neighbours(count):
    if int(count) != count or count < 1:
        raise ValueError(f"neighbours must be a positive integer, got {count!r}")
    return int(count)


def pgd_neighbours(method, x, y, init, start, loss_fn, forward):
    """``{name: PGD point}`` for each of ``method.names``: the ``k``-th neighbour starts
    at ``init[name]`` if given, else at ``start(x, k)``, and ascends ``loss_fn`` through
    ``forward`` with the method's epsilon, step size and steps."""
    out = {}
    for k, name in enumerate(method.names):
        x0 = start(x, k) if init is None else tf.cast(init[name], x.dtype)
        out[name] = pgd(forward, x, y, epsilon=method.epsilon, step_size=method.step_size,
                        steps=method.steps, loss_fn=loss_fn, x_init=x0)
    return out
