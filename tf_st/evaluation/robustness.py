"""Robustness evaluation of any logits function (a Keras model, a SavedModel endpoint,
a ``tf.function``) under per-batch attack specs (``tf_st.attacks.specs``; names are
parsed with ``tf_st.attacks.parse``), with the ST paper's protocol for the names
(docs/reference-implementations.md "ST-AT / Evaluation"):

* ``fgsm``: one step of size eps from x itself (no random start);
* ``pgdN``: N steps of ``step_size`` (2/255) on CE from ``x + U(-eps, eps)``, the
  start not clamped before the first forward (ST-AT ``test.py``);
* ``cwN``: the same PGD on the CW margin ``max_{j!=y} z_j - z_y`` (no kappa).

An attack's accuracy is the accuracy on its adversarial examples, as ST-AT reports it.
``worst_case`` counts an example as robust only if it is clean-correct and correct
under every attack that was run (AutoAttack's rule, applied to the attacks run here;
``tf_st.evaluation.report`` adds AutoAttack's robust flags).  Each accuracy comes with its
binomial standard error and 95% Wilson interval (``tf_st.provenance``).

Batches are padded to a fixed size (``tf_st.attacks.batches.pad_rows``, the last row
repeated) so that each attack traces once.
"""

import dataclasses
import itertools
import time

import numpy as np
import tensorflow as tf

from tf_st import seeds
from tf_st.attacks.batches import pad_rows
from tf_st.attacks.checks import check_unit_interval
from tf_st.attacks.specs import parse
from tf_st.provenance import INTERVAL_NOTE, interval_fields


def make_batch_attack(logits_fn, spec):
    """A compiled per-batch attack: which examples stay correctly classified.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to logits.
      spec: a per-batch attack spec (``spec.batched``).

    Returns:
      A ``tf.function(x, y, seed) -> correct`` (bool ``[B]``).
    """

    @tf.function(reduce_retracing=True)
    def run(x, y, seed):
        return tf.logical_not(spec.run(logits_fn, x, y, seed=seed).fooled)

    return run


@dataclasses.dataclass
class AttackAccuracy:
    """One attack's result over the evaluated examples.

    Attributes:
      name: the attack's name (``pgd20``, ...).
      accuracy: the fraction of examples still correctly classified, in [0, 1].
      seconds: the attack's wall-clock time.
      correct: bool ``[N]``, per example.
    """
    name: str
    accuracy: float
    seconds: float
    correct: np.ndarray

    def to_json(self):
        """The result as JSON-ready values, with its binomial standard error and 95% interval.

        Returns:
          ``{'accuracy', 'stderr', ..., 'seconds', 'correct'}``.
        """
        return {"accuracy": self.accuracy, **interval_fields(self.correct),
                "seconds": round(self.seconds, 3), "correct": self.correct.astype(int).tolist()}


@dataclasses.dataclass
class EvaluationResult:
    """Every attack's result on one set of examples.

    Attributes:
      num_examples: the number of examples evaluated.
      epsilon: the L-inf budget, in [0, 1] units.
      step_size: the PGD step, in [0, 1] units.
      seed: the evaluation's seed.
      attacks: ``{name: AttackAccuracy}``, in run order.
    """
    num_examples: int
    epsilon: float
    step_size: float
    seed: int
    attacks: dict  # name -> AttackAccuracy, in run order

    @property
    def worst_case(self):
        """Bool ``[N]``: correct under every attack that was run."""
        flags = np.ones(self.num_examples, bool)
        for r in self.attacks.values():
            flags &= r.correct
        return flags

    def to_json(self):
        """The results as JSON-ready values, with the worst case when any attack ran.

        Returns:
          A dict with ``num_examples``, ``epsilon``, ``step_size``, ``seed``, ``attacks`` and,
          when any attack ran, ``worst_case_accuracy``, ``worst_case`` and ``intervals``.
        """
        out = {"num_examples": self.num_examples, "epsilon": self.epsilon,
               "step_size": self.step_size, "seed": self.seed,
               "attacks": {k: v.to_json() for k, v in self.attacks.items()}}
        if self.attacks:
            out["worst_case_accuracy"] = float(self.worst_case.mean())
            out["worst_case"] = {"accuracy": out["worst_case_accuracy"],
                                 **interval_fields(self.worst_case),
                                 "attacks": list(self.attacks)}
            out["intervals"] = INTERVAL_NOTE
        return out

    def table(self):
        """Accuracy ± its binomial standard error, per attack and the worst case.

        Returns:
          The table as text.
        """
        lines = [f"{'attack':<10} {'accuracy':>9} {'± stderr':>9} {'seconds':>9}"]
        for r in self.attacks.values():
            err = interval_fields(r.correct)["stderr"] or 0.0
            lines.append(f"{r.name:<10} {100 * r.accuracy:>8.2f}% {100 * err:>8.2f}% "
                         f"{r.seconds:>9.1f}")
        if len(self.attacks) > 1:
            err = interval_fields(self.worst_case)["stderr"] or 0.0
            lines.append(f"{'worst-case':<10} {100 * self.worst_case.mean():>8.2f}% "
                         f"{100 * err:>8.2f}%")
        return "\n".join(lines)


