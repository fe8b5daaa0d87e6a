"""MART (Wang et al., "Improving Adversarial Robustness Requires Revisiting
Misclassified Examples", ICLR 2020), and its two-neighbour variant MART† (ST paper,
Li et al., ICLR 2023, Appendix C, Table 6).

Reference: YisenWang/MART @ 2d83e17, ``mart.py:mart_loss``
(docs/reference-implementations.md "MART / Attack and loss").  As coded there, and so
here by default:
* attack in inference-mode BN from ``x + 0.001 N(0,1)`` (not clamped), exactly
  ``steps`` steps ``Proj(x_adv + step * sign(grad CE(f(x_adv), y)))``;
* loss with two train-mode forwards, ``f(x)`` then ``f(x_adv)`` (moving statistics
  updated in that order), ``p = softmax``:
    ``y'_i`` = most probable class of ``p_adv,i`` other than ``y_i``;
    ``L_adv = CE(f(x_adv), y) + mean_i -log(1.0001 - p_adv[i, y'_i] + 1e-12)``;
    ``L_rob = mean_i [sum_c p_nat,c (log p_nat,c - log(p_adv,c + 1e-12))]
                     * (1.0000001 - p_nat[i, y_i])`` (classes with ``p_nat,c = 0``
    contribute 0, as ``KLDivLoss``);
    ``loss = L_adv + beta * L_rob``, nothing detached (the weight
    ``1 - p_nat,y`` and the KL target receive gradients).
  Logged terms: ``bce`` = ``L_adv``, ``kl`` = ``L_rob`` (the weighted KL, as it
  enters the loss), so ``loss = bce + beta * kl``.

Choices and deviations:
* Defaults are the ST paper's comparison settings (Section 5): eps 8/255, step 2/255,
  10 steps, beta 5 (MART's ResNet-18 setting; MART ships eps 0.031, step 0.007).
* ``y'``: the reference takes it from ``argsort(p_adv)[:, -2:]`` (second if the top-1
  is ``y``, else the top-1), which is the top class excluding ``y``; ties among the
  other classes are broken here by the first index (PyTorch's ``argsort`` is not
  stable, so the reference's tie rule is unspecified).
* The constants are cast to the logits' dtype (float32 as in the reference; exact in
  float64).
* ``mart2`` (``neighbours=2``): two MART attacks per benign example from independent
  ``0.001 N(0,1)`` starts (draw indices 0 and 1); forwards ``f(x)``, ``f(x_adv)``,
  ``f(x_adv2)``; loss = mean over the two neighbours of ``L_adv + beta * L_rob``
  (both MART terms depend on the neighbour, so both are averaged).
"""

import dataclasses

import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.specs import PGD
from tf_st.methods import neighbours as nb
from tf_st.methods.base import AdversarialMethod, batch_mean
from tf_st.methods.hparams import HParams


def mart_terms(z_nat, z_adv, y):
    """Per-example ``(bce, rob)`` of MART, before the batch mean.

    ``bce`` is ``L_adv``, ``rob`` the weighted KL ``L_rob``.

    Args:
      z_nat: clean logits ``[B, classes]``.
      z_adv: adversarial logits ``[B, classes]``.
      y: integer labels ``[B]``.

    Returns:
      ``(bce, rob)``, each per example ``[B]``.
    """
    z_nat, z_adv = losses.as_float(z_nat), losses.as_float(z_adv)
    dtype = z_adv.dtype
    p_adv, p_nat = tf.nn.softmax(z_adv), tf.nn.softmax(z_nat)
    y = tf.cast(y, tf.int32)
    is_true = tf.equal(tf.range(tf.shape(p_adv)[1])[None, :], y[:, None])
    others = tf.where(is_true, tf.constant(-1.0, dtype), p_adv)
    y_other = losses.first_argmax(others, axis=1)
    p_other = tf.gather(p_adv, y_other, axis=1, batch_dims=1)
    margin = -tf.math.log(tf.constant(1.0001, dtype) - p_other + tf.constant(1e-12, dtype))
    bce = losses.cross_entropy(z_adv, y) + margin
    kl = tf.reduce_sum(tf.math.xlogy(p_nat, p_nat)
                       - p_nat * tf.math.log(p_adv + tf.constant(1e-12, dtype)), axis=1)
    p_true = tf.gather(p_nat, y, axis=1, batch_dims=1)
    rob = kl * (tf.constant(1.0000001, dtype) - p_true)
    return bce, rob


