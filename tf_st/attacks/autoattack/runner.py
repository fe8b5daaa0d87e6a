"""AutoAttack (Croce & Hein 2020), ``standard`` version for L-inf, natively in TensorFlow.

``evaluate(logits_fn, x, y, epsilon=8/255)`` runs APGD-CE (100 iterations), APGD-T
(targeted DLR, 9 targets), FAB-T (9 targets) and Square (5,000 queries), in that order,
each later attack only on the points that are still robust; an example is robust only if
it is clean-correct and every attack fails on re-classification of its output
(reference-implementations.md §5).  ``logits_fn`` is any callable from a [0, 1] NHWC
batch to logits: a Keras model, a loaded SavedModel's endpoint, a ``tf.function``.

Design:

* Presets are immutable: ``STANDARD`` is a tuple of frozen settings objects.  To change
  anything pass ``version='custom', attacks=(APGD(steps=10), Square(steps=100))`` (the
  component specs of ``tf_st.attacks.specs``; each runs at ``evaluate``'s ``epsilon``).
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
from tf_st.attacks.specs import COMPONENTS, STANDARD

VERSIONS = {"standard": STANDARD}


def attacks_for(version="standard", attacks=None):
    """The attack tuple of a version; ``'custom'`` takes ``attacks`` as given."""
    if version == "custom":
        if not attacks:
            raise ValueError("version='custom' needs a non-empty `attacks` sequence")
        attacks = tuple(attacks)
        for a in attacks:
            if not isinstance(a, COMPONENTS):
                raise TypeError(f"unknown attack settings {a!r}")
        return attacks
    if attacks is not None:
        raise ValueError("`attacks` is only accepted with version='custom'")
    if version not in VERSIONS:
        raise ValueError(f"unknown version {version!r}; expected one of "
                         f"{sorted(VERSIONS) + ['custom']}")
    return VERSIONS[version]


class AutoAttackWarning(UserWarning):
    """A sanity check of the evaluation failed (AutoAttack's ``checks.py``)."""


# ----------------------------------------------------------------------------- result


@dataclasses.dataclass
class AttackLog:
    name: str
    robust_accuracy: float
    seconds: float
    attacked: int = 0
    fooled: int = 0


@dataclasses.dataclass
class Result:
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

    def to_json(self):
        """JSON-serialisable report (per-example flags as lists of bools)."""
        return dict(
            version=self.version, epsilon=self.epsilon, norm="Linf", seed=self.seed,
            n_examples=int(self.robust_flags.size),
            clean_accuracy=self.clean_accuracy, robust_accuracy=self.robust_accuracy,
            attacks=[dataclasses.asdict(a) for a in self.attacks],
            seconds=self.seconds, warnings=list(self.warnings),
            model_info=dict(self.model_info), passes=dict(self.passes),
            clean_flags=[bool(v) for v in self.clean_flags],
            robust_flags=[bool(v) for v in self.robust_flags])


# ----------------------------------------------------------------------------- checks


def _warn(msg, collected):
    collected.append(msg)
    warnings.warn(msg, AutoAttackWarning, stacklevel=3)


def _check_outputs(logits, logits2, collected):
    z = np.asarray(logits, np.float64)
    if z.min() >= 0.0 and z.max() <= 1.0 and np.allclose(z.sum(-1), 1.0, atol=1e-4):
        _warn("The model outputs look like probabilities (non-negative, rows summing to "
              "1), not logits.  APGD-CE's cross-entropy and the DLR losses assume "
              "logits: pass the pre-softmax outputs, otherwise gradients vanish and the "
              "robust accuracy is overestimated.", collected)
    z2 = np.asarray(logits2, np.float64)
    if np.abs(z - z2).max() > 1e-5 * (1.0 + np.abs(z).max()):
        _warn("Two forward passes on the same inputs gave different outputs: the model "
              "is randomised (dropout left on, stochastic layers, training-mode "
              "BatchNorm?).  The standard version assumes a deterministic model; "
              "robust accuracy may be overestimated (consider EoT attacks).", collected)


# ----------------------------------------------------------------------------- evaluate


def _print_progress(info):
    if info["event"] == "batch":
        print(f"[autoattack] {info['stage']}: batch {info['batch']}/{info['batches']}, "
              f"robust {info['robust']}/{info['n']} ({info['seconds']:.1f}s)",
              file=sys.stderr, flush=True)


def _refuse_foreign(state_file, prev, fp):
    diff = st_lib.fingerprint_difference(prev.get("fingerprint"), fp)
    if diff:
        raise ValueError(f"state file {state_file!r} belongs to another run: its {diff} "
                         "differs from this run's; delete it or pass another --state_file")


def _inputs(x, y, epsilon, version, attacks, batch_size):
    """What ``evaluate`` and ``check_state`` both derive from their arguments: the
    components at ``epsilon``, numpy ``x`` and int64 ``y``, ``n``, the batch size and
    the compute dtype (float64 inputs stay float64)."""
    attacks = tuple(dataclasses.replace(a, epsilon=float(epsilon))
                    for a in attacks_for(version, attacks))
    x_np = x.numpy() if isinstance(x, tf.Tensor) else x
    y_np = np.asarray(y.numpy() if isinstance(y, tf.Tensor) else y).astype(np.int64)
    n = int(y_np.shape[0])
    if x_np.shape[0] != n:
        raise ValueError("x and y have different lengths")
    if n == 0:
        raise ValueError("no examples to evaluate")
    dtype = tf.float64 if np.dtype(x_np.dtype) == np.float64 else tf.float32
    return attacks, x_np, y_np, n, max(1, min(int(batch_size), n)), dtype


def _replica_groups(sizes, replicas):
    """Consecutive batch indices, at most ``replicas`` a group, one padded size each."""
    groups = []
    for bi, size in enumerate(sizes):
        if groups and len(groups[-1]) < replicas and sizes[groups[-1][0]] == size:
            groups[-1].append(bi)
        else:
            groups.append([bi])
    return groups


def _batch_of(x_np, y_np, idx, size, dtype):
    """Batch of ``size`` for the indices ``idx`` (padded by repeating the first)."""
    pad = size - len(idx)
    full = np.concatenate([idx, np.full(pad, idx[0], idx.dtype)]) if pad else idx
    xb = np.asarray(x_np[full], dtype.as_numpy_dtype)
    return tf.constant(xb), tf.constant(y_np[full].astype(np.int32))


def _clean_fn(logits_fn, x_np, bs, dtype):
    return tf.function(lambda xb: losses.as_float(logits_fn(xb)),
                       input_signature=[tf.TensorSpec([bs, *x_np.shape[1:]], dtype)])


def check_state(logits_fn, x, y, *, state_file, epsilon=8 / 255, version="standard",
                attacks=None, seed, batch_size=500):
    """Refuses (``ValueError`` naming the file and what differs) a state file that
    ``evaluate`` with these arguments would refuse, at the cost of one forward pass of
    the first batch; so a caller that runs other attacks first (``export.evaluate``)
    finds out before them, not hours later.  No state file yet: nothing to check."""
    prev = st_lib.StateFile(state_file, 0).load()
    if prev is None:
        return
    attacks, x_np, y_np, n, bs, dtype = _inputs(x, y, epsilon, version, attacks, batch_size)
    # evaluate's first clean batch, so the probe logits (rounded in the fingerprint) are
    # the ones it will compute.
    first = np.arange(0, min(bs, n))
    xb, _ = _batch_of(x_np, y_np, first, bs, dtype)
    z = _clean_fn(logits_fn, x_np, bs, dtype)(xb).numpy()
    fp = st_lib.fingerprint(n, epsilon, attacks, int(seed), y_np, bs, x=x_np,
                            probe_logits=z[: len(first)])
    _refuse_foreign(state_file, prev, fp)


def evaluate(logits_fn, x, y, *, epsilon=8 / 255, version="standard", attacks=None,
             seed=None, batch_size=500, state_file=None, state_interval=0.0,
             progress=None, verbose=True, return_adversarials=True, jit_compile=False,
             checks=True, dataset=None, architecture=None, model_info=None,
             logger=print, strategy=None):
    """AutoAttack evaluation of ``logits_fn`` on ``(x, y)``.

    ``x``: ``[N, H, W, C]`` in [0, 1] (numpy, memmap or tensor; read batch by batch);
    ``y``: ``[N]`` integer labels.  ``progress``: callable receiving a dict per event
    (``event`` in ``'clean' | 'batch' | 'attack'``); default prints per batch when
    ``verbose``.  ``logger``: prints the summary lines (None to silence).

    Returns a :class:`Result`: ``robust_flags`` (one bool per example),
    ``clean_flags``, ``clean_accuracy``, ``robust_accuracy``, ``attacks`` (per attack:
    robust accuracy after it and seconds), ``x_adv`` (``x`` with the adversarial
    examples found in this process substituted; None if not ``return_adversarials``),
    ``warnings`` and ``model_info`` (RobustBench fields).  ``result.to_json()`` is the
    JSON report.

    ``strategy``: a ``tf.distribute`` strategy whose replicas attack different batches
    of a stage at the same time (each batch whole, with its own seed: the per-example
    results are those of one device).  Several workers (MultiWorkerMirroredStrategy)
    each call this with the same arguments and all return the whole result
    (``tf_st.distribute.run_sharded``).
    """
    from tf_st.distribute import run_sharded, worker_index
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    t_start = time.time()
    # Every component attacks at this evaluation's epsilon.
    attacks, x_np, y_np, n, bs, dtype = _inputs(x, y, epsilon, version, attacks, batch_size)
    if seed is None:
        seed = int(time.time() * 1000) % (2**31)
    seed = int(seed)
    if progress is None and verbose:
        progress = _print_progress
    log = logger if (logger is not None and verbose) else (lambda *a, **k: None)
    collected = []

    def bucket(count):
        """Batch size for ``count`` points: ``count`` rounded up to a multiple of
        ``bs // 8``, so that a stage's last (or only) small batch does not pay for ``bs``
        examples while each attack still traces at most 8 shapes."""
        grain = max(1, bs // 8)
        return min(bs, -(-int(count) // grain) * grain)

    def spec(size):
        return (tf.TensorSpec([size, *x_np.shape[1:]], dtype), tf.TensorSpec([size], tf.int32))

    def batch_of(idx, size=bs):
        return _batch_of(x_np, y_np, idx, size, dtype)

    # A corrupt state file is refused before any work, naming the file.  With several
    # workers all read it (a shared file system) and only the chief writes it, so a
    # resumed evaluation resumes at the same point on every worker.
    state = st_lib.StateFile(state_file, state_interval,
                             write=worker_index(strategy) == 0)
    prev = state.load()

    # ---- clean pass
    clean_fn = _clean_fn(logits_fn, x_np, bs, dtype)
    clean = np.zeros(n, bool)
    n_classes = None
    probe_logits = None
    for b0 in range(0, n, bs):
        idx = np.arange(b0, min(b0 + bs, n))
        xb, yb = batch_of(idx)
        z = clean_fn(xb).numpy()
        n_classes = z.shape[1]
        if b0 == 0:
            probe_logits = z[: len(idx)]
            if checks:
                _check_outputs(z, clean_fn(xb).numpy(), collected)
        clean[idx] = z[: len(idx)].argmax(1) == y_np[idx]
    clean_acc = float(clean.mean()) if n else 0.0
    log(f"[autoattack] clean accuracy: {clean_acc:.2%}")
    if progress:
        progress(dict(event="clean", clean_accuracy=clean_acc, n=n))

    needs_targets = any(a.targeted for a in attacks)
    n_targets = 0
    if needs_targets:
        wanted = max(a.targets for a in attacks if a.targeted)
        n_targets = min(wanted, n_classes - 1)
        if checks and n_targets < wanted:
            _warn(f"The model has {n_classes} classes, fewer than targets + 1 = "
                  f"{wanted + 1}: targeted attacks use the {n_targets} available targets.",
                  collected)
        if checks and any(a.name == "apgd-t" for a in attacks) and n_classes < 4:
            _warn("The targeted DLR loss needs at least 4 classes (it uses the 3rd and "
                  "4th largest logits); with fewer the smallest logit is used instead.",
                  collected)
    if checks and n_classes is not None and n_classes <= 2:
        _warn("Binary classifiers: DLR-based attacks are ill-defined (they need >= 3 "
              "classes); results of APGD-T may be meaningless.", collected)

    # ---- state
    fp = st_lib.fingerprint(n, epsilon, attacks, seed, y_np, bs, x=x_np,
                            probe_logits=probe_logits)
    robust = clean.copy()
    finished, attack_logs = [], {}
    current, done_in_current = None, np.zeros(n, bool)
    if prev is not None:
        _refuse_foreign(state_file, prev, fp)
        robust = st_lib.flags_arr(prev["robust_flags"])
        finished = list(prev["finished"])
        attack_logs = {k: AttackLog(**v) for k, v in prev.get("attack_logs", {}).items()}
        if prev.get("current"):
            current = prev["current"]
            done_in_current = st_lib.flags_arr(prev["done_in_current"])
        log(f"[autoattack] resuming from {state_file}: {len(finished)} stages finished")

    def payload():
        return dict(fingerprint=fp, robust_flags=st_lib.flags_str(robust),
                    clean_flags=st_lib.flags_str(clean), clean_accuracy=clean_acc,
                    finished=finished, current=current,
                    done_in_current=st_lib.flags_str(done_in_current),
                    attack_logs={k: dataclasses.asdict(v) for k, v in attack_logs.items()})

    x_adv_all = None
    if return_adversarials:
        x_adv_all = np.array(x_np, dtype=dtype.as_numpy_dtype, copy=True)

    fns = {}
    zero_grad = 0
    queries = 0
    stages = st_lib.stages(attacks, n_targets)
    passes = {}
    stop = st_lib.save_on_signals()
    try:
        for ai, a in enumerate(attacks):
            key = f"{ai}:{a.name}"
            if key in attack_logs and all(s.key in finished for s in stages
                                         if s.attack_index == ai):
                log(f"[autoattack] robust accuracy after {a.name.upper()}: "
                    f"{attack_logs[key].robust_accuracy:.2%} (finished earlier)")
                continue
            t_att = time.time() - (attack_logs[key].seconds if key in attack_logs else 0.0)
            attacked = 0
            fooled_total = attack_logs[key].fooled if key in attack_logs else 0
            fn_key = type(a).__name__ + repr(a)
            for st in (s for s in stages if s.attack_index == ai):
                if st.key in finished:
                    continue
                if current != st.key:
                    current, done_in_current = st.key, np.zeros(n, bool)
                todo = np.nonzero(robust & ~done_in_current)[0]
                n_batches = -(-len(todo) // bs)
                # Up to one batch per replica at a time: a stage's batches are
                # independent (its points were fixed when it started).
                batches = [todo[bi * bs:(bi + 1) * bs] for bi in range(n_batches)]
                sizes = [bucket(len(idx)) for idx in batches]
                for group in _replica_groups(sizes, replicas):
                    calls = []
                    for bi in group:
                        idx, size = batches[bi], sizes[bi]
                        if (fn_key, size) not in fns:
                            fns[(fn_key, size)] = st_lib.make_stage_fn(
                                logits_fn, a, jit_compile, *spec(size))
                        calls.append((*batch_of(idx, size),
                                      tf.constant(st_lib.batch_seed(seed, st.key, bi)),
                                      tf.constant(st.target_rank, tf.int32),
                                      tf.constant(st.restart, tf.int32)))
                    outputs = run_sharded(strategy, fns[(fn_key, size)], calls)
                    for bi, (x_out, fooled, extra) in zip(group, outputs):
                        idx = batches[bi]
                        k = len(idx)
                        fooled = fooled.numpy()[:k]
                        extra = extra.numpy()[:k]
                        if a.extra == "zero_grad":
                            zero_grad += int(extra.sum())
                        if a.extra == "queries":
                            queries += int(extra.sum())
                        hit = idx[fooled]
                        robust[hit] = False
                        done_in_current[idx] = True
                        attacked += k
                        fooled_total += int(fooled.sum())
                        if x_adv_all is not None and len(hit):
                            x_adv_all[hit] = x_out.numpy()[:k][fooled]
                        attack_logs[key] = AttackLog(a.name, float(robust.mean()),
                                                     time.time() - t_att, attacked, fooled_total)
                        state.save(payload())
                        if progress:
                            progress(dict(event="batch", stage=st.key, attack=a.name,
                                          batch=bi + 1, batches=n_batches,
                                          robust=int(robust.sum()), n=n,
                                          seconds=time.time() - t_att))
                finished.append(st.key)
                current, done_in_current = None, np.zeros(n, bool)
            attack_logs[key] = AttackLog(a.name, float(robust.mean()) if n else 0.0,
                                         time.time() - t_att, attacked, fooled_total)
            log(f"[autoattack] robust accuracy after {a.name.upper()}: "
                f"{attack_logs[key].robust_accuracy:.2%} "
                f"(total time {attack_logs[key].seconds:.1f} s)")
            if progress:
                progress(dict(event="attack", attack=a.name,
                              robust_accuracy=attack_logs[key].robust_accuracy,
                              seconds=attack_logs[key].seconds))
            if checks and a.extra == "zero_grad" and zero_grad:
                _warn(f"{zero_grad} attacked points had an all-zero gradient at the APGD "
                      "start: gradient masking (e.g. saturated softmax, non-differentiable "
                      "preprocessing) may make white-box attacks fail; the robust "
                      "accuracy may be overestimated.", collected)
                zero_grad = 0
    finally:
        state.save(payload(), force=True)
        st_lib.restore_signals(stop)

    logs = [attack_logs[f"{ai}:{a.name}"] for ai, a in enumerate(attacks)
            if f"{ai}:{a.name}" in attack_logs]
    # Square improving on the white-box attacks (official tolerance 0.2%)
    if checks and logs and logs[-1].name == "square" and len(logs) > 1:
        before = min(l.robust_accuracy for l in logs[:-1])
        if logs[-1].robust_accuracy < before - 0.002:
            _warn(f"Square (black-box) decreased the robust accuracy by "
                  f"{before - logs[-1].robust_accuracy:.2%} after the white-box attacks: "
                  "this usually means gradient masking; the white-box results are not "
                  "reliable for this model.", collected)
    robust_acc = float(robust.mean()) if n else 0.0
    log(f"[autoattack] robust accuracy: {robust_acc:.2%}")
    info = dict(clean_acc=round(100 * clean_acc, 2), autoattack_acc=round(100 * robust_acc, 2),
                eps=f"{epsilon * 255:.4g}/255", threat_model="Linf")
    if dataset:
        info["dataset"] = dataset
    if architecture:
        info["architecture"] = architecture
    info.update(model_info or {})
    passes = dict(square_queries=queries)
    return Result(robust_flags=robust, clean_flags=clean, clean_accuracy=clean_acc,
                  robust_accuracy=robust_acc, attacks=logs, epsilon=float(epsilon),
                  seed=seed, version=version, seconds=time.time() - t_start,
                  x_adv=x_adv_all, warnings=collected, model_info=info, passes=passes)
