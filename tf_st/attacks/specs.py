"""One vocabulary for every attack: a frozen spec per attack, the same field names,
``perturb`` for training and ``run`` for evaluation, and ``parse`` for names.

Fields (where they apply): ``epsilon`` (the budget, [0, 1] units), ``step_size``,
``steps`` (iterations; Square's queries), ``restarts``, ``loss``, ``start`` (see
``tf_st.attacks.starts``), and attack-specific extras (``rho``, ``targets``, ...).
``norm`` (``'Linf'``, the default, or ``'L2'``: the threat model; ``epsilon`` and
``step_size`` are then L2 lengths, which may exceed 1).
A spec validates itself at construction (one range check, ``checks``); every built-in
attack has L-inf and L2, and a user component without the asked norm refuses it by name.

* ``spec.perturb(logits_fn, x, y, seed=None, x_init=None) -> x_adv``: graph-safe, no
  re-classification; what training methods call (they pass their own ``x_init``: a spec's
  ``start``/``init_std`` are evaluation-only, the start drawn when no ``x_init`` is given).
* ``spec.perturb_details(...) -> (x_adv, details)``: the same with what the attack reports
  on the way (``EarlyStoppedPGD``: ``passes``; ``EveryIteratePGD``: ``fooled_any``).
* ``spec.run(logits_fn, x, y, seed=None) -> AttackResult(x_adv, fooled, details)``:
  ``x_adv`` projected onto the eps-ball and [0, 1], ``fooled[i]`` iff ``x_adv[i]`` is
  misclassified (or, for ``EveryIteratePGD``, iff any iterate was: RST's rule).
* ``seed`` (everywhere): None, an int ``n`` (= the pair ``(n, 0)``) or a pair of ints
  (``as_seed``).  AutoAttack components' ``perturb`` also take ``target_rank=`` (the
  class rank to aim at; targeted components only, default 2).
* PGD comes as three specs: ``PGD`` (plain), ``EarlyStoppedPGD`` (FAT's PGD-K-tau) and
  ``EveryIteratePGD`` (RST's evaluation rule); ``PGD(tau=...)`` and
  ``PGD(every_iterate=True)`` still build and delegate to the latter two.
* ``AutoAttack`` orchestrates its components over a whole dataset (later attacks only on
  still-robust points), so it is not a per-batch attack: ``batched = False`` and
  ``spec.evaluate(logits_fn, x, y, ...)`` runs it (``tf_st.attacks.autoattack``).
* ``parse("pgd20", epsilon=..., step_size=...)``: the names of ``ATTACK_NAMES``
  (``describe_names()`` for messages): ``clean``, ``fgsm``, ``pgd<N>``,
  ``cw<N>``, ``pgd_rst`` (semisup-adv's PGD_Ours: 40 steps of 0.01, 5 restarts, robust
  only if correct at every iterate), ``aa``, and ``apgd-ce``, ``apgd-t``, ``fab-t``,
  ``square`` at their AutoAttack settings.
"""

import dataclasses
import inspect
import re
from typing import Any, Callable, Optional, Tuple, Union

import tensorflow as tf

from tf_st.attacks import losses, starts
from tf_st.attacks.apgd import apgd, target_by_rank
from tf_st.attacks.checks import check_budget, check_norm
from tf_st.attacks.fab import fab_targeted
from tf_st.attacks.pgd import early_stopped_pgd, fgsm, pgd, project
from tf_st.attacks.square import square_l2, square_linf

LOSSES = {"ce": losses.cross_entropy, "cw": losses.cw_margin}


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """What ``spec.run`` returns for one batch.

    Attributes:
      x_adv: the adversarial images, NHWC float in [0, 1], within ``epsilon`` of ``x``.
      fooled: bool ``[B]``, True where the attack succeeded.
      details: what the attack reports besides (``passes``, ``fooled_any``, ...).
    """
    x_adv: Any
    fooled: Any
    details: dict = dataclasses.field(default_factory=dict)


def _check_int(name, value, low):
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def as_seed(seed):
    """The one seed type of every spec's ``perturb``/``run``.

    Args:
      seed: ``None`` (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of ints
        (a tuple, list, array or shape-[2] integer tensor).

    Returns:
      ``None`` or an int64 ``[2]`` tensor (stateless draws).

    Raises:
      TypeError: ``seed`` is not integer.
      ValueError: ``seed`` is neither a scalar nor a pair.
    """
    if seed is None:
        return None
    s = tf.convert_to_tensor(seed, dtype_hint=tf.int64)
    if not s.dtype.is_integer:
        raise TypeError(f"a seed is an int or a pair of ints, got {seed!r}")
    s = tf.cast(s, tf.int64)
    if s.shape.rank == 0:
        return tf.stack([s, tf.zeros([], tf.int64)])
    if s.shape.rank == 1 and s.shape[0] == 2:
        return s
    raise ValueError(f"a seed is an int or a pair of ints, got shape {s.shape}")


def _misclassified(logits_fn, x_adv, y):
    pred = tf.argmax(logits_fn(x_adv), axis=1, output_type=tf.int32)
    return tf.not_equal(pred, tf.cast(y, tf.int32))


class _Attack:
    """Shared behaviour of the per-batch specs (frozen dataclasses below)."""
    batched = True

    def __post_init__(self):
        if hasattr(self, "norm"):
            object.__setattr__(self, "norm", check_norm(self.norm))
            supported = getattr(self, "norms", ("Linf", "L2"))
            if self.norm not in supported:
                raise ValueError(
                    f"{self.name} has no {self.norm} version (only "
                    f"{', '.join(supported)}); every built-in attack has both L-inf and L2")
        norm = getattr(self, "norm", "Linf")
        check_budget("epsilon", self.epsilon, norm)
        if hasattr(self, "step_size"):
            check_budget("step_size", self.step_size, norm)
        if hasattr(self, "steps"):
            _check_int("steps", self.steps, 0)
        if hasattr(self, "restarts"):
            _check_int("restarts", self.restarts, 1)

    def perturb(self, logits_fn, x, y, *, seed=None, x_init=None):
        raise NotImplementedError

    def perturb_details(self, logits_fn, x, y, *, seed=None, x_init=None):
        """``perturb`` plus what the attack reports on the way.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: the start point (``[B, H, W, C]``, inside the eps-ball); None draws the
            spec's evaluation start.

        Returns:
          ``(x_adv, details)``: ``perturb``'s point and a dict (``{}`` unless the spec says
          otherwise).
        """
        return self.perturb(logits_fn, x, y, seed=seed, x_init=x_init), {}

    def run(self, logits_fn, x, y, seed=None):
        """Evaluates the attack on one batch.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.

        Returns:
          ``AttackResult(x_adv, fooled, details)``: ``x_adv`` projected onto the eps-ball around
          ``x`` and [0, 1]; ``fooled[i]`` (bool ``[B]``) iff ``x_adv[i]`` is misclassified.
        """
        x = tf.convert_to_tensor(x)
        x_adv = project(self.perturb(logits_fn, x, y, seed=as_seed(seed)), x, self.epsilon,
                        getattr(self, "norm", "Linf"))
        return AttackResult(x_adv, _misclassified(logits_fn, x_adv, y))


