"""TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and
Accuracy", ICML 2019), and its two-neighbour variant TRADES† (ST paper, Li et al.,
ICLR 2023, Appendix C, Table 6).

Reference: yaodongyu/TRADES @ 6e8e11b, ``trades.py:trades_loss``
(docs/reference-implementations.md "TRADES / Attack and loss").  As coded there, and so
here by default:
* attack in inference-mode BN from ``x + 0.001 N(0,1)`` (not clamped), exactly
  ``steps`` steps ``Proj(x_adv + step * sign(grad KL_sum(p(x) || p(x_adv))))`` with
  ``f(x)`` constant (the reference recomputes it, in eval mode, every step; it is the
  same value, so it is computed once here);
* loss with three train-mode forwards in the reference order ``f(x)`` (for the CE),
  ``f(x_adv)``, ``f(x)`` again (the KL target):
  ``CE(f(x), y) + beta * KL_sum(p(x) || p(x_adv)) / B``, the target *not* detached, so
  gradients flow through both clean forwards and BN moving statistics are updated three
  times (clean, adversarial, clean).

The order of the train-mode forwards (``forward_order``) decides nothing but the BN
moving statistics (the two clean forwards give the same logits), and the references
differ in it:
* ``'nat_adv_nat'`` (default): yaodongyu/TRADES, as above;
* ``'adv_nat_nat'``: csdongxian/AWP ``trades_AWP/train_trades_cifar.py`` (``train``:
  ``model(x_adv)``, then ``model(x_natural)`` for the KL target, then ``model(x_natural)``
  for the CE), the preset with ``--awp``;
* ``'adv_nat'``: yaircarmon/semisup-adv ``losses.py:trades_loss`` (``model(x_adv)`` then
  ``model(x_natural)`` once, its logits serving both the CE and the KL target), the
  preset with ``--unlabeled`` (robust self-training; also with ``--awp``, since the
  AWP repository's RST runs train with semisup-adv's loss).

Choices and deviations:
* Defaults are the ST paper's comparison settings (Section 5): eps 8/255, step 2/255,
  10 steps, beta 6 (TRADES ships eps 0.031, step 0.007).
* ``reg`` (paper Section 5.1, Figure 6: "For TRADES, we also try using the JS
  divergence, the squared l2 distance, and the symmetric KL divergence for regularizing
  suspicious and benign outputs"): ``'kl'`` (TRADES), ``'js'``, ``'l2'``,
  ``'symmetric_kl'``.  The chosen discrepancy replaces KL in *both* the inner
  maximisation (which finds the "suspicious" point) and the outer loss, since TRADES'
  suspicious point is by definition the maximiser of its own regulariser.  As in
  TRADES, nothing is detached: ``'symmetric_kl'`` here is the plain symmetric KL
  (``regularizers.symmetric_kl(..., detach_targets=False)``), not ST's detached form;
  ``js`` and ``l2`` are ``regularizers.js`` / ``regularizers.l2`` (fully
  differentiated).  Outer reduction for every choice: per-example value, batch mean
  (= TRADES' sum / B).  Paper β sets for these variants (Table 2): KL {2,4,6,8,10},
  l2 {6,8,16,24}, JS {16,24,32,48}, symmetric KL {4,6,8,12,16}.
* ``trades2`` (``neighbours=2``): two TRADES attacks per benign example from
  independent ``0.001 N(0,1)`` starts (stateless draw indices 0 and 1); loss
  ``CE(f(x), y) + beta * mean_k reg(f(x), f(x_adv_k))``, forwards ``f(x)`` (CE),
  ``f(x_adv)``, ``f(x_adv2)``, ``f(x)`` (target, shared by both terms) -- the
  one-neighbour order with the extra adversarial forward next to the first.
* The inner objective is the *sum* over the batch (as the reference's KL_sum); PGD
  steps on its sign, so the reduction does not matter there.
"""

import dataclasses

import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.specs import PGD
from tf_st.methods import neighbours as nb
from tf_st.methods import regularizers
from tf_st.methods.base import AdversarialMethod, batch_mean
from tf_st.methods.hparams import HParams, hparam


def _kl(z_nat, z_adv):
    return losses.kl_divergence(z_nat, z_adv)


def _symmetric_kl(z_nat, z_adv):
    return regularizers.symmetric_kl(z_nat, z_adv, detach_targets=False)


TRADES_REGULARIZERS = {"kl": _kl, "js": regularizers.js, "l2": regularizers.l2,
                       "symmetric_kl": _symmetric_kl}


FORWARD_ORDERS = ("nat_adv_nat", "adv_nat_nat", "adv_nat")


def update_order(forward_order, neighbours):
    """``forward_groups``' update order over the parts ``[x, x_adv, x_adv2, ...]``.

    Args:
      forward_order: ``'nat_adv_nat'``, ``'adv_nat_nat'`` or ``'adv_nat'`` (module docstring).
      neighbours: the number of adversarial parts.

    Returns:
      A tuple of part indices.
    """
    advs = tuple(range(1, neighbours + 1))
    return {"nat_adv_nat": (0,) + advs + (0,), "adv_nat_nat": advs + (0, 0),
            "adv_nat": advs + (0,)}[forward_order]


def trades_regularizer(name):
    """The TRADES regulariser ``reg(z_nat, z_adv)`` per example, nothing detached.

    Args:
      name: ``'kl'``, ``'js'``, ``'l2'`` or ``'symmetric_kl'``.

    Returns:
      A function of two logits tensors returning per-example values ``[B]``.

    Raises:
      ValueError: an unknown name.
    """
    try:
        return TRADES_REGULARIZERS[name]
    except KeyError:
        raise ValueError(f"unknown TRADES regulariser {name!r}; choose one of "
                         f"{sorted(TRADES_REGULARIZERS)}") from None