def mart_loss(z_nat, z_advs, y, beta):
    """MART's outer loss from its train-mode logits.

    The batch means of :func:`mart_terms` averaged over the neighbours ``z_advs``.  MART and
    FAT-MART use it.

    Args:
      z_nat: clean logits ``[B, classes]``.
      z_advs: a list of adversarial logits, one per neighbour.
      y: integer labels ``[B]``.
      beta: the weight of the KL term.

    Returns:
      ``(loss, bce, kl)`` with ``loss = bce + beta * kl`` (scalars).
    """
    bces, robs = [], []
    for z_adv in z_advs:
        bce, rob = mart_terms(z_nat, z_adv, y)
        bces.append(batch_mean(bce))
        robs.append(batch_mean(rob))
    count = tf.cast(len(bces), bces[0].dtype)
    bce, kl = tf.add_n(bces) / count, tf.add_n(robs) / count
    return bce + losses.as_dtype(beta, bce.dtype) * kl, bce, kl


@dataclasses.dataclass(frozen=True)
class MARTHParams(HParams):
    beta: float = nb.beta_hparam(5.0, "MART's ResNet-18 setting: 5")
    init_std: float = nb.init_std_hparam()
    attack_bn: str = nb.attack_bn_hparam()
    neighbours: int = nb.neighbours_hparam(1)


@dataclasses.dataclass(frozen=True)
class MART2HParams(MARTHParams):
    neighbours: int = nb.neighbours_hparam(2)


class MART(AdversarialMethod):
    """MART (Wang et al.; module docstring).

    ``generate`` runs PGD on the cross-entropy from ``x + init_std N(0,1)``;
    ``training_loss`` is MART's boosted CE plus the misclassification-weighted KL.

    Args:
      networks: the classifier (a Keras model from NHWC images in [0, 1] to logits).
      **kwargs: the fields of ``MARTHParams`` and the constructor options of
        ``AdversarialMethod`` (``seed``, ``group_forwards``, ...).

    Raises:
      ValueError: an unknown hyperparameter or a value out of range.
    """
    key = "mart"
    term_names = ("loss", "bce", "kl")
    HParams = MARTHParams
    # L2: the same 0.001 N(0,1) start, normalised-gradient steps, the L2 ball.
    norms = ("Linf", "L2")

    def __init__(self, networks, **kwargs):
        super().__init__(networks, **kwargs)
        self.names = nb.neighbour_names(self.neighbours)
        self.attack = PGD(epsilon=self.epsilon, step_size=self.step_size, steps=self.steps,
                          loss="ce", start="normal", init_std=self.init_std, norm=self.norm)

    def generate(self, x, y, init=None):
        """The MART PGD point(s) of the batch.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          init: start points ``{name: images}`` for the inner attacks, or None to draw them.

        Returns:
          ``{'x_adv': ...}`` (``'x_adv2'`` too with two neighbours), NHWC in [0, 1].
        """
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        forward = nb.attack_forward(self, self.attack_bn)
        start = lambda x, k: self.start(x, "normal", k, std=self.init_std)  # noqa: E731
        return nb.pgd_neighbours(self, x, y, init, start, forward)

    def training_loss(self, x, y, generated):
        """MART's outer loss (``mart_loss``).

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``loss``, ``bce``, ``kl`` and ``clean_logits``.
        """
        z_nat, *z_advs = self.forward_groups([x] + [generated[n] for n in self.names])
        loss, bce, kl = mart_loss(z_nat, z_advs, y, self.beta)
        return {"loss": loss, "bce": bce, "kl": kl, "clean_logits": z_nat}


class MART2(MART):
    """MART† (ST paper Table 6): two neighbours per benign example."""
    key = "mart2"
    HParams = MART2HParams