@dataclasses.dataclass(frozen=True)
class Clean(_Attack):
    """No perturbation: ``fooled`` = misclassified clean (``seed`` and ``x_init`` unused).

    Args:
      epsilon: unused (0): a clean evaluation perturbs nothing.
    """
    epsilon: float = 0.0
    name = "clean"

    def perturb(self, logits_fn, x, y, *, seed=None, x_init=None):
        """Returns ``x`` unchanged.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: unused.

        Returns:
          ``x`` as a tensor.
        """
        return tf.convert_to_tensor(x)

    def run(self, logits_fn, x, y, seed=None):
        """Classifies ``x`` itself.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.

        Returns:
          ``AttackResult(x, misclassified)``.
        """
        x = tf.convert_to_tensor(x)
        return AttackResult(x, _misclassified(logits_fn, x, y))


@dataclasses.dataclass(frozen=True)
class FGSM(_Attack):
    """One signed-gradient step of size ``epsilon`` from ``x`` itself.

    ST-AT and CAT evaluate FGSM so; deterministic: ``seed`` and ``x_init`` are unused.

    Args:
      epsilon: budget and step, in [0, 1] units (8/255).
      loss: ``'ce'``, ``'cw'`` or a callable ``(logits, y) -> per-example loss``.
      norm: ``'Linf'`` (a sign step) or ``'L2'`` (the fast gradient method's
        ``eps * g / ||g||_2``).

    Raises:
      ValueError: ``epsilon`` out of range for ``norm`` or an unknown ``loss``/``norm``.
    """
    epsilon: float = 8 / 255
    loss: Union[str, Callable] = "ce"
    norm: str = "Linf"
    name = "fgsm"

    def perturb(self, logits_fn, x, y, *, seed=None, x_init=None):
        """The FGSM point of ``x``.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: unused.

        Returns:
          ``x_adv``, shaped and typed as ``x``, within ``epsilon`` of ``x`` in the spec's ``norm``.
        """
        return fgsm(logits_fn, x, y, self.epsilon, loss_fn=_loss(self.loss), norm=self.norm)


def _loss(loss):
    if callable(loss):
        return loss
    try:
        return LOSSES[loss]
    except KeyError:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)} or pass a "
                         "callable(logits, y) -> per-example loss") from None


class _PGDFamily(_Attack):
    """What the three PGD specs share (their fields are declared on each): the checks,
    the name, the evaluation-only random start and ``run``'s restarts."""

    def __post_init__(self):
        super().__post_init__()
        if self.start not in starts.STARTS:
            raise ValueError(f"unknown start {self.start!r}; choose one of {starts.STARTS}")
        _loss(self.loss)

    @property
    def name(self):
        """The attack's name: ``pgd<steps>``, or ``cw<steps>`` with ``loss='cw'``."""
        base = "cw" if self.loss == "cw" else "pgd"
        return f"{base}{self.steps}"

    def _start(self, x, seed):
        """The evaluation start (``start``, ``init_std``): used only when no ``x_init``
        is passed; training methods always pass their own."""
        return starts.random_start(x, self.start, epsilon=self.epsilon, std=self.init_std,
                                   seed=as_seed(seed), norm=self.norm)

    def _single(self, logits_fn, x, y, seed, x_init, **extras):
        raise NotImplementedError

    def _fooled_along_the_way(self, details):
        """Examples fooled at some point other than the returned iterate (RST's rule)."""
        return None

    def perturb(self, logits_fn, x, y, *, seed=None, x_init=None):
        """The attack's point of ``x`` (graph-safe, no re-classification): what training calls.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: the start point (``[B, H, W, C]``, inside the eps-ball); None draws the
            spec's evaluation start.

        Returns:
          ``x_adv``, shaped and typed as ``x``, within ``epsilon`` of ``x`` in the spec's ``norm``.
        """
        return self.perturb_details(logits_fn, x, y, seed=seed, x_init=x_init)[0]

    def perturb_details(self, logits_fn, x, y, *, seed=None, x_init=None):
        """``perturb`` plus what the attack reports on the way.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: the start point (``[B, H, W, C]``, inside the eps-ball); None draws the
            spec's evaluation start.

        Returns:
          ``(x_adv, details)``; ``details`` holds ``passes`` (``EarlyStoppedPGD``) or
          ``fooled_any`` (``EveryIteratePGD``), else nothing.
        """
        return self._single(logits_fn, tf.convert_to_tensor(x), y, as_seed(seed), x_init)

    def run(self, logits_fn, x, y, seed=None):
        """Evaluates the attack on one batch, with ``restarts`` random starts.

        Each restart runs from the evaluation start (restart ``r`` of seed ``(a, b)`` draws with
        ``(a, 7919 b + r)``; one restart uses the seed itself); an example's result is its first
        fooling restart's (else the last restart's); ``details`` are the last restart's.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.

        Returns:
          ``AttackResult(x_adv, fooled, details)``: ``x_adv`` projected onto the eps-ball around
          ``x`` and [0, 1]; ``fooled[i]`` (bool ``[B]``) iff ``x_adv[i]`` is misclassified (or,
          for ``EveryIteratePGD``, any iterate was).
        """
        x = tf.convert_to_tensor(x)
        seed = as_seed(seed)
        best, fooled, details = None, None, {}
        for r in range(self.restarts):
            seed_r = None if seed is None else tf.stack([seed[0], seed[1] * 7919 + r])
            if self.restarts == 1:
                seed_r = seed
            x_adv, details = self._single(logits_fn, x, y, seed_r, None)
            x_adv = project(x_adv, x, self.epsilon, self.norm)
            hit = _misclassified(logits_fn, x_adv, y)
            along = self._fooled_along_the_way(details)
            if along is not None:
                hit = hit | along
            if best is None:
                best, fooled = x_adv, hit
            else:
                keep = tf.reshape(fooled, [-1] + [1] * (len(x.shape) - 1))
                best = tf.where(keep, best, x_adv)
                fooled = fooled | hit
        return AttackResult(best, fooled, details)


