"""Friendly Adversarial Training (FAT; Zhang et al., "Attacks Which Do Not Kill Training
Make Adversarial Learning Stronger", ICML 2020): train on friendly adversarial data
from early-stopped PGD-K-tau, for Madry AT (``fat``), TRADES (``fat_trades``) and MART
(``fat_mart``).

Reference: zjfheart/Friendly-Adversarial-Training @ 80a0640, ``earlystop.py``,
``FAT.py``, ``FAT_for_TRADES.py``, ``FAT_for_MART.py``
(docs/reference-implementations.md "FAT").
As coded there, and so here by default:
* the attack is ``earlystop`` (the ``EarlyStoppedPGD`` spec:
  ``tf_st.attacks.pgd.early_stopped_pgd``) in
  inference-mode BN: start ``x + U(-eps, eps)`` (``fat``) or ``x + 0.001 N(0, 1)``
  (``fat_trades``, ``fat_mart``), *clamped to [0, 1]*; ``fat`` ascends CE and adds
  ``omega N(0, 1)`` (omega 0.001) to every step; ``fat_trades`` ascends
  ``KL(p(x) || p(x_adv))`` with ``p(x)`` from one inference-mode forward at the start;
  ``fat_mart`` ascends CE; the stopping rule is misclassification for all three;
* losses in train mode: ``fat``: ``CE(f(x_adv), y)``; ``fat_trades``: forwards ``f(x)``
  then ``f(x_adv)``, ``CE(f(x), y) + beta KL_sum(p(x) || p(x_adv)) / B`` (beta 6, the
  clean logits reused as the target, not detached); ``fat_mart``: forwards ``f(x_adv)``
  then ``f(x)``, MART's loss (``tf_st.methods.mart.mart_loss``, beta 6);
* tau per epoch (``tau_schedule``, 1-based epochs): ``fat`` 0 up to epoch 50, 1 up to
  90, then 2; ``fat_trades`` 0/1/2/3 with breaks at 30, 50, 70; ``fat_mart`` 0..4 with
  breaks at 20, 40, 60, 80 (the scripts' ``adjust_tau``).  The runner sets it at every
  epoch start (``on_epoch_begin``); used alone the method uses the first entry.

Deviations:
* The reference's ``--dynamictau`` is ``type=bool``, so ``--dynamictau False`` parses as
  True and its README recipe for a constant tau (``--tau 10 --dynamictau False``) keeps
  the schedule.  Not reproduced: ``--tau_schedule=''`` gives the constant ``--tau``.
* The reference returns the examples reordered (finished ones first); here they keep
  their order.  The losses are sums/means over the batch and train-mode BN statistics
  are permutation-invariant, so nothing the training sees changes.
* omega noise and random starts are stateless TF draws (replica-invariant), not torch's.
* ``passes`` (logged as ``bp``): mean gradient steps per example in the epoch (FAT
  Figure 5); the reference divides its ``count`` by the dataset size, the same number
  when every example is seen once.
"""

import dataclasses

import keras
import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.specs import EarlyStoppedPGD
from tf_st.methods.base import AdversarialMethod, batch_mean
from tf_st.methods.hparams import HParams, hparam
from tf_st.methods.mart import mart_loss
from tf_st.methods.trades import trades_loss


def parse_tau_schedule(text):
    """Parses a per-epoch tau schedule.

    ``'50:0,90:1,2'`` -> ``[(50, 0), (90, 1), (None, 2)]``: tau 0 up to epoch 50, 1 up to
    90, 2 after.  ``''`` -> ``[]`` (constant tau).

    Args:
      text: the schedule.

    Returns:
      A list of ``(last epoch or None, tau)``.

    Raises:
      ValueError: an entry other than the last without ``epoch:``, epochs not increasing,
        or a negative tau.
    """
    out = []
    parts = [p.strip() for p in text.split(",") if p.strip()]
    for i, part in enumerate(parts):
        if ":" in part:
            end, tau = part.split(":")
            out.append((int(end), int(tau)))
        elif i == len(parts) - 1:
            out.append((None, int(part)))
        else:
            raise ValueError(f"tau_schedule {text!r}: only the last entry may omit 'epoch:'")
    ends = [e for e, _ in out if e is not None]
    if ends != sorted(ends) or any(t < 0 for _, t in out):
        raise ValueError(f"tau_schedule {text!r}: epochs must increase and taus be >= 0")
    return out


