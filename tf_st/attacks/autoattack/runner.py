"""AutoAttack (Croce & Hein 2020), ``standard`` version in L-inf and L2, natively in
TensorFlow.

``norm='L2'`` sets every component to its L2 version (``Component.norms``), each pinned
to the official L2 branch (APGD-CE, APGD-T and FAB-T iterate for iterate; Square
iterate for iterate on the official run's own draws); ``epsilon`` is then the L2 radius
(0.5 on CIFAR-10 in RobustBench).

``evaluate(logits_fn, x, y, epsilon=8/255)`` runs APGD-CE (100 iterations), APGD-T
(targeted DLR, 9 targets), FAB-T (9 targets) and Square (5,000 queries), in that order,
each later attack only on the points that are still robust; an example is robust only if
it is clean-correct and every attack fails on re-classification of its output
(docs/reference-implementations.md "AutoAttack / Aggregation").  ``logits_fn`` is
any callable from a [0, 1] NHWC batch to logits: a Keras model, a loaded SavedModel's
endpoint, a ``tf.function``.

Design:

* Presets are immutable: ``STANDARD`` is a tuple of frozen settings objects.  To change
  anything pass ``version='custom', attacks=(APGD(steps=10), Square(steps=100))`` (the
  component specs of ``tf_st.attacks.specs``; each runs at ``evaluate``'s ``epsilon``).
* Components (``tf_st.attacks.specs.Component``) say what they need (targets, restarts)
  and how a stage batch runs; ``evaluate`` is a loop over them: prepare the inputs ->
  clean pass -> for each stage: select the still-robust points, run, record, save the
  state -> report.  Adding a component is one ``Component`` subclass.
* Work is split into *stages* (one per attack, restart and target class).  Each stage
  attacks the still-robust points in fixed-size batches through one ``tf.function`` per
  attack kind and batch size (targets and seeds are tensor arguments), so nothing
  retraces per batch, and the attack loops never return to the host.  A stage's last
  batch is padded only to the next multiple of ``batch_size // 8``, so a handful of
  remaining points does not cost a full batch (at most 8 traced shapes per attack).
* ``seed`` makes a run reproducible (``None``: drawn from the clock and recorded in
  the result).  Each batch gets the stateless seed ``(seed, hash(stage, batch))``.
* ``state_file``: JSON with the robust flags, the finished stages and the points done
  in the current stage, written atomically after every batch (at most every
  ``state_interval`` seconds when that is > 0) and when the run ends, also by SIGTERM or
  SIGINT; it is bound to the model (logits on the first batch), the data (hash of the
  images and labels) and the settings, and a file of another run or an unreadable one is
  refused before any work
  (and at the end).  A restarted run with the same settings skips finished work.
  Adversarial examples found before a restart are not stored in the state file.
* ``jit_compile`` defaults to False, decided by measurement: on CPU (TF 2.21, 2 cores)
  XLA made PGD, APGD-CE and FAB-T on ResNet-18 3-4x slower per iteration
  (``benchmarks/autoattack.py --jit_compile``; figures in ``benchmarks/RESULTS.md``);
  the attack code is XLA-compatible, so try it on GPU.
* AutoAttack's sanity checks are emitted as ``AutoAttackWarning``\\s and kept in
  ``result.warnings``.
* Differences from the official code: Square draws positions/signs per example (the
  official draws are shared by the whole batch, see ``tf_st.attacks.square``);
  FAB's box-constrained L-inf projection is solved in closed form instead of by
  bisection (same minimiser); the random streams differ (TF stateless RNG).
"""

import dataclasses
import sys
import time
import warnings
from typing import Optional

import numpy as np
import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.autoattack import state as st_lib
from tf_st.attacks.autoattack.state import AttackLog
from tf_st.attacks.batches import pad_rows
from tf_st.attacks.checks import check_norm, looks_like_probabilities, radius_text
from tf_st.attacks.specs import COMPONENTS, VERSIONS, components_for

__all__ = ["VERSIONS", "AttackLog", "AutoAttackWarning", "Result", "attacks_for",
           "check_state", "evaluate"]