@dataclasses.dataclass(frozen=True)
class EarlyStoppedPGD(_PGDFamily):
    """FAT's early-stopped PGD-K-tau (``tf_st.attacks.pgd.early_stopped_pgd``).

    An example stops at the first iterate misclassified after ``tau`` earlier misclassified
    ones; ``details['passes']``: the gradient steps each example took.

    ``perturb``/``perturb_details``/``run`` as every spec; ``perturb`` and
    ``perturb_details`` also take ``tau=`` (overrides the field: an int or an int32
    tensor, e.g. FAT's per-epoch schedule in a variable) and ``step_noise=``
    (``[steps, *x.shape]``, added to each step: FAT's ``omega``).

    Args:
      epsilon: L-inf budget in [0, 1] units.
      step_size: step in [0, 1] units.
      steps: maximum number of steps K.
      tau: misclassified iterates tolerated before stopping.
      restarts: random starts of ``run``.
      loss: ``'ce'``, ``'cw'`` or a callable ``(logits, y) -> per-example loss``.
      start: evaluation start (``tf_st.attacks.starts.STARTS``), used only when no
        ``x_init`` is passed.
      init_std: scale of a Gaussian evaluation start.
      norm: ``'Linf'`` (sign steps) or ``'L2'`` (normalised-gradient steps, the L2 ball).

    Raises:
      ValueError: a setting out of range, an unknown ``start``, ``loss`` or ``norm``.
    """
    epsilon: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    tau: int = 0
    restarts: int = 1
    loss: Union[str, Callable] = "ce"
    start: str = "uniform_clamped"
    init_std: float = 0.001
    norm: str = "Linf"

    def __post_init__(self):
        super().__post_init__()
        _check_int("tau", self.tau, 0)

    def _single(self, logits_fn, x, y, seed, x_init, tau=None, step_noise=None):
        x0 = self._start(x, seed) if x_init is None else x_init
        x_adv, passes = early_stopped_pgd(
            logits_fn, x, y, epsilon=self.epsilon, step_size=self.step_size,
            steps=self.steps, tau=self.tau if tau is None else tau,
            loss_fn=_loss(self.loss), x_init=x0, step_noise=step_noise, norm=self.norm)
        return x_adv, {"passes": passes}

    def perturb(self, logits_fn, x, y, *, seed=None, x_init=None, tau=None, step_noise=None):
        """The early-stopped PGD point of ``x``.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: the start point (``[B, H, W, C]``, inside the eps-ball); None draws the
            spec's evaluation start.
          tau: overrides the field (an int or int32 tensor); None keeps it.
          step_noise: ``[steps, *x.shape]`` noise added to each step, or None.

        Returns:
          ``x_adv``, shaped and typed as ``x``, within ``epsilon`` of ``x`` in the spec's ``norm``.
        """
        return self.perturb_details(logits_fn, x, y, seed=seed, x_init=x_init, tau=tau,
                                    step_noise=step_noise)[0]

    def perturb_details(self, logits_fn, x, y, *, seed=None, x_init=None, tau=None,
                        step_noise=None):
        """The early-stopped PGD point of ``x`` and each example's number of steps.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: the start point (``[B, H, W, C]``, inside the eps-ball); None draws the
            spec's evaluation start.
          tau: overrides the field (an int or int32 tensor); None keeps it.
          step_noise: ``[steps, *x.shape]`` noise added to each step, or None.

        Returns:
          ``(x_adv, {"passes": int32 [B]})``.
        """
        return self._single(logits_fn, tf.convert_to_tensor(x), y, as_seed(seed), x_init,
                            tau=tau, step_noise=step_noise)


# semisup-adv attack_evaluation.py "PGD_Ours": 40 steps of 0.01, 5 restarts (the
# ``pgd_rst`` attack; its epsilon and norm are the evaluation's).
PGD_RST_SETTINGS = dict(epsilon=0.031, step_size=0.01, steps=40, restarts=5)


@dataclasses.dataclass(frozen=True)
class EveryIteratePGD(_PGDFamily):
    """PGD scored by RST's rule (semisup-adv ``attack_pgd.py``).

    ``run`` counts an example as fooled if any iterate after a step, of any restart, was
    misclassified (``details['fooled_any']``); with ``every_iterate_from_start`` the random
    start counts too (stricter than semisup-adv).  ``perturb`` returns the last iterate, as
    PGD's.  ``every_iterate`` is always True (read by code that asks any spec).

    Args:
      epsilon: L-inf budget in [0, 1] units.
      step_size: step in [0, 1] units.
      steps: number of steps.
      restarts: random starts of ``run``.
      loss: ``'ce'``, ``'cw'`` or a callable ``(logits, y) -> per-example loss``.
      start: evaluation start (``tf_st.attacks.starts.STARTS``), used only when no
        ``x_init`` is passed.
      init_std: scale of a Gaussian evaluation start.
      targeted: descend the loss toward ``y`` instead of ascending.
      every_iterate_from_start: the start counts as an iterate too.
      unroll: the steps as a Python loop instead of ``tf.while_loop``.
      norm: ``'Linf'`` (sign steps) or ``'L2'`` (normalised-gradient steps, the L2 ball).

    Raises:
      ValueError: a setting out of range, an unknown ``start``, ``loss`` or ``norm``.
    """
    epsilon: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 20
    restarts: int = 1
    loss: Union[str, Callable] = "ce"
    start: str = "uniform"
    init_std: float = 0.001
    targeted: bool = False
    every_iterate_from_start: bool = False
    unroll: bool = False
    norm: str = "Linf"
    every_iterate = True  # a class constant, not a field

    @property
    def name(self):
        """``pgd_rst`` with semisup-adv's settings (``parse('pgd_rst')``), else
        ``pgd<steps>_every_iterate`` (``cw...`` with ``loss='cw'``): never plain
        ``pgd<steps>``, which names a different attack in the same report."""
        rst = EveryIteratePGD(**PGD_RST_SETTINGS)
        # The radius, norm, start and loop form are not part of the name.
        unnamed = ("epsilon", "norm", "start", "init_std", "unroll")
        if dataclasses.replace(self, **{f: getattr(rst, f) for f in unnamed}) == rst:
            return "pgd_rst"
        return f"{super().name}_every_iterate"

    def _single(self, logits_fn, x, y, seed, x_init):
        x0 = self._start(x, seed) if x_init is None else x_init
        x_adv, fooled_any = pgd(
            logits_fn, x, y, epsilon=self.epsilon, step_size=self.step_size,
            steps=self.steps, loss_fn=_loss(self.loss), x_init=x0, targeted=self.targeted,
            track_iterates=True, track_start=self.every_iterate_from_start,
            unroll=self.unroll, norm=self.norm)
        return x_adv, {"fooled_any": fooled_any}

    def _fooled_along_the_way(self, details):
        return details["fooled_any"]


