"""Vanilla adversarial training (Madry et al., "Towards Deep Learning Models Resistant
to Adversarial Attacks", ICLR 2018), as the ST paper compares against it ("vanilla AT",
Li et al., ICLR 2023, Table 1), and its two-neighbour variant "vanilla AT†" (ST paper
Appendix C, Table 6).

Reference: none pinned (docs/reference-implementations.md "Madry AT": the ST paper's
AT runs are not in qizhangli/ST-AT @ 82fc69f).  The PyTorch convention followed is the
one of locuslab/robust_overfitting and csdongxian/AWP (``AT_AWP/train_cifar10.py``
@ a7acf5d; docs/reference-implementations.md "AWP / AT-AWP"):
PGD on the batch cross-entropy from ``x + U(-eps, eps)`` *clamped to [0, 1]*, exactly
``steps`` sign-gradient steps projected onto the eps-ball and [0, 1]; then the loss
``CE(f(x_adv), y)`` with one train-mode forward (moving statistics updated once).

Choices and deviations:
* BatchNorm during the attack: inference mode (``attack_bn='eval'``, as the TRADES and
  MART references attack).  robust_overfitting and AT-AWP attack in train mode,
  updating the moving statistics on every attack forward: ``attack_bn='train'``, which
  also runs their ``attack_pgd``'s last forward (the restart-selection loss at the final
  point, one more update: ``steps + 1`` in all); ``attack_bn='batch_stats'`` uses batch
  statistics without updates (ST's convention).
* With ``--awp`` the trainer's presets reproduce the loop of csdongxian/AWP
  ``AT_AWP/train_cifar10.py`` (each an option of its own):
  ``attack_bn='train'``; ``log_forward=True``: after the update and AWP's restore, the
  loop runs the clean batch through the model in train mode for its accuracy log
  (``output = model(normalize(X))``), one more moving-statistics update;
  ``eval_first_batch=True``: the loop calls ``model.train()`` only after the attack, so
  the first batch of every epoch after the first is attacked in eval mode (the
  per-epoch test left the model there).  The epoch boundaries come from
  ``on_epoch_begin`` (the trainer calls it); a resumed run attacks as an uninterrupted
  one would (the official loop, resumed, starts in train mode).  AT-AWP's warm-up
  counts epochs from 0 (``tf_st.methods.awp.AWP(first_epoch=0)``).  Plain ``madry``
  keeps the defaults above.
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

import keras
import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.specs import PGD
from tf_st.methods import neighbours as nb
from tf_st.methods.base import AdversarialMethod, batch_mean
from tf_st.methods.hparams import HParams, hparam


def madry_loss(z_advs, y):
    """Vanilla AT's outer loss from its train-mode adversarial logits.

    MadryAT and CAT's AT member use it.

    Args:
      z_advs: a list of adversarial logits ``[B, classes]``, one per neighbour.
      y: integer labels ``[B]``.

    Returns:
      The mean over the neighbours of the batch-mean CE (a scalar).
    """
    ces = [batch_mean(losses.cross_entropy(z, y)) for z in z_advs]
    return tf.add_n(ces) / tf.cast(len(ces), ces[0].dtype)


@dataclasses.dataclass(frozen=True)
class MadryHParams(HParams):
    clamp_start: bool = hparam(True, "Clamp the uniform random start to [0, 1] "
                               "(robust_overfitting/CAT/AT-AWP); --noclamp_start: ST-AT's "
                               "unclamped start.")
    attack_bn: str = nb.attack_bn_hparam()
    neighbours: int = nb.neighbours_hparam(1)
    log_forward: bool = hparam(False, "After the update, one more train-mode forward of the "
                               "clean batch (BN statistics only; AT-AWP's accuracy log, the "
                               "--awp preset).")
    eval_first_batch: bool = hparam(False, "Attack the first batch of every epoch after the "
                                    "first in eval-mode BN (AT-AWP's loop after its per-epoch "
                                    "test, the --awp preset).")


@dataclasses.dataclass(frozen=True)
class Madry2HParams(MadryHParams):
    neighbours: int = nb.neighbours_hparam(2)


class MadryAT(AdversarialMethod):
    """Vanilla adversarial training (Madry et al.; module docstring).

    ``generate`` runs PGD on the cross-entropy from a uniform start; ``training_loss`` is the
    CE at the adversarial points.

    Args:
      networks: the classifier (a Keras model from NHWC images in [0, 1] to logits).
      **kwargs: the fields of ``MadryHParams`` and the constructor options of
        ``AdversarialMethod`` (``seed``, ``group_forwards``, ...).

    Raises:
      ValueError: an unknown hyperparameter or a value out of range.
    """
    key = "madry"
    term_names = ("loss",)
    HParams = MadryHParams
    # L2: normalised-gradient steps from a start uniform in the L2 ball (clamped with
    # clamp_start), projected onto the L2 ball then [0, 1] (tf_st.attacks.pgd).
    norms = ("Linf", "L2")

    def __init__(self, networks, **kwargs):
        super().__init__(networks, **kwargs)
        self.names = nb.neighbour_names(self.neighbours)
        # The start is drawn by the method (global-batch noise) and handed in as x_init.
        self.attack = PGD(epsilon=self.epsilon, step_size=self.step_size, steps=self.steps,
                          loss="ce", norm=self.norm)
        if self.eval_first_batch:
            # The optimizer step at which the current epoch began, if it is not the first
            # (-1: no eval-mode batch pending); set by on_epoch_begin.
            self.eval_attack_step = keras.Variable(-1, dtype="int64", trainable=False,
                                                   name="eval_attack_step")

    def on_epoch_begin(self, epoch):
        """Marks the first batch of the epoch for the eval-mode attack (``eval_first_batch``).

        Args:
          epoch: the 1-based epoch about to run.
        """
        if self.eval_first_batch:
            step = int(self.optimizer.iterations.numpy()) if epoch > 1 else -1
            self.eval_attack_step.assign(step)

    def random_start(self, x, index):
        """The uniform start of the ``index``-th neighbour.

        Clamped to [0, 1] with ``clamp_start``.

        Args:
          x: this replica's NHWC float images in [0, 1].
          index: the draw's index within the step.

        Returns:
          The start point, shaped as ``x``.
        """
        return self.start(x, "uniform_clamped" if self.clamp_start else "uniform", index)

    def _attack(self, x, y, init, mode):
        forward = nb.attack_forward(self, mode)
        attack = self.attack
        if mode != "eval" and nb.synchronized_replicas(self.primary):
            attack = dataclasses.replace(attack, unroll=True)
        if mode == "train":
            attack = _SelectionForward(attack, forward)
        return nb.pgd_neighbours(self, x, y, init, self.random_start, forward, attack)

    def generate(self, x, y, init=None):
        """The PGD point(s) of the batch.

        In eval-mode BN on the epoch's first batch with ``eval_first_batch``.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          init: start points ``{name: images}`` for the inner attacks, or None to draw them.

        Returns:
          ``{'x_adv': ...}`` (``'x_adv2'`` too with two neighbours), NHWC in [0, 1].
        """
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        if not self.eval_first_batch or self.attack_bn == "eval":
            return self._attack(x, y, init, self.attack_bn)
        first = tf.equal(tf.cast(self.optimizer.iterations, tf.int64), self.eval_attack_step)
        if not nb.synchronized_replicas(self.primary):
            return tf.cond(first, lambda: self._attack(x, y, init, "eval"),
                           lambda: self._attack(x, y, init, self.attack_bn))
        # Synchronized BatchNorm all-reduces inside the attack, and MirroredStrategy
        # allows no collective inside a tf.cond branch: both attacks run, the eval-mode
        # one is kept on the first batch, and the moving statistics the other one
        # updated are put back (an extra attack per step, only in this configuration).
        buffers = self.primary.non_trainable_variables
        saved = [tf.identity(v) for v in buffers]
        other = self._attack(x, y, init, self.attack_bn)
        for v, s in zip(buffers, saved):
            v.assign(tf.where(first, s, v))
        evaluated = self._attack(x, y, init, "eval")
        return {k: tf.where(first, evaluated[k], other[k]) for k in other}

    def after_apply(self, x, y, generated):
        """Runs the step hooks, then the clean train-mode forward of ``log_forward``.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.
        """
        super().after_apply(x, y, generated)  # step hooks first: AWP restores the weights
        if self.log_forward:
            self.forward_train(x)

    def training_loss(self, x, y, generated):
        """The mean CE at the adversarial points.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``{'loss': scalar}``.
        """
        return {"loss": madry_loss(self.forward_groups([generated[n] for n in self.names]), y)}


class _SelectionForward:
    """The attack followed by one more forward at its result: robust_overfitting's and
    AT-AWP's ``attack_pgd`` evaluates the per-example loss at the final point to pick
    the best restart, which in train mode updates the BN moving statistics once more."""

    def __init__(self, attack, forward):
        self.attack, self.forward = attack, forward

    def perturb(self, logits_fn, x, y, *, x_init=None):
        x_adv = self.attack.perturb(logits_fn, x, y, x_init=x_init)
        self.forward(x_adv)
        return x_adv


class MadryAT2(MadryAT):
    """Vanilla AT† (ST paper Table 6): two neighbours per benign example."""
    key = "madry2"
    HParams = Madry2HParams