def trades_loss(z_nat, z_advs, y, beta, reg_fn=_kl):
    """TRADES' outer loss from its train-mode logits.

    TRADES, CAT's TRADES member and FAT-TRADES use it.

    Args:
      z_nat: clean logits ``[B, classes]`` (the regulariser's target, not detached).
      z_advs: a list of adversarial logits, one per neighbour.
      y: integer labels ``[B]``.
      beta: the regulariser's weight.
      reg_fn: per-example regulariser ``reg_fn(z_nat, z_adv)``.

    Returns:
      ``(loss, ce, reg, ce_nat)`` with ``ce = mean CE(f(x), y)``,
      ``reg = mean_k mean reg_fn(f(x), f(x_adv_k))``, ``loss = ce + beta * reg`` and
      ``ce_nat`` the per-example clean CE.
    """
    ce_nat = losses.cross_entropy(z_nat, y)
    ce = batch_mean(ce_nat)
    regs = [batch_mean(reg_fn(z_nat, z_adv)) for z_adv in z_advs]
    reg = tf.add_n(regs) / tf.cast(len(regs), regs[0].dtype)
    return ce + losses.as_dtype(beta, ce.dtype) * reg, ce, reg, ce_nat


@dataclasses.dataclass(frozen=True)
class TRADESHParams(HParams):
    beta: float = nb.beta_hparam(6.0, "TRADES: 6")
    reg: str = hparam("kl", "Regulariser of the attack and the outer loss (ST paper Figure 6).",
                      choices=sorted(TRADES_REGULARIZERS), flag="trades_reg", what="regulariser")
    init_std: float = nb.init_std_hparam()
    attack_bn: str = nb.attack_bn_hparam()
    neighbours: int = nb.neighbours_hparam(1)
    forward_order: str = hparam(
        "nat_adv_nat", "Order of the train-mode outer forwards (BN moving statistics only): "
        "nat_adv_nat (TRADES), adv_nat_nat (TRADES-AWP, the --awp preset) or adv_nat "
        "(semisup-adv RST, the --unlabeled preset).", choices=FORWARD_ORDERS,
        flag="trades_forward_order")


@dataclasses.dataclass(frozen=True)
class TRADES2HParams(TRADESHParams):
    neighbours: int = nb.neighbours_hparam(2)


class TRADES(AdversarialMethod):
    """TRADES (the module docstring gives the reference and deviations).

    ``generate`` runs the inner maximisation of the regulariser from ``x + init_std N(0,1)``;
    ``training_loss`` is ``CE(f(x), y) + beta * reg(f(x), f(x_adv))``.

    Args:
      networks: the classifier (a Keras model from NHWC images in [0, 1] to logits).
      **kwargs: the fields of ``TRADESHParams`` and the constructor options of
        ``AdversarialMethod`` (``seed``, ``group_forwards``, ...).

    Raises:
      ValueError: an unknown hyperparameter or a value out of range.
    """
    key = "trades"
    # col_ratio: fraction of inner maximisers (the first neighbour's) whose CE is below
    # the benign CE, from the training forwards (logged only; ST paper Fig. 5).
    term_names = ("loss", "ce", "reg", "col_ratio")
    HParams = TRADESHParams
    # L2: the same 0.001 N(0,1) start, normalised-gradient steps, the L2 ball.
    norms = ("Linf", "L2")

    def __init__(self, networks, **kwargs):
        super().__init__(networks, **kwargs)
        self.reg_fn = trades_regularizer(self.reg)
        self.names = nb.neighbour_names(self.neighbours)
        # The loss (the regulariser against this batch's clean logits) is set per batch.
        self.attack = PGD(epsilon=self.epsilon, step_size=self.step_size, steps=self.steps,
                          start="normal", init_std=self.init_std, norm=self.norm)

    def generate(self, x, y, init=None):
        """The TRADES inner maximiser(s) of the regulariser against f(x).

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          init: start points ``{name: images}`` for the inner attacks, or None to draw them.

        Returns:
          ``{'x_adv': ...}`` (``'x_adv2'`` too with two neighbours), NHWC in [0, 1].
        """
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        forward = nb.attack_forward(self, self.attack_bn)
        inner = losses.kl_from_clean(forward, x, self.reg_fn)
        start = lambda x, k: self.start(x, "normal", k, std=self.init_std)  # noqa: E731
        return nb.pgd_neighbours(self, x, y, init, start, forward,
                                 dataclasses.replace(self.attack, loss=inner))

    def training_loss(self, x, y, generated):
        # The reference's forwards as one: a second clean forward equals the first (same
        # weights, same batch), so it only repeats the moving-statistics update; gradients
        # through it equal those through the first.
        """TRADES' outer loss, with the train-mode forwards in ``forward_order``.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``loss``, ``ce``, ``reg``, ``col_ratio`` (the share of first neighbours whose CE is
          below the clean CE, logged only) and ``clean_logits``.
        """
        parts = [x] + [generated[n] for n in self.names]
        z_nat, *z_advs = self.forward_groups(
            parts, update_order=update_order(self.forward_order, len(self.names)))
        loss, ce, reg, ce_nat = trades_loss(z_nat, z_advs, y, self.beta, self.reg_fn)
        below = tf.less(losses.cross_entropy(tf.stop_gradient(z_advs[0]), y),
                        tf.stop_gradient(ce_nat))
        return {"loss": loss, "ce": ce, "reg": reg,
                "clean_logits": z_nat, "col_ratio": batch_mean(tf.cast(below, ce.dtype))}


class TRADES2(TRADES):
    """TRADES† (ST paper Table 6): two neighbours per benign example."""
    key = "trades2"
    HParams = TRADES2HParams