@dataclasses.dataclass(frozen=True)
class PGD(_PGDFamily):
    """Projected sign-gradient ascent (``tf_st.attacks.pgd.pgd``); L2 with ``norm='L2'``.

    ``loss='cw'`` is the literature's "CW-inf"; ``targeted`` descends.  ``start``/``init_std``
    are evaluation-only: the start drawn when no ``x_init`` is passed (training methods
    always pass their own).  ``unroll``: the steps as a Python loop (a logits function
    with collectives under MirroredStrategy: tf.while_loop allows none); the same numbers.

    Kept for the public API: ``PGD(..., tau=k)`` delegates every call to
    ``EarlyStoppedPGD`` (FAT's early stop; ``perturb_early_stopped`` is its old entry) and
    ``PGD(..., every_iterate=True)`` to ``EveryIteratePGD`` (RST's rule); new code should
    build those specs (``as_spec()`` gives the one this denotes).

    Args:
      epsilon: L-inf budget in [0, 1] units (8/255).
      step_size: step in [0, 1] units (2/255).
      steps: number of steps.
      restarts: random starts of ``run``.
      loss: ``'ce'``, ``'cw'`` or a callable ``(logits, y) -> per-example loss``.
      start: evaluation start (``tf_st.attacks.starts.STARTS``).
      init_std: scale of a Gaussian evaluation start.
      targeted: descend the loss toward ``y`` instead of ascending.
      tau: FAT's early-stop tolerance (delegates to ``EarlyStoppedPGD``); None for none.
      every_iterate: score by RST's any-iterate rule (delegates to ``EveryIteratePGD``).
      every_iterate_from_start: with ``every_iterate``, the start counts too.
      unroll: the steps as a Python loop instead of ``tf.while_loop``.
      norm: ``'Linf'`` (sign steps, the L-inf ball) or ``'L2'`` (steps ``step_size * g /
        ||g||_2``, the L2 ball of radius ``epsilon`` then [0, 1]; the uniform starts are
        uniform in the L2 ball).

    Raises:
      ValueError: a setting out of range, an unknown ``start``, ``loss`` or ``norm``, ``tau`` with
        ``every_iterate``/``targeted``/``unroll``, or ``every_iterate_from_start`` without
        ``every_iterate``.

    Example:
      >>> import tensorflow as tf
      >>> from tf_st.attacks import PGD
      >>> model = tf.keras.Sequential([tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)])
      >>> x = tf.random.uniform([4, 32, 32, 3])
      >>> y = tf.constant([0, 1, 2, 3])
      >>> spec = PGD(epsilon=8 / 255, step_size=2 / 255, steps=10)
      >>> result = spec.run(model, x, y, seed=0)
      >>> bool(tf.reduce_max(tf.abs(result.x_adv - x)) <= 8 / 255 + 1e-6)
      True
      >>> result.fooled.shape
      TensorShape([4])
    """
    epsilon: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 20
    restarts: int = 1
    loss: Union[str, Callable] = "ce"
    start: str = "uniform"
    init_std: float = 0.001
    targeted: bool = False
    tau: Optional[int] = None
    every_iterate: bool = False
    every_iterate_from_start: bool = False
    unroll: bool = False
    norm: str = "Linf"

    def __post_init__(self):
        super().__post_init__()
        if self.tau is not None:
            _check_int("tau", self.tau, 0)
            if self.every_iterate or self.targeted or self.unroll:
                raise ValueError("tau (FAT's early stop: EarlyStoppedPGD) takes no "
                                 "every_iterate, targeted or unroll")
        if self.every_iterate_from_start and not self.every_iterate:
            raise ValueError("every_iterate_from_start needs every_iterate=True")

    def as_spec(self):
        """The one-algorithm spec this denotes.

        Returns:
          ``EarlyStoppedPGD`` (``tau`` set), ``EveryIteratePGD`` (``every_iterate``) or this
          plain PGD.
        """
        common = dict(epsilon=self.epsilon, step_size=self.step_size, steps=self.steps,
                      restarts=self.restarts, loss=self.loss, start=self.start,
                      init_std=self.init_std, norm=self.norm)
        if self.tau is not None:
            return EarlyStoppedPGD(tau=self.tau, **common)
        if self.every_iterate:
            return EveryIteratePGD(targeted=self.targeted, unroll=self.unroll,
                                   every_iterate_from_start=self.every_iterate_from_start,
                                   **common)
        return self

    def _single(self, logits_fn, x, y, seed, x_init, **extras):
        spec = self.as_spec()
        if spec is not self:
            return spec._single(logits_fn, x, y, seed, x_init, **extras)
        x0 = self._start(x, seed) if x_init is None else x_init
        return pgd(logits_fn, x, y, epsilon=self.epsilon, step_size=self.step_size,
                   steps=self.steps, loss_fn=_loss(self.loss), x_init=x0,
                   targeted=self.targeted, unroll=self.unroll, norm=self.norm), {}

    def _fooled_along_the_way(self, details):
        return details["fooled_any"] if self.every_iterate else None

    def perturb_early_stopped(self, logits_fn, x, y, *, x_init, tau, step_noise=None):
        """The old form of ``EarlyStoppedPGD.perturb_details`` (``tau`` set).

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          x_init: the start point.
          tau: the per-call tolerance (an int or int32 tensor).
          step_noise: ``[steps, *x.shape]`` noise added to each step, or None.

        Returns:
          ``(x_adv, passes)``: the point and each example's number of steps (int32 ``[B]``).

        Raises:
          ValueError: this spec has no ``tau``.
        """
        if self.tau is None:
            raise ValueError("perturb_early_stopped needs a PGD spec with tau set")
        x_adv, details = self.as_spec().perturb_details(logits_fn, x, y, x_init=x_init,
                                                        tau=tau, step_noise=step_noise)
        return x_adv, details["passes"]


# ------------------------------------------------------------- AutoAttack components


# Every AutoAttack component's ``perturb`` takes ``target_rank=``: the ``k``-th highest
# class to aim at (targeted components: APGDT, FABT; default 2, the runner-up; AutoAttack
# runs ranks 2 .. targets + 1 through ``stage``); untargeted ones accept only None.
def _target_rank(target_rank, rank):
    if rank is not None:
        if target_rank is not None:
            raise ValueError("pass target_rank only (rank= is its old name)")
        target_rank = rank
    return 2 if target_rank is None else target_rank