def _batches(data, batch_size):
    """Yields (x, y) numpy batches from arrays ``(x, y)`` or a batched tf.data.Dataset."""
    if isinstance(data, tf.data.Dataset):
        for x, y in data.as_numpy_iterator():
            yield x, y
        return
    x, y = data
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


def evaluate(logits_fn, data, attacks=("clean", "pgd20"), *, epsilon=8 / 255, step_size=2 / 255,
             batch_size=200, seed=0, dtype=tf.float32, verbose=True, on_attack=None,
             strategy=None, context=0):
    """Runs each attack over ``data`` and returns an ``EvaluationResult``.

    ``seed`` and ``context`` (0, or the 1-based epoch of a training run's per-epoch
    evaluation) key every batch's draws: ``tf_st.seeds.key(seed, "evaluation", context,
    batch, attack index)``.

    ``on_attack(result)``: called after each attack with the ``EvaluationResult`` of the
    attacks finished so far (the report writer saves partial reports with it).

    ``data``: ``(x, y)`` arrays (x float in [0, 1], NHWC) or a batched ``tf.data.Dataset``
    of such pairs; batches are padded to ``batch_size`` (the largest batch for a dataset).

    ``strategy``: a ``tf.distribute`` strategy whose replicas attack different batches
    at the same time (each batch whole, with its own seed: the per-example results are
    those of one device).  Several workers (MultiWorkerMirroredStrategy) each call this
    with the same arguments and all return the whole result.
    """
    from tf_st.distribute import run_sharded
    check_unit_interval("epsilon", epsilon)
    specs = [parse(a, epsilon=epsilon, step_size=step_size) if isinstance(a, str) else a
             for a in attacks]
    for spec in specs:
        if not spec.batched:
            raise ValueError(f"{spec.name} evaluates a whole dataset, not batches: use "
                             "tf_st.evaluation.report.evaluate_and_report or spec.evaluate")
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    results = {}
    for index, spec in enumerate(specs):
        run = make_batch_attack(logits_fn, spec)
        flags, start = [], time.time()
        progress = _Progress(spec.name, data) if verbose else None
        batches = enumerate(_batches(data, batch_size))
        # One batch per replica at a time, streamed (a dataset need not fit in memory).
        while group := list(itertools.islice(batches, replicas)):
            calls, counts = [], []
            for b, (x, y) in group:
                size = max(batch_size, len(x))
                n = len(x)
                xp, yp = pad_rows(size, np.asarray(x), np.asarray(y))
                calls.append((tf.constant(xp, dtype), tf.constant(yp, tf.int64),
                              seeds.key(seed, "evaluation", context, b, index)))
                counts.append(n)
            for correct, n in zip(run_sharded(strategy, run, calls), counts):
                flags.append(correct.numpy()[:n])
                if progress is not None:
                    progress.update(n, float(np.concatenate(flags).mean()))
        if progress is not None:
            progress.close()
        correct = np.concatenate(flags) if flags else np.zeros(0, bool)
        results[spec.name] = AttackAccuracy(spec.name, float(correct.mean()) if len(correct) else 0.0,
                                          time.time() - start, correct)
        if on_attack is not None:
            on_attack(_result(results, epsilon, step_size, seed))
    return _result(results, epsilon, step_size, seed)


def _result(results, epsilon, step_size, seed):
    n = len(next(iter(results.values())).correct) if results else 0
    return EvaluationResult(n, float(epsilon), float(step_size), int(seed), dict(results))


class _Progress:
    """A Keras progress bar on a terminal; otherwise (logs, CI) a line at every ~10%."""

    def __init__(self, name, data):
        import sys
        self.name, self.start, self.done, self.next_report = name, time.time(), 0, 0.1
        self.total = None if isinstance(data, tf.data.Dataset) else len(data[0])
        self.bar = None
        if sys.stdout.isatty():
            import keras
            print(f"[{name}]", flush=True)
            self.bar = keras.utils.Progbar(self.total, stateful_metrics=["acc"])

    def update(self, n, acc):
        self.done += n
        self.acc = acc
        if self.bar is not None:
            self.bar.add(n, [("acc", acc)])
        elif self.total and self.done / self.total >= self.next_report and self.done < self.total:
            elapsed = time.time() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            print(f"[{self.name}] {self.done}/{self.total} acc {100 * acc:.2f}% "
                  f"({elapsed:.0f}s, ETA {eta:.0f}s)", flush=True)
            while self.next_report <= self.done / self.total:
                self.next_report += 0.1

    def close(self):
        if self.bar is None:
            print(f"[{self.name}] {self.done} examples, acc {100 * getattr(self, 'acc', 0):.2f}% "
                  f"in {time.time() - self.start:.1f}s", flush=True)
