"""Vanilla adversarial training (Madry et al., "Towards Deep Learning Models Resistant
to Adversarial Attacks", ICLR 2018), as the ST paper compares against it ("vanilla AT",
Li et al., ICLR 2023, Table 1), and its two-neighbour variant "vanilla AT†" (ST paper
Appendix C, Table 6).

Reference: reference-implementations.md pins no Madry repository (the ST paper's AT
runs are not in qizhangli/ST-AT @ 82fc69f).  The PyTorch convention followed is the
one of locuslab/robust_overfitting and csdongxian/AWP (AT_AWP, @ a7acf5d, §4.3):
PGD on the batch cross-entropy from ``x + U(-eps, eps)`` *clamped to [0, 1]*, exactly
``steps`` sign-gradient steps projected onto the eps-ball and [0, 1]; then the loss
``CE(f(x_adv), y)`` with one train-mode forward (moving statistics updated once).

Choices and deviations:
* BatchNorm during the attack: inference mode (``attack_bn='eval'``, as the TRADES and
  MART references attack).  robust_overfitting and AT-AWP attack in train mode,
  updating the moving statistics on every attack forward: ``attack_bn='train'``;
  ``attack_bn='batch_stats'`` uses batch statistics without updates (ST's convention).
* The random start is clamped to [0, 1] before the first forward (``clamp_start=True``,
  robust_overfitting/CAT/AT-AWP); ``clamp_start=False`` gives ST-AT's/TRADES' unclamped
  uniform start.
* No clean forward happens in training, so the method reports no training accuracy
  (``clean_logits`` is not returned); only ``loss`` is logged.
* ``madry2`` (``neighbours=2``): two PGD runs per benign example from independent
  uniform starts (stateless draw indices 0 and 1), each identical to the single-run
  attack; the loss is the mean of the two adversarial cross-entropies (vanilla AT has
  no separate regulariser; its adversarial CE plays that role), with one train-mode
  forward per neighbour, in order.  The paper does not say how the two neighbours are
  generated beyond "two neighbouring examples for each benign example in the inner
  optimization"; independent restarts of the method's own attack is the reading used
  here for all † variants.
"""

import dataclasses

import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.specs import PGD
from tf_st.methods import neighbours as nb
from tf_st.methods.base import AdversarialMethod, batch_mean
from tf_st.methods.hparams import HParams, hparam


@dataclasses.dataclass(frozen=True)
class MadryHParams(HParams):
    clamp_start: bool = hparam(True, "Clamp the uniform random start to [0, 1] "
                               "(robust_overfitting/CAT/AT-AWP); --noclamp_start: ST-AT's "
                               "unclamped start.")
    attack_bn: str = nb.attack_bn_hparam()
    neighbours: int = nb.neighbours_hparam(1)


@dataclasses.dataclass(frozen=True)
class Madry2HParams(MadryHParams):
    neighbours: int = nb.neighbours_hparam(2)


class MadryAT(AdversarialMethod):
    key = "madry"
    term_names = ("loss",)
    HParams = MadryHParams

    def __init__(self, networks, **kwargs):
        super().__init__(networks, **kwargs)
        self.names = nb.neighbour_names(self.neighbours)
        # The start is drawn by the method (global-batch noise) and handed in as x_init.
        self.attack = PGD(epsilon=self.epsilon, step_size=self.step_size, steps=self.steps,
                          loss="ce")

    def random_start(self, x, index):
        return self.start(x, "uniform_clamped" if self.clamp_start else "uniform", index)

    def generate(self, x, y, init=None):
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        forward = nb.attack_forward(self, self.attack_bn)
        return nb.pgd_neighbours(self, x, y, init, self.random_start, forward)

    def training_loss(self, x, y, generated):
        ces = [batch_mean(losses.cross_entropy(z, y))
               for z in self.forward_groups([generated[n] for n in self.names])]
        return {"loss": tf.add_n(ces) / tf.cast(len(ces), ces[0].dtype)}


class MadryAT2(MadryAT):
    """Vanilla AT† (ST paper Table 6): two neighbours per benign example."""
    key = "madry2"
    HParams = Madry2HParams