def _untargeted(spec, target_rank):
    if target_rank is not None:
        raise ValueError(f"{spec.name} is untargeted: it takes no target_rank")


def _no_x_init(spec, x_init):
    if x_init is not None:
        raise ValueError(f"{spec.name} takes no x_init (it draws its own start)")


_ZERO_GRAD_WARNING = (
    "{count} attacked points had an all-zero gradient at the APGD start: gradient masking "
    "(e.g. saturated softmax, non-differentiable preprocessing) may make white-box attacks "
    "fail; the robust accuracy may be overestimated.")


class Component(_Attack):
    """An AutoAttack component: what it needs and how it runs on the still-robust points.

    ``tf_st.attacks.autoattack`` runs each as *stages*, one per target rank and restart,
    each on the points still robust when it starts.  Adding a component is one subclass
    (a frozen dataclass with ``epsilon``, ``steps``, ``restarts``) defining ``name`` and
    ``stage``; ``AutoAttack(version='custom', components=...)`` then runs it.

    * ``targeted`` / ``targets``: its stages go through the target ranks 2 .. targets + 1
      (``target_ranks``; 0: one untargeted rank), ``restarts`` stages per rank.
    * ``stage(logits_fn, x, y, seed, rank, restart) -> (x_adv, count [B] float32)``: one
      batch of one stage, graph-safe (``seed``, ``rank``, ``restart`` are tensors);
      ``count`` is a per-example tally (APGD: all-zero gradient at the start; Square:
      queries; zeros by default).
    * ``count_warning(total)``: the sanity warning (or None) for an attack's total count
      in one run; ``passes_field``: the ``Result.passes`` entry its counts add up to.
    * ``classes_warning(n_classes)``: a warning (or None) about the model's class count;
      ``black_box``: the official "black-box beats white-box" check compares it against
      the attacks before it.
    * ``norms``: the threat models it implements; with more than L-inf a ``norm`` field
      selects one (``AutoAttack(norm=...)`` sets it on every component).
    """
    targeted = False
    targets = 0
    passes_field = None
    black_box = False
    norms = ("Linf",)  # the threat models it implements (a ``norm`` field picks one)

    def target_ranks(self, n_targets):
        """The target ranks of this component's stages.

        Args:
          n_targets: number of target classes (``targets``).

        Returns:
          ``range(2, n_targets + 2)`` for a targeted component, ``[0]`` (untargeted) otherwise.
        """
        return range(2, n_targets + 2) if self.targeted else [0]

    def stage(self, logits_fn, x, y, seed, rank, restart):
        """One batch of one AutoAttack stage (graph-safe); subclasses define it.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to logits.
          x: the still-robust images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: int64 ``[2]`` tensor for stateless draws.
          rank: the target rank (0 for untargeted components).
          restart: the restart index.

        Returns:
          ``(x_adv, count)``: the attacked images and a per-example float32 ``[B]`` tally.

        Raises:
          NotImplementedError: the subclass does not define it.
        """
        raise NotImplementedError

    def count_warning(self, total):
        """The sanity warning for an attack's total count in one run.

        Args:
          total: the sum of the stages' counts.

        Returns:
          The warning text, or None (the default: no warning).
        """
        return None

    def classes_warning(self, n_classes):
        """A warning about the model's class count.

        Args:
          n_classes: the number of logits.

        Returns:
          The warning text, or None (the default: no warning).
        """
        return None

    def perturb(self, logits_fn, x, y, *, seed=None, x_init=None):
        """One untargeted stage from a fresh start.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: unused by the base class.

        Returns:
          ``x_adv``, shaped and typed as ``x``, within ``epsilon`` of ``x`` in the spec's ``norm``.
        """
        return self.stage(logits_fn, x, y, as_seed(seed), 0, 0)[0]


def _no_count(x):
    return tf.zeros([tf.shape(x)[0]], tf.float32)


@dataclasses.dataclass(frozen=True)
class APGD(Component):
    """APGD with cross-entropy (``loss='ce'``) or untargeted DLR (``loss='dlr'``).

    Args:
      epsilon: L-inf budget in [0, 1] units.
      steps: iterations per restart.
      restarts: stages per run.
      rho: the step-size reduction threshold of the official code.
      loss: ``'ce'`` or ``'dlr'``.
      norm: ``'Linf'`` or ``'L2'`` (the official L2 branch; ``epsilon`` the L2 radius).

    Raises:
      ValueError: a setting out of range.
    """
    epsilon: float = 8 / 255
    steps: int = 100
    restarts: int = 1
    rho: float = 0.75
    loss: str = "ce"
    norm: str = "Linf"
    norms = ("Linf", "L2")

    @property
    def name(self):
        """``apgd-ce`` or ``apgd-<loss>``."""
        return "apgd-ce" if self.loss == "ce" else f"apgd-{self.loss}"

    def stage(self, logits_fn, x, y, seed, rank, restart):
        """One AutoAttack stage batch.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to logits.
          x: images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: int64 ``[2]`` tensor for stateless draws.
          rank: unused (untargeted).
          restart: unused (the seed differs per restart).

        Returns:
          ``(x_adv, zero-gradient-at-start [B] float32)``.
        """
        x_adv, _, det = apgd(logits_fn, x, y, epsilon=losses.as_dtype(self.epsilon, x.dtype),
                             n_iter=self.steps, loss=self.loss, rho=self.rho, seed=seed,
                             return_details=True, norm=self.norm)
        return x_adv, tf.cast(det["zero_grad_start"], tf.float32)

    def count_warning(self, total):
        """Warns about points with an all-zero gradient at the start (gradient masking).

        Args:
          total: the number of such points in the run.

        Returns:
          The warning text, or None when ``total`` is 0.
        """
        return _ZERO_GRAD_WARNING.format(count=total) if total else None

    def perturb(self, logits_fn, x, y, *, seed=None, x_init=None, target_rank=None):
        """The APGD point of ``x``.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: the start point; None draws APGD's own.
          target_rank: must be None (untargeted).

        Returns:
          ``x_adv``, shaped and typed as ``x``, within ``epsilon`` of ``x`` in the spec's ``norm``.

        Raises:
          ValueError: ``target_rank`` is given.
        """
        _untargeted(self, target_rank)
        return apgd(logits_fn, x, y, epsilon=self.epsilon, n_iter=self.steps, loss=self.loss,
                    rho=self.rho, seed=as_seed(seed), x_init=x_init, norm=self.norm)[0]


