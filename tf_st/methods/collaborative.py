"""Training with collaborative examples only: the ST paper's Eq. (5) (Li et al.,
"Squeeze Training for Adversarial Robustness", ICLR 2023, Section 3.2, Figure 4):

    min_Theta sum_i CE(f(x_i), y_i) + beta * KL(f(x_col_i), f(x_i)),

with ``x_col`` from the *descending* PGD of Eq. (4),
``x <- Proj(x - alpha * sign(grad CE(f(x), y)))``, 10 steps of 2/255 in an 8/255 ball
(the Section 3.2 experiment).

Reference: none; the experiment is not in qizhangli/ST-AT @ 82fc69f.  Everything the
paper leaves open is chosen as in the paper's closest relatives (TRADES,
docs/reference-implementations.md "TRADES / Attack and loss", which Eq. (5) mirrors with
the adversarial point replaced by a collaborative one, and ST-AT's training code):
* start: ``x + 0.001 N(0,1)``, not clamped (``init='normal'``; TRADES' and ST-AT's
  training start).  Section 3.1 says the start "can be the benign example (for I-FGSM)
  or its random neighbor (for PGD)": ``init='none'`` starts at ``x``,
  ``init='uniform'`` at ``x + U(-eps, eps)`` (not clamped);
* BatchNorm during the descent: inference mode (``attack_bn='eval'``, as TRADES'
  attack); ``'batch_stats'`` gives ST's convention;
* KL direction: ``KL(p_nat || p_col)`` (``kl_direction='nat_col'``).  Eq. 5 writes
  ``KL(f(x_col), f(x))``; the paper writes TRADES' term (Eq. 3) as ``KL(f(x'), f(x))``
  for the code's ``KL(p_nat || p_adv)``, i.e. its second argument is the target, so under
  the paper's own notation Eq. 5 is ``KL(p_nat || p_col)`` (and the JS formula of
  Section 4.1 is then the standard JS).  ``kl_direction='col_nat'`` gives
  ``KL(p_col || p_nat)``, this project's earlier literal reading (the collaborative
  distribution as the target); per example, batch mean; nothing detached;
* outer loss: two train-mode forwards, ``f(x)`` then ``f(x_col)`` (moving statistics
  updated in that order, as TRADES' nat/adv forwards);
* beta: the paper does not state the value used for Eq. (5); the default is 6 (the
  TRADES/ST CIFAR-10 value).
Logged terms: ``ce`` (clean CE), ``reg`` (the KL), ``loss = ce + beta * reg``.
"""

import dataclasses

import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.specs import PGD
from tf_st.methods import neighbours as nb
from tf_st.methods.base import AdversarialMethod, batch_mean
from tf_st.methods.hparams import HParams, hparam

INITS = ("normal", "uniform", "none")


@dataclasses.dataclass(frozen=True)
class CollaborativeHParams(HParams):
    beta: float = nb.beta_hparam(6.0, "Eq. 5 gives none; TRADES' 6")
    init: str = hparam("normal", "Start of the descent: x + 0.001 N(0,1) (normal), "
                       "x + U(-eps, eps) (uniform) or x (none).", choices=INITS)
    init_std: float = nb.init_std_hparam()
    attack_bn: str = nb.attack_bn_hparam()
    kl_direction: str = hparam("nat_col", "KL(p_nat || p_col) (the paper's notation, as "
                               "TRADES' Eq. 3) or KL(p_col || p_nat).",
                               choices=("nat_col", "col_nat"))


class CollaborativeTraining(AdversarialMethod):
    """Collaborative-example training (module docstring).

    ``generate`` descends the cross-entropy to a collaborative point; ``training_loss``
    is ``CE(f(x), y) + beta * KL`` between the clean and collaborative outputs.

    Args:
      networks: the classifier (a Keras model from NHWC images in [0, 1] to logits).
      **kwargs: the fields of ``CollaborativeHParams`` and the constructor options of
        ``AdversarialMethod`` (``seed``, ``group_forwards``, ...).

    Raises:
      ValueError: an unknown hyperparameter or a value out of range.
    """
    key = "col"
    term_names = ("loss", "ce", "reg")
    HParams = CollaborativeHParams
    # L2: the descent steps -g / ||g||_2 and projects onto the L2 ball.
    norms = ("Linf", "L2")

    def __init__(self, networks, **kwargs):
        super().__init__(networks, **kwargs)
        # Eq. 4: descending PGD on the cross-entropy (a targeted step on the true label).
        self.attack = PGD(epsilon=self.epsilon, step_size=self.step_size, steps=self.steps,
                          loss="ce", targeted=True, start=self.init, init_std=self.init_std,
                          norm=self.norm)

    def generate(self, x, y, init=None):
        """The collaborative point: targeted PGD toward the true label.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          init: start points ``{name: images}`` for the inner attacks, or None to draw them.

        Returns:
          ``{'col': x_col}``, NHWC in [0, 1].
        """
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        if init is not None:
            start = tf.cast(init["col"], x.dtype)
        else:
            start = self.start(x, self.init, 0, std=self.init_std)
        x_col = self.attack.perturb(nb.attack_forward(self, self.attack_bn), x, y, x_init=start)
        return {"col": x_col}

    def training_loss(self, x, y, generated):
        """``CE(f(x), y) + beta * KL`` in the direction ``kl_direction``.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``loss``, ``ce``, ``reg`` and ``clean_logits``.
        """
        z_nat, z_col = self.forward_groups([x, generated["col"]])
        ce = batch_mean(losses.cross_entropy(z_nat, y))
        target, other = (z_nat, z_col) if self.kl_direction == "nat_col" else (z_col, z_nat)
        reg = batch_mean(losses.kl_divergence(target, other))
        return {"loss": ce + losses.as_dtype(self.beta, ce.dtype) * reg, "ce": ce, "reg": reg,
                "clean_logits": z_nat}
