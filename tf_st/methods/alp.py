"""Adversarial Logit Pairing (ALP; Kannan, Kurakin & Goodfellow, "Adversarial Logit
Pairing", 2018), exactly as the CAT reference trains its second network (Liu et al.,
"Collaborative Adversarial Training"; liuxingbin/CAT @ 2325fa1, ``train_cat.py``;
docs/reference-implementations.md "CAT / Attacks" and "CAT / Loss").

As coded there, and so here by default:
* attack: PGD on the batch cross-entropy in inference-mode BN (``--BNeval`` is set in
  ``train_cat.sh``), start ``x + U(-eps, eps)`` clamped to [0, 1], ``steps`` steps of
  ``step_size`` projected onto the eps-ball and [0, 1] (CAT's ``attack_pgd``, which is
  Madry's attack: ``madry.MadryAT.generate`` with its defaults);
* loss with two train-mode forwards in the reference order ``f(x_adv)`` then ``f(x)``:
  ``0.5 * (CE(f(x_adv), y) + CE(f(x), y)) + pairing_weight * mean((f(x_adv) - f(x))^2)``,
  the squared difference averaged over the B x C logits (``F.mse_loss``), nothing
  detached, pairing weight 1.

Deviations: none in the loss.  ``pairing_weight`` (ALP's lambda) is exposed; the CAT
code fixes it to 1.  The reference draws its uniform start with ``torch``'s generator;
here it is a stateless TF draw (replica-invariant).
"""

import dataclasses

import tensorflow as tf

from tf_st.attacks import losses
from tf_st.methods.base import batch_mean
from tf_st.methods.hparams import hparam
from tf_st.methods.madry import MadryAT, MadryHParams


def alp_loss(z_adv, z_nat, y, pairing_weight=1.0):
    """ALP's outer loss from its train-mode logits.

    Args:
      z_adv: adversarial logits ``[B, classes]``.
      z_nat: clean logits ``[B, classes]``.
      y: integer labels ``[B]``.
      pairing_weight: ALP's lambda.

    Returns:
      ``(loss, ce, pair)``: ``ce = 0.5 * (CE(f(x_adv)) + CE(f(x)))``, ``pair`` the mean
      squared logit difference over the B x C logits, ``loss = ce + pairing_weight * pair``.
    """
    z_adv, z_nat = losses.as_float(z_adv), losses.as_float(z_nat)
    ce = 0.5 * (batch_mean(losses.cross_entropy(z_adv, y)) + batch_mean(losses.cross_entropy(z_nat, y)))
    pair = tf.reduce_mean(tf.square(z_adv - z_nat))
    return ce, pair, ce + losses.as_dtype(pairing_weight, ce.dtype) * pair


@dataclasses.dataclass(frozen=True)
class ALPHParams(MadryHParams):
    pairing_weight: float = hparam(1.0, "Weight of the logit-pairing term (CAT code: 1).",
                                   minimum=0)


class ALP(MadryAT):
    """Adversarial Logit Pairing as CAT trains it (module docstring).

    Madry's attack (``MadryAT.generate``, so L2 too: ``norms`` is MadryAT's) and ALP's loss.
    """
    key = "alp"
    term_names = ("loss", "ce", "pair")
    HParams = ALPHParams

    def training_loss(self, x, y, generated):
        """ALP's loss with the forwards ``f(x_adv)`` then ``f(x)``.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``loss``, ``ce``, ``pair`` and ``clean_logits``.
        """
        z_adv, z_nat = self.forward_groups([generated["adv"], x])
        ce, pair, loss = alp_loss(z_adv, z_nat, y, self.pairing_weight)
        return {"loss": loss, "ce": ce, "pair": pair, "clean_logits": z_nat}