@dataclasses.dataclass(frozen=True)
class APGDT(Component):
    """APGD-T: targeted DLR toward the 2nd .. (targets+1)-th highest class.

    Args:
      epsilon: L-inf budget in [0, 1] units.
      steps: iterations per restart.
      restarts: stages per target rank.
      targets: number of target classes.
      rho: the step-size reduction threshold of the official code.
      norm: ``'Linf'`` or ``'L2'`` (the official L2 branch; ``epsilon`` the L2 radius).

    Raises:
      ValueError: a setting out of range.
    """
    epsilon: float = 8 / 255
    steps: int = 100
    restarts: int = 1
    targets: int = 9
    rho: float = 0.75
    norm: str = "Linf"
    name = "apgd-t"
    targeted = True
    norms = ("Linf", "L2")

    def stage(self, logits_fn, x, y, seed, rank, restart):
        """One AutoAttack stage batch toward the ``rank``-th highest class.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to logits.
          x: images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: int64 ``[2]`` tensor for stateless draws.
          rank: the target rank (2: the runner-up).
          restart: unused (the seed differs per restart).

        Returns:
          ``(x_adv, zero-gradient-at-start [B] float32)``.
        """
        y_t = target_by_rank(logits_fn(x), rank)
        x_adv, _, det = apgd(logits_fn, x, y, epsilon=losses.as_dtype(self.epsilon, x.dtype),
                             n_iter=self.steps, loss="dlr-targeted", y_target=y_t,
                             rho=self.rho, seed=seed, return_details=True, norm=self.norm)
        return x_adv, tf.cast(det["zero_grad_start"], tf.float32)

    def count_warning(self, total):
        """Warns about points with an all-zero gradient at the start (gradient masking).

        Args:
          total: the number of such points in the run.

        Returns:
          The warning text, or None when ``total`` is 0.
        """
        return _ZERO_GRAD_WARNING.format(count=total) if total else None

    def classes_warning(self, n_classes):
        """The targeted DLR loss needs at least 4 classes.

        Args:
          n_classes: the number of logits.

        Returns:
          The warning text for fewer than 4 classes, else None.
        """
        if n_classes < 4:
            return ("The targeted DLR loss needs at least 4 classes (it uses the 3rd and "
                    "4th largest logits); with fewer the smallest logit is used instead.")
        return None

    def perturb(self, logits_fn, x, y, *, seed=None, x_init=None, target_rank=None,
                rank=None):
        """The APGD-T point of ``x`` toward the ``target_rank``-th highest class.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: the start point; None draws APGD's own.
          target_rank: the class rank to aim at (2: the runner-up); None for 2.
          rank: the old name of ``target_rank`` (pass one of them).

        Returns:
          ``x_adv``, shaped and typed as ``x``, within ``epsilon`` of ``x`` in the spec's ``norm``.

        Raises:
          ValueError: both ``target_rank`` and ``rank`` are given.
        """
        rank = _target_rank(target_rank, rank)
        if x_init is None:
            return self.stage(logits_fn, x, y, as_seed(seed), rank, 0)[0]
        y_t = target_by_rank(logits_fn(x), rank)
        return apgd(logits_fn, x, y, epsilon=losses.as_dtype(self.epsilon, x.dtype),
                    n_iter=self.steps, loss="dlr-targeted", y_target=y_t, rho=self.rho,
                    seed=as_seed(seed), x_init=x_init, norm=self.norm)[0]


@dataclasses.dataclass(frozen=True)
class FABT(Component):
    """FAB-T: targeted FAB toward the 2nd .. (targets+1)-th highest class.

    Restarts after the first start at a random point.

    Args:
      epsilon: the budget in ``norm``, in [0, 1] units.
      steps: iterations per restart.
      restarts: stages per target rank.
      targets: number of target classes.
      alpha_max: FAB's maximum step bias toward the original point.
      eta: FAB's extrapolation factor.
      beta: FAB's backward step factor.
      norm: ``'Linf'`` or ``'L2'`` (``epsilon`` is then an L2 radius).

    Raises:
      ValueError: a setting out of range, or an unknown ``norm``.
    """
    epsilon: float = 8 / 255
    steps: int = 100
    restarts: int = 1
    targets: int = 9
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    norm: str = "Linf"
    name = "fab-t"
    targeted = True
    norms = ("Linf", "L2")

    def stage(self, logits_fn, x, y, seed, rank, restart):
        """One AutoAttack stage batch toward the ``rank``-th highest class.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to logits.
          x: images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: int64 ``[2]`` tensor for the random start.
          rank: the target rank (2: the runner-up).
          restart: restarts after the first start at a random point.

        Returns:
          ``(x_adv, zeros [B] float32)``.
        """
        x_adv, _ = fab_targeted(logits_fn, x, y, epsilon=losses.as_dtype(self.epsilon, x.dtype),
                                target_rank=rank, n_iter=self.steps, alpha_max=self.alpha_max,
                                eta=self.eta, beta=self.beta, random_start=restart > 0,
                                seed=seed, norm=self.norm)
        return x_adv, _no_count(x)

    def perturb(self, logits_fn, x, y, *, seed=None, x_init=None, target_rank=None,
                rank=None):
        """The FAB-T point of ``x`` toward the ``target_rank``-th highest class.

        FAB starts from ``x`` itself, so ``x_init`` is refused.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: must be None.
          target_rank: the class rank to aim at (2: the runner-up); None for 2.
          rank: the old name of ``target_rank`` (pass one of them).

        Returns:
          ``x_adv``, shaped and typed as ``x``, within ``epsilon`` of ``x`` in the spec's ``norm``.

        Raises:
          ValueError: ``x_init`` is given, or both ``target_rank`` and ``rank``.
        """
        _no_x_init(self, x_init)
        return self.stage(logits_fn, x, y, as_seed(seed), _target_rank(target_rank, rank),
                          0)[0]