def attacks_for(version="standard", attacks=None):
    """The attack tuple of a version; ``'custom'`` takes ``attacks`` as given.

    Args:
      version: ``'standard'`` or ``'custom'``.
      attacks: with ``'custom'``, the ``Component`` specs; None otherwise.

    Returns:
      A tuple of ``Component`` specs.

    Raises:
      ValueError: a bad ``version``/``attacks`` pair.
      TypeError: a custom attack is not a ``Component``.
    """
    return components_for(version, attacks, argument="attacks")


class AutoAttackWarning(UserWarning):
    """A sanity check of the evaluation failed (AutoAttack's ``checks.py``)."""


# ----------------------------------------------------------------------------- result


@dataclasses.dataclass
class Result:
    """An AutoAttack evaluation's result (``result.to_json()`` is the JSON report).

    Attributes:
      robust_flags: bool ``[N]``, robust under every attack.
      clean_flags: bool ``[N]``, correctly classified clean.
      clean_accuracy: the clean accuracy, in [0, 1].
      robust_accuracy: the robust accuracy, in [0, 1].
      attacks: per attack an ``AttackLog`` (robust accuracy after it, seconds, counts).
      epsilon: the budget, in [0, 1] units (an L2 radius with ``norm='L2'``).
      seed: the evaluation's seed.
      version: ``'standard'`` or ``'custom'``.
      seconds: the wall-clock time.
      x_adv: ``x`` with the adversarial examples found in this process substituted, or
        None.
      warnings: the sanity checks' warnings.
      model_info: RobustBench fields.
      passes: per-attack counts (``Component.passes_field``, e.g. Square's queries).
      norm: the threat model, ``'Linf'`` or ``'L2'``.
    """
    robust_flags: np.ndarray
    clean_flags: np.ndarray
    clean_accuracy: float
    robust_accuracy: float
    attacks: list
    epsilon: float
    seed: int
    version: str
    seconds: float
    x_adv: Optional[np.ndarray] = None
    warnings: list = dataclasses.field(default_factory=list)
    model_info: dict = dataclasses.field(default_factory=dict)
    passes: dict = dataclasses.field(default_factory=dict)
    norm: str = "Linf"

    def to_json(self):
        """JSON-serialisable report (per-example flags as lists of bools).

        Returns:
          A dict.
        """
        return dict(
            version=self.version, epsilon=self.epsilon, norm=self.norm, seed=self.seed,
            n_examples=int(self.robust_flags.size),
            clean_accuracy=self.clean_accuracy, robust_accuracy=self.robust_accuracy,
            attacks=[dataclasses.asdict(a) for a in self.attacks],
            seconds=self.seconds, warnings=list(self.warnings),
            model_info=dict(self.model_info), passes=dict(self.passes),
            clean_flags=[bool(v) for v in self.clean_flags],
            robust_flags=[bool(v) for v in self.robust_flags])