def tau_at_epoch(schedule, tau, epoch):
    """tau for 1-based ``epoch``.

    Args:
      schedule: a tau schedule (``parse_tau_schedule``); empty for a constant tau.
      tau: the tau after the schedule's last epoch, or throughout when it is empty.
      epoch: the 1-based epoch.

    Returns:
      The int tau.
    """
    for end, value in parse_tau_schedule(schedule):
        if end is None or epoch <= end:
            return value
    return tau


def _check_schedule(text):
    parse_tau_schedule(text)


def _tau_schedule(default):
    return hparam(default, "Per-epoch tau as 'epoch:tau,...,tau' (1-based, tau up to and "
                  "including that epoch); empty: constant --tau.", check=_check_schedule)


def _fat_init(default):
    return hparam(default, "Start of the early-stopped PGD, clamped to [0, 1].",
                  choices=("uniform", "normal", "none"))


def _omega(default):
    return hparam(default, "Std of the Gaussian noise added to every attack step.", minimum=0)


def _beta():
    return hparam(6.0, "Regulariser weight (FAT scripts: 6).", minimum=0)


@dataclasses.dataclass(frozen=True)
class FATHParams(HParams):
    """``fat``: defaults of ``FAT.py``."""
    tau: int = hparam(0, "Early-stop slack tau: extra steps after misclassification "
                      "(used when --tau_schedule is empty).", minimum=0, integer=True)
    tau_schedule: str = _tau_schedule("50:0,90:1,2")
    fat_init: str = _fat_init("uniform")
    omega: float = _omega(0.001)


@dataclasses.dataclass(frozen=True)
class FATTRADESHParams(FATHParams):
    """``fat_trades``: defaults of ``FAT_for_TRADES.py``."""
    tau_schedule: str = _tau_schedule("30:0,50:1,70:2,3")
    fat_init: str = _fat_init("normal")
    omega: float = _omega(0.0)
    beta: float = _beta()


@dataclasses.dataclass(frozen=True)
class FATMARTHParams(FATHParams):
    """``fat_mart``: defaults of ``FAT_for_MART.py``."""
    tau_schedule: str = _tau_schedule("20:0,40:1,60:2,80:3,4")
    fat_init: str = _fat_init("normal")
    omega: float = _omega(0.0)
    beta: float = _beta()