@dataclasses.dataclass(frozen=True)
class Square(Component):
    """Square attack, margin loss, ``resc_schedule=False``; ``steps`` = queries.

    Args:
      epsilon: the budget in ``norm``, in [0, 1] units.
      steps: number of queries.
      restarts: stages per run.
      p_init: initial fraction of pixels a square covers.
      norm: ``'Linf'`` or ``'L2'`` (``epsilon`` is then an L2 radius).

    Raises:
      ValueError: a setting out of range, or an unknown ``norm``.
    """
    epsilon: float = 8 / 255
    steps: int = 5000
    restarts: int = 1
    p_init: float = 0.8
    norm: str = "Linf"
    name = "square"
    passes_field = "square_queries"
    black_box = True
    norms = ("Linf", "L2")

    def stage(self, logits_fn, x, y, seed, rank, restart):
        """One AutoAttack stage batch.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to logits.
          x: images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: int64 ``[2]`` tensor for stateless draws.
          rank: unused (untargeted).
          restart: unused (the seed differs per restart).

        Returns:
          ``(x_adv, queries [B] float32)``.
        """
        square = square_l2 if self.norm == "L2" else square_linf
        x_adv, _, det = square(logits_fn, x, y, epsilon=losses.as_dtype(self.epsilon, x.dtype),
                               n_queries=self.steps, p_init=self.p_init, seed=seed,
                               return_details=True)
        return x_adv, tf.cast(det["queries"], tf.float32)

    def perturb(self, logits_fn, x, y, *, seed=None, x_init=None, target_rank=None):
        """The Square attack's point of ``x``.

        Square draws its own start (vertical stripes), so ``x_init`` is refused.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to ``[B, classes]`` logits.
          x: clean images ``[B, H, W, C]``, float in [0, 1].
          y: integer labels ``[B]``.
          seed: None (stateful draws), an int ``n`` (the pair ``(n, 0)``) or a pair of
            ints (stateless draws); see ``as_seed``.
          x_init: must be None.
          target_rank: must be None (untargeted).

        Returns:
          ``x_adv``, shaped and typed as ``x``, within ``epsilon`` of ``x`` in the spec's ``norm``.

        Raises:
          ValueError: ``x_init`` or ``target_rank`` is given.
        """
        _untargeted(self, target_rank)
        _no_x_init(self, x_init)
        return self.stage(logits_fn, x, y, as_seed(seed), 0, 0)[0]

COMPONENTS = (APGD, APGDT, FABT, Square)  # the built-in ones; any Component subclass runs
STANDARD: Tuple = (APGD(), APGDT(), FABT(), Square())
VERSIONS = {"standard": STANDARD}


def components_for(version="standard", components=None, *, epsilon=None, norm=None,
                   argument="components"):
    """The components of an AutoAttack ``version``.

    Args:
      version: ``'standard'`` or ``'custom'``.
      components: with ``'custom'``, the ``Component`` instances to run; None otherwise.
      epsilon: when given, every component is set to it.
      norm: when given (``'Linf'`` or ``'L2'``), every component is set to it; components
        without that threat model (``Component.norms``) are refused, all named at once.
      argument: the caller's keyword for ``components``, named in the messages.

    Returns:
      A tuple of ``Component`` specs.

    Raises:
      ValueError: ``'custom'`` without components, components with another version, an
        unknown version, or components without ``norm``.
      TypeError: a custom component is not a ``Component``.
    """
    if version == "custom":
        if not components:
            raise ValueError(f"version='custom' needs a non-empty `{argument}` sequence")
        components = tuple(components)
        for a in components:
            if not isinstance(a, Component):
                raise TypeError(f"unknown AutoAttack component {a!r}")
    elif components is not None:
        raise ValueError(f"`{argument}` is only accepted with version='custom'")
    elif version not in VERSIONS:
        raise ValueError(f"unknown version {version!r}; expected one of "
                         f"{sorted(VERSIONS) + ['custom']}")
    else:
        components = VERSIONS[version]
    if norm is not None:
        norm = check_norm(norm)
        missing = [a.name for a in components if norm not in getattr(a, "norms", ("Linf",))]
        if missing:
            have = [a.name for a in STANDARD if norm in a.norms]
            raise ValueError(
                f"AutoAttack {version!r} in {norm} needs {', '.join(missing)} in {norm}, "
                f"which tf_st does not implement yet (in {norm}: {', '.join(have)}); run "
                f"version='custom' with the components that have {norm}, e.g. "
                f"components=[APGD(norm={norm!r}), APGDT(norm={norm!r})] (not the "
                "standard suite's result)")
    if epsilon is None and norm is None:
        return components
    out = []
    for a in components:
        changes = {} if epsilon is None else {"epsilon": epsilon}
        if norm is not None and any(f.name == "norm" for f in dataclasses.fields(a)):
            changes["norm"] = norm
        out.append(dataclasses.replace(a, **changes))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class AutoAttack:
    """AutoAttack at ``epsilon`` over a whole dataset.

    ``standard`` runs APGD-CE, APGD-T, FAB-T and Square; ``version='custom'`` takes
    ``components``.  Each component gets this ``epsilon`` and ``norm`` (``standard`` runs
    in L-inf and in L2; a custom component without the norm is refused by name).  Later
    attacks run only on the
    points still robust, so this is not a per-batch spec (``batched = False``): call
    ``evaluate``.

    Args:
      epsilon: the budget in [0, 1] units (8/255; an L2 radius with ``norm='L2'``).
      version: ``'standard'`` or ``'custom'``.
      components: with ``'custom'``, the ``Component`` specs to run.
      norm: the threat model, ``'Linf'`` or ``'L2'``.

    Raises:
      ValueError: ``epsilon`` out of range for ``norm``, a bad ``version``/``components``
        pair, or components without ``norm``.
      TypeError: a custom component is not a ``Component``.

    Example:
      >>> from tf_st.attacks import APGD, AutoAttack
      >>> AutoAttack(epsilon=8 / 255).components[0].name
      'apgd-ce'
      >>> fast = AutoAttack(epsilon=8 / 255, version="custom", components=[APGD(steps=10)])
      >>> # report = fast.evaluate(model, x_test, y_test, batch_size=500)
    """
    epsilon: float = 8 / 255
    version: str = "standard"
    components: Optional[Tuple] = None
    norm: str = "Linf"
    name = "aa"
    batched = False

    def __post_init__(self):
        object.__setattr__(self, "norm", check_norm(self.norm))
        check_budget("epsilon", self.epsilon, self.norm)
        object.__setattr__(self, "components", components_for(
            self.version, self.components, epsilon=self.epsilon, norm=self.norm))

    def evaluate(self, logits_fn, x, y, **options):
        """Runs ``tf_st.attacks.autoattack.evaluate`` with this spec's settings.

        Args:
          logits_fn: function from NHWC float images in [0, 1] to logits.
          x: the images ``[N, H, W, C]``, float in [0, 1].
          y: integer labels ``[N]``.
          **options: further keywords of ``tf_st.attacks.autoattack.evaluate`` (batch size,
            seed, state file, ...).

        Returns:
          What ``tf_st.attacks.autoattack.evaluate`` returns.
        """
        from tf_st.attacks import autoattack  # its runner imports these specs
        return autoattack.evaluate(logits_fn, x, y, epsilon=self.epsilon, norm=self.norm,
                                   **self._version_arguments(), **options)

    def _version_arguments(self):
        """``version`` and ``attacks`` for ``tf_st.attacks.autoattack``: a named version
        (``standard``) is passed by name, so that results and reports say which suite ran
        (the components are the same: ``components_for`` of that version at this
        epsilon); only ``custom`` passes its component list."""
        if self.version == "custom":
            return {"version": "custom", "attacks": self.components}
        return {"version": self.version, "attacks": None}

    def check_state(self, logits_fn, x, y, *, state_file, seed, batch_size):
        """Refuses now a ``state_file`` that ``evaluate`` would refuse.

        (Another model, data or settings: ``tf_st.attacks.autoattack.check_state``.)

        Args:
          logits_fn: function from NHWC float images in [0, 1] to logits.
          x: the images ``[N, H, W, C]``, float in [0, 1].
          y: integer labels ``[N]``.
          state_file: the resume file ``evaluate`` would use.
          seed: the evaluation's seed.
          batch_size: the evaluation's batch size.
        """
        from tf_st.attacks import autoattack
        autoattack.check_state(logits_fn, x, y, state_file=state_file, epsilon=self.epsilon,
                               norm=self.norm, **self._version_arguments(), seed=seed,
                               batch_size=batch_size)