# ----------------------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True, eq=False)
class _Inputs:
    """What ``evaluate`` and ``check_state`` both derive from their arguments: the
    components at ``epsilon``, numpy ``x`` and int64 ``y``, the batch size and the
    compute dtype (float64 inputs stay float64)."""
    attacks: tuple
    x: np.ndarray
    y: np.ndarray
    batch_size: int
    dtype: tf.DType

    @property
    def n(self):
        return int(self.y.shape[0])

    def batch(self, idx, size=None):
        """The batch of the indices ``idx``, padded to ``size`` (default the batch size)
        by repeating its first point."""
        xb, yb = pad_rows(size or self.batch_size, self.x[idx], self.y[idx], row=0)
        return (tf.constant(np.asarray(xb, self.dtype.as_numpy_dtype)),
                tf.constant(yb.astype(np.int32)))

    def bucket(self, count):
        """Batch size for ``count`` points: ``count`` rounded up to a multiple of
        ``batch_size // 8``, so that a stage's last (or only) small batch does not pay for
        a full batch while each attack still traces at most 8 shapes."""
        grain = max(1, self.batch_size // 8)
        return min(self.batch_size, -(-int(count) // grain) * grain)

    def signature(self, size):
        return (tf.TensorSpec([size, *self.x.shape[1:]], self.dtype),
                tf.TensorSpec([size], tf.int32))

    def clean_fn(self, logits_fn):
        return tf.function(lambda xb: losses.as_float(logits_fn(xb)),
                           input_signature=[self.signature(self.batch_size)[0]])


def _inputs(x, y, epsilon, version, attacks, batch_size, norm="Linf"):
    attacks = components_for(version, attacks, epsilon=float(epsilon), norm=norm,
                             argument="attacks")
    x_np = x.numpy() if isinstance(x, tf.Tensor) else x
    y_np = np.asarray(y.numpy() if isinstance(y, tf.Tensor) else y).astype(np.int64)
    n = int(y_np.shape[0])
    if x_np.shape[0] != n:
        raise ValueError("x and y have different lengths")
    if n == 0:
        raise ValueError("no examples to evaluate")
    dtype = tf.float64 if np.dtype(x_np.dtype) == np.float64 else tf.float32
    return _Inputs(attacks, x_np, y_np, max(1, min(int(batch_size), n)), dtype)


def _fingerprint(inputs, epsilon, seed, probe_logits):
    return st_lib.fingerprint(inputs.n, epsilon, inputs.attacks, seed, inputs.y,
                              inputs.batch_size, x=inputs.x, probe_logits=probe_logits)


def _refuse_foreign(state_file, prev, fp):
    diff = st_lib.fingerprint_difference(prev.get("fingerprint"), fp)
    if diff:
        raise ValueError(f"state file {state_file!r} belongs to another run: its {diff} "
                         "differs from this run's; delete it or pass another --state_file")


def check_state(logits_fn, x, y, *, state_file, epsilon=8 / 255, version="standard",
                attacks=None, seed, batch_size=500, norm="Linf"):
    """Refuses a state file that ``evaluate`` with these arguments would refuse.

    At the cost of one forward pass of the first batch; so a caller that runs other attacks
    first (``export.evaluate``) finds out before them, not hours later.  No state file yet:
    nothing to check.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to logits.
      x: the images ``[N, H, W, C]``, float in [0, 1].
      y: integer labels ``[N]``.
      state_file: the resume file's path.
      epsilon: the budget, in [0, 1] units (an L2 radius with ``norm='L2'``).
      version: ``'standard'`` or ``'custom'``.
      attacks: with ``'custom'``, the ``Component`` specs.
      seed: the evaluation's seed.
      batch_size: the evaluation's batch size.
      norm: the threat model, ``'Linf'`` or ``'L2'``.

    Raises:
      ValueError: naming the file and what differs, or an unreadable file.
    """
    prev = st_lib.StateFile(state_file, 0).load()
    if prev is None:
        return
    inputs = _inputs(x, y, epsilon, version, attacks, batch_size, norm)
    # evaluate's first clean batch, so the probe logits (rounded in the fingerprint) are
    # the ones it will compute.
    first = np.arange(0, inputs.batch_size)
    z = inputs.clean_fn(logits_fn)(inputs.batch(first)[0]).numpy()
    _refuse_foreign(state_file, prev, _fingerprint(inputs, epsilon, int(seed), z))


# ----------------------------------------------------------------------------- the run


def _print_progress(info):
    if info["event"] == "batch":
        print(f"[autoattack] {info['stage']}: batch {info['batch']}/{info['batches']}, "
              f"robust {info['robust']}/{info['n']} ({info['seconds']:.1f}s)",
              file=sys.stderr, flush=True)


class _Run:
    """One evaluation: its inputs and options, where it reports (``log``, ``event``,
    ``warn``), its compiled stage functions and, once the clean pass is done, ``state``
    (``st_lib.RunState``: what it has found, as the state file holds it)."""

    def __init__(self, logits_fn, inputs, seed, *, strategy, jit_compile, checks,
                 progress, log, state_file, state_interval, write_state,
                 return_adversarials, t_start=None):
        self.logits_fn, self.inputs, self.seed = logits_fn, inputs, seed
        self.t_start = time.time() if t_start is None else t_start
        self.elapsed_before = 0.0  # seconds of the processes before a resume
        self.strategy, self.jit_compile, self.checks = strategy, jit_compile, checks
        self.replicas = strategy.num_replicas_in_sync if strategy is not None else 1
        self.progress, self.log, self.warnings = progress, log, []
        self.state_file = st_lib.StateFile(state_file, state_interval, write=write_state)
        self.state = None
        self.fns = {}
        # The built-in components' fields are reported even when they do not run (0).
        self.passes = {c.passes_field: 0 for c in COMPONENTS if c.passes_field}
        self.x_adv = (np.array(inputs.x, dtype=inputs.dtype.as_numpy_dtype, copy=True)
                      if return_adversarials else None)

    def warn(self, msg):
        self.warnings.append(msg)
        warnings.warn(msg, AutoAttackWarning, stacklevel=4)

    def event(self, **info):
        if self.progress:
            self.progress(info)

    def seconds(self):
        """The run's seconds so far, earlier processes' included."""
        return self.elapsed_before + time.time() - self.t_start

    def save(self, force=False):
        self.state.elapsed = self.seconds()
        self.state_file.save(self.state.payload(), force=force)

    def stage_fn(self, attack, size):
        """The compiled stage function of ``attack`` for batches of ``size``."""
        key = (type(attack).__name__ + repr(attack), size)
        if key not in self.fns:
            self.fns[key] = st_lib.make_stage_fn(self.logits_fn, attack, self.jit_compile,
                                                 *self.inputs.signature(size))
        return self.fns[key]


def _check_outputs(z, z2, warn):
    if looks_like_probabilities(z):
        warn("The model outputs look like probabilities (non-negative, rows summing to "
             "1), not logits.  APGD-CE's cross-entropy and the DLR losses assume "
             "logits: pass the pre-softmax outputs, otherwise gradients vanish and the "
             "robust accuracy is overestimated.")
    z, z2 = np.asarray(z, np.float64), np.asarray(z2, np.float64)
    if np.abs(z - z2).max() > 1e-5 * (1.0 + np.abs(z).max()):
        warn("Two forward passes on the same inputs gave different outputs: the model "
             "is randomised (dropout left on, stochastic layers, training-mode "
             "BatchNorm?).  The standard version assumes a deterministic model; "
             "robust accuracy may be overestimated (consider EoT attacks).")


def _clean_pass(run):
    """Clean flags, the first batch's logits (the model's fingerprint) and the number of
    classes; the output checks on the first batch."""
    inputs, bs = run.inputs, run.inputs.batch_size
    clean_fn = inputs.clean_fn(run.logits_fn)
    clean = np.zeros(inputs.n, bool)
    for b0 in range(0, inputs.n, bs):
        idx = np.arange(b0, min(b0 + bs, inputs.n))
        xb, _ = inputs.batch(idx)
        z = clean_fn(xb).numpy()
        if b0 == 0:
            probe_logits = z[: len(idx)]
            if run.checks:
                _check_outputs(z, clean_fn(xb).numpy(), run.warn)
        clean[idx] = z[: len(idx)].argmax(1) == inputs.y[idx]
    clean_acc = float(clean.mean())
    run.log(f"[autoattack] clean accuracy: {clean_acc:.2%}")
    run.event(event="clean", clean_accuracy=clean_acc, n=inputs.n)
    return clean, probe_logits, z.shape[1]


def _target_count(run, n_classes):
    """The number of target classes of the targeted components (their ``targets``, at
    most ``n_classes - 1``); the checks of the model's class count."""
    targeted = [a for a in run.inputs.attacks if a.targeted]
    n_targets = 0
    if targeted:
        wanted = max(a.targets for a in targeted)
        n_targets = min(wanted, n_classes - 1)
        if run.checks and n_targets < wanted:
            run.warn(f"The model has {n_classes} classes, fewer than targets + 1 = "
                     f"{wanted + 1}: targeted attacks use the {n_targets} available targets.")
    if run.checks:
        for message in dict.fromkeys(a.classes_warning(n_classes) for a in run.inputs.attacks):
            if message:
                run.warn(message)
        if n_classes <= 2:
            run.warn("Binary classifiers: DLR-based attacks are ill-defined (they need >= 3 "
                     "classes); results of APGD-T may be meaningless.")
    return n_targets


def _start_state(run, prev, clean, probe_logits, epsilon):
    """The run's state: fresh, or continued from the state file's ``prev`` (refused if
    it belongs to another model, data or settings)."""
    fp = _fingerprint(run.inputs, epsilon, run.seed, probe_logits)
    run.state = st_lib.RunState(fp, clean, float(clean.mean()), clean.copy())
    if prev is not None:
        _refuse_foreign(run.state_file.path, prev, fp)
        run.state.resume(prev)
        run.elapsed_before = run.state.elapsed
        run.log(f"[autoattack] resuming from {run.state_file.path}: "
                f"{len(run.state.finished)} stages finished")


# ----------------------------------------------------------------------------- stages


@dataclasses.dataclass
class _Tally:
    """One attack's totals; a resumed run continues the earlier processes' (points
    attacked and fooled, the component's count, the clock)."""
    start: float
    fooled: int
    attacked: int = 0
    count: int = 0

    def log(self, attack, robust):
        return AttackLog(attack.name, float(robust.mean()), time.time() - self.start,
                         self.attacked, self.fooled)


def _replica_groups(sizes, replicas):
    """Consecutive batch indices, at most ``replicas`` a group, one padded size each."""
    groups = []
    for bi, size in enumerate(sizes):
        if groups and len(groups[-1]) < replicas and sizes[groups[-1][0]] == size:
            groups[-1].append(bi)
        else:
            groups.append([bi])
    return groups


def _run_attack(run, ai, attack, stages):
    """Runs the unfinished ``stages`` of ``attack``, then logs it and its checks."""
    key, logs = st_lib.attack_key(ai, attack), run.state.attack_logs
    if key in logs and all(s.key in run.state.finished for s in stages):
        run.log(f"[autoattack] robust accuracy after {attack.name.upper()}: "
                f"{logs[key].robust_accuracy:.2%} (finished earlier)")
    else:
        before = logs.get(key)
        tally = _Tally(start=time.time() - (before.seconds if before else 0.0),
                       fooled=before.fooled if before else 0,
                       attacked=before.attacked if before else 0,
                       count=run.state.counts.get(key, 0))
        for stage in stages:
            if stage.key not in run.state.finished:
                _run_stage(run, attack, stage, tally)
        logs[key] = tally.log(attack, run.state.robust)
        run.log(f"[autoattack] robust accuracy after {attack.name.upper()}: "
                f"{logs[key].robust_accuracy:.2%} (total time {logs[key].seconds:.1f} s)")
        run.event(event="attack", attack=attack.name,
                  robust_accuracy=logs[key].robust_accuracy, seconds=logs[key].seconds)
    # From the state, so that an attack finished before a restart still warns and counts.
    count = run.state.counts.get(key, 0)
    message = attack.count_warning(count) if run.checks else None
    if message:
        run.warn(message)
    if attack.passes_field:
        run.passes[attack.passes_field] = run.passes.get(attack.passes_field, 0) + count


def _run_stage(run, attack, stage, tally):
    """One stage on the points robust when it started, in batches; up to one batch per
    replica at a time (a stage's batches are independent).  A resumed stage keeps the
    first process's batches (points, padded size, seed) and skips those done, so its
    flags equal an uninterrupted run's."""
    todo = run.state.start_stage(stage)
    bs = run.inputs.batch_size
    batches = [todo[b0:b0 + bs] for b0 in range(0, len(todo), bs)]
    sizes = [run.inputs.bucket(len(idx)) for idx in batches]
    done = run.state.done_in_current
    left = [bi for bi, idx in enumerate(batches) if not done[idx].all()]
    for group in _replica_groups([sizes[bi] for bi in left], run.replicas):
        group = [left[i] for i in group]
        outputs = _run_group(run, attack, stage, [(bi, batches[bi], sizes[bi]) for bi in group])
        for bi, output in zip(group, outputs):
            _record(run, attack, stage, tally, batches[bi], output)
            run.event(event="batch", stage=stage.key, attack=attack.name, batch=bi + 1,
                      batches=len(batches), robust=int(run.state.robust.sum()),
                      n=run.inputs.n, seconds=time.time() - tally.start)
    run.state.finish_stage(stage)


def _run_group(run, attack, stage, group):
    """``group``: ``(batch number, indices, padded size)`` of one size; each batch gets
    its own stateless seed.  Returns each batch's ``(x_adv, fooled, count)``."""
    from tf_st.distribute import run_sharded
    size = group[0][2]
    calls = [(*run.inputs.batch(idx, size),
              tf.constant(st_lib.batch_seed(run.seed, stage.key, bi)),
              tf.constant(stage.target_rank, tf.int32), tf.constant(stage.restart, tf.int32))
             for bi, idx, _ in group]
    return run_sharded(run.strategy, run.stage_fn(attack, size), calls)


def _record(run, attack, stage, tally, idx, output):
    """A batch's outcome: flags, adversarial examples, the attack's log, the state file."""
    x_out, fooled, count = output
    k = len(idx)
    fooled = fooled.numpy()[:k]
    tally.count += int(count.numpy()[:k].sum())
    hit = run.state.record(idx, fooled)
    tally.attacked += k
    tally.fooled += int(fooled.sum())
    if run.x_adv is not None and len(hit):
        run.x_adv[hit] = x_out.numpy()[:k][fooled]
    key = st_lib.attack_key(stage.attack_index, attack)
    run.state.attack_logs[key] = tally.log(attack, run.state.robust)
    run.state.counts[key] = tally.count
    run.save()


# ----------------------------------------------------------------------------- report


def _attack_logs(run):
    """``(component, AttackLog)`` of each attack that has a log, in order."""
    keys = [(a, st_lib.attack_key(ai, a)) for ai, a in enumerate(run.inputs.attacks)]
    return [(a, run.state.attack_logs[k]) for a, k in keys if k in run.state.attack_logs]


def _black_box_check(run, logs):
    """The official check: a black-box last attack (Square) improving on the attacks
    before it by more than 0.2% means gradient masking."""
    if not (run.checks and len(logs) > 1 and logs[-1][0].black_box):
        return
    before = min(log.robust_accuracy for _, log in logs[:-1])
    last = logs[-1][1]
    if last.robust_accuracy < before - 0.002:
        run.warn(f"{last.name.capitalize()} (black-box) decreased the robust accuracy by "
                 f"{before - last.robust_accuracy:.2%} after the white-box attacks: "
                 "this usually means gradient masking; the white-box results are not "
                 "reliable for this model.")


def _model_info(clean_acc, robust_acc, epsilon, dataset, architecture, model_info,
                norm="Linf"):
    """The RobustBench fields (``eps`` as RobustBench writes it: ``'8/255'`` in L-inf,
    ``'0.5'`` in L2; ``threat_model`` ``'Linf'`` or ``'L2'``)."""
    eps = radius_text(epsilon, norm)
    info = dict(clean_acc=round(100 * clean_acc, 2), autoattack_acc=round(100 * robust_acc, 2),
                eps=eps, threat_model=norm)
    if dataset:
        info["dataset"] = dataset
    if architecture:
        info["architecture"] = architecture
    info.update(model_info or {})
    return info


def _report(run, epsilon, version, dataset, architecture, model_info, norm):
    logs = _attack_logs(run)
    _black_box_check(run, logs)
    state = run.state
    robust_acc = float(state.robust.mean())
    run.log(f"[autoattack] robust accuracy: {robust_acc:.2%}")
    return Result(robust_flags=state.robust, clean_flags=state.clean,
                  clean_accuracy=state.clean_accuracy, robust_accuracy=robust_acc,
                  attacks=[log for _, log in logs], epsilon=float(epsilon), seed=run.seed,
                  version=version, seconds=run.seconds(), x_adv=run.x_adv,
                  warnings=run.warnings, passes=dict(run.passes), norm=norm,
                  model_info=_model_info(state.clean_accuracy, robust_acc, epsilon,
                                         dataset, architecture, model_info, norm))


# ----------------------------------------------------------------------------- evaluate


def evaluate(logits_fn, x, y, *, epsilon=8 / 255, version="standard", attacks=None,
             seed=None, batch_size=500, state_file=None, state_interval=0.0,
             progress=None, verbose=True, return_adversarials=True, jit_compile=False,
             checks=True, dataset=None, architecture=None, model_info=None,
             logger=print, strategy=None, norm="Linf"):
    """AutoAttack evaluation of ``logits_fn`` on ``(x, y)``.

    Each attack runs only on the points still robust after the attacks before it; an
    example is robust if no attack fools it.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to logits.
      x: ``[N, H, W, C]`` in [0, 1] (numpy, memmap or tensor; read batch by batch).
      y: ``[N]`` integer labels.
      epsilon: the budget, in [0, 1] units (8/255; with ``norm='L2'`` the L2 radius, e.g.
        0.5).
      version: ``'standard'`` (APGD-CE, APGD-T, FAB-T, Square) or ``'custom'``.
      attacks: with ``'custom'``, the ``Component`` specs to run.
      seed: the evaluation's seed; None draws one from the clock.
      batch_size: the examples per attack batch.
      state_file: a resumable state file (a rerun with the same settings skips finished
        work), or None.
      state_interval: the minimum seconds between state writes.
      progress: callable receiving a dict per event (``event`` in
        ``'clean' | 'batch' | 'attack'``); default prints per batch when ``verbose``.
      verbose: print progress and the summary.
      return_adversarials: keep ``x_adv`` in the result.
      jit_compile: XLA-compile the stage functions.
      checks: run AutoAttack's sanity checks (warnings in the result).
      dataset: the dataset name, for ``model_info``.
      architecture: the architecture name, for ``model_info``.
      model_info: further RobustBench fields.
      logger: prints the summary lines (None to silence).
      strategy: a ``tf.distribute`` strategy whose replicas attack different batches of a
        stage at the same time (each batch whole, with its own seed: the per-example
        results are those of one device).  Several workers (MultiWorkerMirroredStrategy)
        each call this with the same arguments and all return the whole result
        (``tf_st.distribute.run_sharded``).
      norm: the threat model, ``'Linf'`` or ``'L2'``: every component runs in it (one
        without it is refused, naming it); recorded in the result and ``model_info``.

    Returns:
      A :class:`Result`.

    Raises:
      ValueError: bad settings, or a state file that is unreadable or belongs to another
        model, data or settings.
    """
    from tf_st.distribute import worker_index
    t_start = time.time()
    norm = check_norm(norm)
    # Every component attacks at this evaluation's epsilon, in its norm.
    inputs = _inputs(x, y, epsilon, version, attacks, batch_size, norm)
    seed = int(time.time() * 1000) % (2**31) if seed is None else int(seed)
    if progress is None and verbose:
        progress = _print_progress
    log = logger if (logger is not None and verbose) else (lambda *a, **k: None)
    # With several workers all read the state file (a shared file system) and only the
    # chief writes it, so a resumed evaluation resumes at the same point on every worker.
    run = _Run(logits_fn, inputs, seed, strategy=strategy, jit_compile=jit_compile,
               checks=checks, progress=progress, log=log, state_file=state_file,
               state_interval=state_interval, write_state=worker_index(strategy) == 0,
               return_adversarials=return_adversarials, t_start=t_start)
    prev = run.state_file.load()  # a corrupt file is refused before any work
    clean, probe_logits, n_classes = _clean_pass(run)
    stages = st_lib.stages(inputs.attacks, _target_count(run, n_classes))
    _start_state(run, prev, clean, probe_logits, epsilon)
    stop = st_lib.save_on_signals()
    try:
        for ai, attack in enumerate(inputs.attacks):
            _run_attack(run, ai, attack, [s for s in stages if s.attack_index == ai])
    finally:
        run.save(force=True)
        st_lib.restore_signals(stop)
    return _report(run, epsilon, version, dataset, architecture, model_info, norm)