class FAT(AdversarialMethod):
    """Friendly Adversarial Training (FAT; module docstring).

    ``generate`` runs the early-stopped PGD-K-tau with tau following ``tau_schedule``;
    ``training_loss`` is the CE at the early-stopped points.

    Args:
      networks: the classifier (a Keras model from NHWC images in [0, 1] to logits).
      **kwargs: the fields of ``FATHParams`` and the constructor options of
        ``AdversarialMethod`` (``seed``, ``group_forwards``, ...).

    Raises:
      ValueError: an unknown hyperparameter or a value out of range.
    """
    key = "fat"
    term_names = ("loss", "bp")
    HParams = FATHParams
    # L2 (FAT-TRADES and FAT-MART too): the early-stopped loop steps g / ||g||_2 and
    # projects onto the L2 ball; the uniform start is uniform in the L2 ball (clamped), the
    # normal one and omega's per-step N(0, omega^2) noise are unchanged.
    norms = ("Linf", "L2")
    # None: the attack ascends the batch CE; else ``attack_loss(logits_fn, x)`` gives its
    # loss for this batch (FAT-TRADES: TRADES' KL from the clean logits).
    attack_loss = None

    def __init__(self, networks, **kwargs):
        super().__init__(networks, **kwargs)
        self.attack = EarlyStoppedPGD(epsilon=self.epsilon, step_size=self.step_size,
                                      steps=self.steps, loss="ce", tau=self.tau,
                                      norm=self.norm,
                                      start={"uniform": "uniform_clamped",
                                             "normal": "normal_clamped",
                                             "none": "none"}[self.fat_init])
        self.current_tau = keras.Variable(tau_at_epoch(self.tau_schedule, self.tau, 1),
                                          trainable=False, dtype="int32", name="tau")

    def on_epoch_begin(self, epoch):
        """Sets tau for 1-based ``epoch`` (the runner calls it at every epoch start).

        Args:
          epoch: the 1-based epoch about to run.
        """
        self.current_tau.assign(tau_at_epoch(self.tau_schedule, self.tau, epoch))

    def generate(self, x, y, init=None):
        """The early-stopped PGD point of the batch and its step counts.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          init: start points ``{name: images}`` for the inner attacks, or None to draw them.

        Returns:
          ``{'adv': x_adv, 'passes': steps per example, as x's dtype}``.
        """
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        forward = self.forward_eval
        if init is not None:
            start = tf.cast(init["adv"], x.dtype)
        else:
            start = self.start(x, self.attack.start, 0)
        attack = self.attack
        if self.attack_loss is not None:
            attack = dataclasses.replace(attack, loss=self.attack_loss(forward, x))
        step_noise = None
        if self.omega:
            # Drawn up front over the global batch (draw indices 1..K), so replicas agree.
            step_noise = tf.stack([self.noise(x, "normal", 1 + k, self.omega)
                                   for k in range(self.steps)])
        x_adv, details = attack.perturb_details(forward, x, y, x_init=start,
                                                tau=self.current_tau.value,
                                                step_noise=step_noise)
        return {"adv": x_adv, "passes": tf.cast(details["passes"], x.dtype)}

    def _bp(self, generated):
        return batch_mean(generated["passes"])

    def training_loss(self, x, y, generated):
        """The CE at the early-stopped points.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``loss`` and ``bp`` (mean steps per example).
        """
        z_adv = self.forward_train(generated["adv"])
        return {"loss": batch_mean(losses.cross_entropy(z_adv, y)), "bp": self._bp(generated)}


class FATTRADES(FAT):
    """TRADES' loss and attack objective on FAT's early-stopped attack.

    The loss is ``tf_st.methods.trades.trades_loss``; forwards ``f(x)`` then ``f(x_adv)``.
    """
    key = "fat_trades"
    term_names = ("loss", "ce", "reg", "bp")
    HParams = FATTRADESHParams
    attack_loss = staticmethod(losses.kl_from_clean)

    def training_loss(self, x, y, generated):
        """TRADES' loss at the early-stopped points.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``loss``, ``ce``, ``reg``, ``bp`` and ``clean_logits``.
        """
        z_nat, z_adv = self.forward_groups([x, generated["adv"]])
        loss, ce, reg, _ = trades_loss(z_nat, [z_adv], y, self.beta)
        return {"loss": loss, "ce": ce, "reg": reg, "bp": self._bp(generated),
                "clean_logits": z_nat}


class FATMART(FAT):
    """MART's loss on FAT's early-stopped attack (CE, as MART's).

    The loss is ``tf_st.methods.mart.mart_loss``; forwards ``f(x_adv)`` then ``f(x)``.
    """
    key = "fat_mart"
    term_names = ("loss", "bce", "kl", "bp")
    HParams = FATMARTHParams

    def training_loss(self, x, y, generated):
        """MART's loss at the early-stopped points.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``loss``, ``bce``, ``kl``, ``bp`` and ``clean_logits``.
        """
        z_adv, z_nat = self.forward_groups([generated["adv"], x])
        loss, bce, kl = mart_loss(z_nat, [z_adv], y, self.beta)
        return {"loss": loss, "bce": bce, "kl": kl, "bp": self._bp(generated),
                "clean_logits": z_nat}