# The attack-name registry behind ``parse``, its error message and every command line's
# help and validators.  ``register_attack(name, factory)``: ``factory(epsilon, step_size)``
# returns the spec; a name ending in ``<N>`` takes a positive step count,
# ``factory(epsilon, step_size, n)``; a factory with a ``norm`` keyword builds the spec
# in that threat model (one without is L-inf only).  Names are listed in registration
# order.
_ATTACKS = {}
_NAME_EXAMPLES = {}


def register_attack(name, factory, *, examples=None):
    """Registers an attack name for ``parse``, its messages and the command lines' help.

    Args:
      name: the name; one ending in ``<N>`` takes a positive step count.
      factory: ``factory(epsilon, step_size)`` (``factory(epsilon, step_size, n)`` for a
        ``<N>`` name) returning the spec; with a ``norm`` keyword it also builds L2 specs
        (``parse(..., norm='L2')``), else it is L-inf only.
      examples: text such as ``"pgd20, pgd100"`` shown by ``describe_names(examples=True)``.

    Raises:
      ValueError: ``name`` is already registered.
    """
    if name in _ATTACKS:
        raise ValueError(f"attack name {name!r} is already registered")
    _ATTACKS[name] = factory
    if examples:
        _NAME_EXAMPLES[name] = examples


register_attack("clean", lambda epsilon, step_size, norm="Linf": Clean())
register_attack("fgsm", lambda epsilon, step_size, norm="Linf": FGSM(epsilon=epsilon,
                                                                     norm=norm))
register_attack("pgd<N>", lambda epsilon, step_size, n, norm="Linf": PGD(
    epsilon=epsilon, step_size=step_size, steps=n, loss="ce", norm=norm),
    examples="pgd20, pgd100")
register_attack("cw<N>", lambda epsilon, step_size, n, norm="Linf": PGD(
    epsilon=epsilon, step_size=step_size, steps=n, loss="cw", norm=norm), examples="cw100")
register_attack("pgd_rst", lambda epsilon, step_size, norm="Linf": EveryIteratePGD(
    **{**PGD_RST_SETTINGS, "epsilon": epsilon, "norm": norm}))
register_attack("aa", lambda epsilon, step_size, norm="Linf": AutoAttack(epsilon=epsilon,
                                                                         norm=norm))
# The AutoAttack components alone, each with the standard suite's settings.
for _component in STANDARD:
    register_attack(_component.name,
                    lambda epsilon, step_size, norm="Linf", cls=type(_component): cls(
                        epsilon=epsilon, norm=norm))


def attack_names():
    """The registered names (``<N>``: a positive number of steps).

    Returns:
      A tuple of names, in registration order.
    """
    return tuple(_ATTACKS)


ATTACK_NAMES = attack_names()  # the built-in names (a snapshot; attack_names() is live)


def describe_names(examples=False):
    """The registered names as one phrase, for messages and help.

    ``'clean, fgsm, pgd<N>, cw<N>, pgd_rst, aa, apgd-ce, apgd-t, fab-t or square'``.

    Args:
      examples: append the registered examples: ``pgd<N> (e.g. pgd20, pgd100)``, ...

    Returns:
      The phrase.
    """
    names = [f"{n} (e.g. {_NAME_EXAMPLES[n]})" if examples and n in _NAME_EXAMPLES else n
             for n in attack_names()]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _build(name, factory, args, norm):
    """``factory(*args)`` in ``norm`` (passed only to factories that take it)."""
    if "norm" in inspect.signature(factory).parameters:
        return factory(*args, norm=norm)
    if norm != "Linf":
        raise ValueError(f"attack {name!r} has no {norm} version (its registered factory "
                         "takes no norm)")
    return factory(*args)


def parse(name, *, epsilon=8 / 255, step_size=2 / 255, norm="Linf"):
    """The spec an attack name denotes (see the module docstring).

    Args:
      name: one of ``ATTACK_NAMES``, a ``<N>`` name with its count (``pgd20``, ``cw100``);
        surrounding whitespace is ignored.
      epsilon: the budget in [0, 1] units (8/255; an L2 radius with ``norm='L2'``).
      step_size: step in [0, 1] units for the names that take one (``pgd<N>``, ``cw<N>``).
      norm: the threat model, ``'Linf'`` or ``'L2'``.

    Returns:
      A frozen spec (``PGD``, ``FGSM``, ``AutoAttack``, ...).

    Raises:
      ValueError: an unknown name (the message lists the known ones), settings the spec
        refuses (e.g. ``epsilon=8`` in L-inf), or an attack without an L2 version.

    Example:
      >>> from tf_st.attacks import parse
      >>> spec = parse("pgd20", epsilon=8 / 255, step_size=2 / 255)
      >>> spec.steps, spec.name
      (20, 'pgd20')
      >>> parse("aa").name
      'aa'
    """
    name = name.strip()
    norm = check_norm(norm)
    if name in _ATTACKS and not name.endswith("<N>"):
        return _build(name, _ATTACKS[name], (epsilon, step_size), norm)
    m = re.fullmatch(r"([a-z_-]+?)(\d+)", name)
    if m and f"{m.group(1)}<N>" in _ATTACKS and int(m.group(2)) > 0:
        return _build(name, _ATTACKS[f"{m.group(1)}<N>"],
                      (epsilon, step_size, int(m.group(2))), norm)
    raise ValueError(f"unknown attack {name!r}: use {describe_names(examples=True)}")
