"""AutoAttack's schedule and its resumable state.

Work is split into *stages* (one per attack, restart and target class).  Each stage
batch runs through one compiled function per attack and batch size (targets, restarts
and seeds are tensor arguments), so nothing retraces per batch and the attack loops
never return to the host.  The state file records the robust flags, the finished
stages and the points done in the current stage, keyed by a fingerprint of the run's
settings, so a restarted run with the same settings skips finished work.
"""

import dataclasses
import hashlib
import json
import math
import os
import time

import numpy as np
import tensorflow as tf

from tf_st.attacks.pgd import project
from tf_st.fileio import atomic_write_json


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the schedule: one attack, target rank and restart.

    Attributes:
      key: the stage's unique key in the state file.
      attack_index: the attack's index in the run's attack tuple.
      attack: the ``Component`` spec.
      restart: the restart index.
      target_rank: the target rank (0 when untargeted).
    """
    key: str  # unique, used in the state file
    attack_index: int
    attack: object
    restart: int
    target_rank: int  # 0 when untargeted


def stages(attacks, n_targets):
    """The schedule: per component, its target ranks times its restarts, in that order.

    Args:
      attacks: the ``Component`` specs, in run order.
      n_targets: the number of target classes (``Component.target_ranks``).

    Returns:
      A list of ``Stage``; the keys are the state file's.
    """
    out = []
    for ai, a in enumerate(attacks):
        for rank in a.target_ranks(n_targets):
            for r in range(a.restarts):
                key = f"{ai}:{a.name}:t{rank}:r{r}" if rank else f"{ai}:{a.name}:r{r}"
                out.append(Stage(key, ai, a, r, rank))
    return out


def attack_key(attack_index, attack):
    """An attack's key in the state file's ``attack_logs``.

    Args:
      attack_index: the attack's index in the run's attack tuple.
      attack: the ``Component`` spec.

    Returns:
      ``'<index>:<name>'``.
    """
    return f"{attack_index}:{attack.name}"


@dataclasses.dataclass
class AttackLog:
    """One attack's line of the result.

    Attributes:
      name: the attack's name.
      robust_accuracy: the robust accuracy after it, in [0, 1].
      seconds: its wall-clock time.
      attacked: the points it attacked.
      fooled: the points it fooled.
    """
    name: str
    robust_accuracy: float
    seconds: float
    attacked: int = 0
    fooled: int = 0


@dataclasses.dataclass
class RunState:
    """What a run has found so far: the state file's content.

    ``payload`` writes it, ``resume`` reads it back; the field names and order are the file
    format.

    Attributes:
      fingerprint: what the state is valid for (``fingerprint``).
      clean: bool ``[N]``, correctly classified clean.
      clean_accuracy: the clean accuracy.
      robust: bool ``[N]``, still robust.
      finished: the keys of the finished stages.
      current: the key of the stage in progress, or None.
      done_in_current: bool ``[N]``, points done in the current stage.
      attack_logs: ``{attack_key: AttackLog}``.
      counts: ``{attack_key: int}``, each attack's count so far (``Component.stage``'s
        per-example tally summed: APGD's zero-gradient points, Square's queries), so that
        its sanity warning and ``Result.passes`` cover the whole run, not the last process.
      elapsed: the seconds spent so far, by this process and the ones it resumes.
    """
    fingerprint: dict
    clean: np.ndarray
    clean_accuracy: float
    robust: np.ndarray
    finished: list = dataclasses.field(default_factory=list)
    current: object = None  # the key of the stage in progress, or None
    done_in_current: np.ndarray = None
    attack_logs: dict = dataclasses.field(default_factory=dict)  # attack_key -> AttackLog
    counts: dict = dataclasses.field(default_factory=dict)  # attack_key -> int
    elapsed: float = 0.0

    def __post_init__(self):
        if self.done_in_current is None:
            self.done_in_current = np.zeros(len(self.robust), bool)

    def resume(self, prev):
        """Continues the run of the state file's content ``prev``.

        The clean flags stay this process's.

        Args:
          prev: the loaded state file's content (its fingerprint already checked).
        """
        self.robust = flags_arr(prev["robust_flags"])
        self.finished = list(prev["finished"])
        self.attack_logs = {k: AttackLog(**v) for k, v in prev.get("attack_logs", {}).items()}
        # State files written before these fields existed resume with zero (as they did).
        self.counts = {k: int(v) for k, v in prev.get("counts", {}).items()}
        self.elapsed = float(prev.get("elapsed", 0.0))
        if prev.get("current"):
            self.current = prev["current"]
            self.done_in_current = flags_arr(prev["done_in_current"])

    def payload(self):
        """The state file's content.

        Returns:
          A JSON-serialisable dict (flags as ``'0'``/``'1'`` strings).
        """
        return dict(fingerprint=self.fingerprint, robust_flags=flags_str(self.robust),
                    clean_flags=flags_str(self.clean), clean_accuracy=self.clean_accuracy,
                    finished=self.finished, current=self.current,
                    done_in_current=flags_str(self.done_in_current),
                    attack_logs={k: dataclasses.asdict(v) for k, v in self.attack_logs.items()},
                    counts=dict(self.counts), elapsed=self.elapsed)

    def start_stage(self, stage):
        """Begins (or resumes) ``stage``.

        Args:
          stage: a ``Stage``.

        Returns:
          The indices of the points it attacks: the points robust when it began (those
          done before a restart included: the caller batches them as the first process
          did, so that every batch keeps its points and its seed, and skips the batches
          done).
        """
        if self.current != stage.key:
            self.current, self.done_in_current = stage.key, np.zeros(len(self.robust), bool)
        # A point is done only after it was attacked, so it was robust when the stage began.
        return np.nonzero(self.robust | self.done_in_current)[0]

    def record(self, idx, fooled):
        """Records points ``idx`` as attacked, ``fooled`` of them no longer robust.

        Args:
          idx: int indices of the attacked points.
          fooled: bool, per attacked point.

        Returns:
          The indices of the points fooled.
        """
        hit = idx[fooled]
        self.robust[hit] = False
        self.done_in_current[idx] = True
        return hit

    def finish_stage(self, stage):
        """Marks ``stage`` finished.

        Args:
          stage: the ``Stage`` in progress.
        """
        self.finished.append(stage.key)
        self.current, self.done_in_current = None, np.zeros(len(self.robust), bool)


def batch_seed(seed, stage_key, batch_no):
    """The stateless seed of one batch of one stage.

    Args:
      seed: the evaluation's seed.
      stage_key: the stage's key.
      batch_no: the batch's number within the stage.

    Returns:
      int64 numpy array ``[2]``.
    """
    h = hashlib.sha256(f"{stage_key}/{batch_no}".encode()).digest()
    return np.array([seed % (2**62), int.from_bytes(h[:7], "little")], np.int64)


def make_stage_fn(logits_fn, attack, jit_compile, spec_x, spec_y):
    """One compiled function per attack: ``(x, y, seed, rank, restart) -> (x_adv, fooled, count)``.

    The output is projected and re-classified (``count``: ``Component.stage``'s).

    Args:
      logits_fn: function from NHWC float images in [0, 1] to logits.
      attack: the ``Component`` spec.
      jit_compile: XLA-compile it.
      spec_x: the ``tf.TensorSpec`` of an image batch.
      spec_y: the ``tf.TensorSpec`` of a label batch.

    Returns:
      A ``tf.function``.
    """

    def run(x, y, seed, rank, restart):
        x_adv, count = attack.stage(logits_fn, x, y, seed, rank, restart)
        x_adv = project(x_adv, x, attack.epsilon, getattr(attack, "norm", "Linf"))
        pred = tf.cast(tf.argmax(logits_fn(x_adv), axis=1), tf.int32)
        return x_adv, tf.not_equal(pred, tf.cast(y, tf.int32)), count

    sig = [spec_x, spec_y, tf.TensorSpec([2], tf.int64), tf.TensorSpec([], tf.int32),
           tf.TensorSpec([], tf.int32)]
    return tf.function(run, input_signature=sig, jit_compile=jit_compile or None,
                       reduce_retracing=False)


def _settings(attack):
    """A component's settings as the fingerprint records them: its ``repr``, without the
    default ``norm='Linf'`` (so state files written before components had a ``norm``
    still resume; an L2 component's ``norm='L2'`` stays in)."""
    return repr(attack).replace(", norm='Linf')", ")")


def fingerprint(n, epsilon, attacks, seed, y, batch_size, x=None, probe_logits=None):
    """What a state file is valid for.

    Settings, the labels and images (hashes) and the model (a hash of its logits on the
    first batch, rounded so that float noise between processes does not count, a different
    model does).

    Args:
      n: the number of examples.
      epsilon: the L-inf budget.
      attacks: the ``Component`` specs.
      seed: the evaluation's seed.
      y: the labels.
      batch_size: the batch size.
      x: the images, or None to leave them out.
      probe_logits: the logits on the first batch, or None to leave the model out.

    Returns:
      A JSON-serialisable dict.
    """
    h = hashlib.sha256(np.ascontiguousarray(y, np.int64).tobytes()).hexdigest()[:16]
    out = dict(n=int(n), epsilon=float(epsilon), seed=int(seed), labels=h,
               batch_size=int(batch_size), attacks=[_settings(a) for a in attacks])
    if x is not None:
        digest = hashlib.sha256()
        for i in range(0, len(x), 1024):
            digest.update(np.ascontiguousarray(x[i:i + 1024]).tobytes())
        out["images"] = digest.hexdigest()[:16]
    if probe_logits is not None:
        z = np.round(np.asarray(probe_logits, np.float64), 3) + 0.0  # -0.0 -> 0.0
        out["model"] = hashlib.sha256(z.tobytes()).hexdigest()[:16]
    return out


def fingerprint_difference(old, new):
    """The first differing part of two fingerprints, named for the message.

    Args:
      old: the state file's fingerprint.
      new: this run's.

    Returns:
      ``'model (logits on the first batch)'``, ``'images'``, ``"setting 'seed'"``, ... or
      None when they agree.
    """
    if not isinstance(old, dict):
        return "fingerprint"
    # Data first: other images also change the logits the model is recognised by.
    for key in ("images", "labels", "n", "epsilon", "seed", "batch_size", "attacks", "model"):
        if old.get(key) != new.get(key):
            return {"model": "model (logits on the first batch)", "images": "images",
                    "labels": "labels"}.get(key, f"setting {key!r}")
    return None


class Interrupted(KeyboardInterrupt):
    """SIGTERM during an evaluation: the state is saved on the way out."""


def save_on_signals():
    """Turns SIGTERM into an exception (SIGINT already is one).

    So the evaluation's ``finally`` writes the state.  Only in the main thread.

    Returns:
      What ``restore_signals`` puts back (None outside the main thread).
    """
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Interrupted(f"signal {signum}")
    return signal.signal(signal.SIGTERM, handler)


def restore_signals(previous):
    """Puts back the SIGTERM handler ``save_on_signals`` replaced.

    Args:
      previous: what ``save_on_signals`` returned.
    """
    import signal
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def flags_str(flags):
    """Bool flags as a ``'0'``/``'1'`` string (the state file's format).

    Args:
      flags: a sequence of bools.

    Returns:
      The string.
    """
    return "".join("1" if f else "0" for f in flags)


def flags_arr(s):
    """The inverse of ``flags_str``.

    Args:
      s: a ``'0'``/``'1'`` string.

    Returns:
      A bool numpy array.
    """
    return np.frombuffer(s.encode(), np.uint8) == ord("1")


class StateFile:
    """The JSON state, written atomically at most every ``interval`` seconds.

    Args:
      path: the file, or None for no state file.
      interval: the minimum seconds between writes (unless forced).
      write: False never writes: a worker that is not the chief only reads it.
    """

    def __init__(self, path, interval, write=True):
        self.path, self.interval, self.last, self.write = path, interval, -math.inf, write

    def load(self):
        """Reads the state file.

        Returns:
          Its content, or None when there is no file.

        Raises:
          ValueError: the file is unreadable or lacks a required key.
        """
        if not self.path or not os.path.exists(self.path):
            return None
        try:
            with open(self.path) as f:
                payload = json.load(f)
            for key in ("fingerprint", "robust_flags", "finished"):
                payload[key]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"state file {self.path!r} is unreadable ({type(e).__name__}: "
                             f"{e}); delete it or pass another --state_file") from None
        return payload

    def save(self, payload, force=False):
        """Writes ``payload`` atomically, unless the last write is under ``interval`` seconds old.

        Args:
          payload: ``RunState.payload()``.
          force: write regardless of ``interval``.
        """
        if not self.path or not self.write:
            return
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        atomic_write_json(self.path, payload, indent=None)
        self.last = now
