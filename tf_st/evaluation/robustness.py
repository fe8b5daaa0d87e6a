"""Robustness evaluation of any model (a ``keras.Model``, a SavedModel or ``.keras``
path, a logits function such as a SavedModel endpoint or a ``tf.function``) under
attack specs (``tf_st.attacks.specs``; names are parsed with ``tf_st.attacks.parse``):
``evaluate`` runs the per-batch ones batch by batch and those that evaluate the whole
set (``aa``: AutoAttack) through ``spec.evaluate``, all into one ``EvaluationResult``.
The names follow the ST paper's protocol (docs/reference-implementations.md "ST-AT /
Evaluation"):

* ``fgsm``: one step of size eps from x itself (no random start);
* ``pgdN``: N steps of ``step_size`` (2/255) on CE from ``x + U(-eps, eps)``, the
  start not clamped before the first forward (ST-AT ``test.py``);
* ``cwN``: the same PGD on the CW margin ``max_{j!=y} z_j - z_y`` (no kappa).

An attack's accuracy is the accuracy on its adversarial examples, as ST-AT reports it.
``worst_case`` counts an example as robust only if it is clean-correct and correct
under every attack that was run (AutoAttack's rule; AutoAttack's robust flags count
as its per-example results).  Each accuracy comes with its
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
from tf_st.attacks.checks import check_budget, check_norm
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
      epsilon: the budget of the named attacks, in [0, 1] units.
      step_size: the PGD step, in [0, 1] units.
      seed: the evaluation's seed.
      attacks: ``{name: AttackAccuracy}``, in run order.
      details: ``{name: result}`` of each whole-set attack (AutoAttack's ``Result``);
        not part of ``to_json``.
      norm: the threat model of the named attacks, ``'Linf'`` or ``'L2'``.
    """
    num_examples: int
    epsilon: float
    step_size: float
    seed: int
    attacks: dict  # name -> AttackAccuracy, in run order
    # name -> a whole-set attack's own result (AutoAttack's ``Result``), not in to_json
    details: dict = dataclasses.field(default_factory=dict)
    norm: str = "Linf"

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
          A dict with ``num_examples``, ``epsilon``, ``norm``, ``step_size``, ``seed``,
          ``attacks`` and, when any attack ran, ``worst_case_accuracy``, ``worst_case`` and
          ``intervals``.
        """
        out = {"num_examples": self.num_examples, "epsilon": self.epsilon, "norm": self.norm,
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


def evaluate(model=None, x=None, y=None, attacks=None, *, epsilon=8 / 255, step_size=2 / 255,
             batch_size=200, seed=0, dtype=tf.float32, verbose=True, on_attack=None,
             strategy=None, context=0, logits_fn=None, data=None, norm="Linf"):
    """Runs each attack on ``model`` and returns an ``EvaluationResult``.

    The one entry point for every attack: per-batch ones (``clean``, ``fgsm``, ``pgdN``,
    ``cwN``, ``pgd_rst``, AutoAttack's components) and those that evaluate the whole set
    (``aa``: AutoAttack, ``spec.evaluate`` on all the examples as
    ``tf_st.evaluation.report.evaluate_and_report`` runs it), in the order given, each on
    every example.

    Two call forms; the second positional argument decides which:

    * ``evaluate(model, x, y, attacks=[...])``: ``x`` an array (or tensor) of images,
      ``y`` their integer labels (required);
    * ``evaluate(model, data, attacks)``: ``data`` a pair ``(x, y)`` (a tuple or list of
      two) or a batched ``tf.data.Dataset`` of such pairs; the third positional argument
      is then the attack list (the original form; labels given again are refused).

    Args:
      model: a ``keras.Model`` (called with ``training=False``), the path (str or
        ``os.PathLike``) of a SavedModel directory, an export directory of numbered
        versions (the highest is loaded) or a ``.keras`` file (``tf_st.saved_model.load``;
        tf_st's layers are registered first), or any logits function (a callable mapping
        a float NHWC batch in [0, 1] to logits).
      x: images, float NHWC in [0, 1]; or the data of the second form.
      y: integer labels of ``x`` (first form only).
      attacks: names (``tf_st.attacks.parse``) or specs; default ``("clean", "pgd20")``.
      epsilon: radius of the named attacks, in [0, 1] units (8/255; with ``norm='L2'``
        an L2 radius such as 0.5, which may exceed 1).
      step_size: step of the named PGD-type attacks.
      batch_size: examples per batch; batches are padded to it (the largest batch for a
        dataset).  A whole-set attack gets ``min(batch_size, examples)``.
      seed: the evaluation seed.  Batch ``b`` of the ``i``-th *per-batch* attack draws
        with ``tf_st.seeds.key(seed, "evaluation", context, b, i)`` (whole-set attacks
        take no index, so adding ``"aa"`` leaves the others' results unchanged); a
        whole-set attack gets ``seed`` itself (AutoAttack's own keys), as in
        ``evaluate_and_report``.
      dtype: the dtype the images are fed in (the whole-set attacks get them too).
      verbose: progress lines (or a Keras progress bar on a terminal).
      on_attack: called after each attack with the ``EvaluationResult`` of the attacks
        finished so far (the report writer saves partial reports with it).
      strategy: a ``tf.distribute`` strategy whose replicas attack different batches at
        the same time (each batch whole, with its own seed: the per-example results are
        those of one device).  Several workers (MultiWorkerMirroredStrategy) each call
        this with the same arguments and all return the whole result.
      context: 0, or the 1-based epoch of a training run's per-epoch evaluation (part of
        every per-batch key).
      logits_fn: the earlier name of ``model``, still accepted as a keyword.
      data: the earlier name of the second form's data, still accepted as a keyword.
      norm: the threat model of the named attacks, ``'Linf'`` or ``'L2'`` (specs given
        as objects keep their own).

    Returns:
      An ``EvaluationResult``: ``attacks`` maps each attack's name to its
      ``AttackAccuracy`` (accuracy, seconds, per-example ``correct``; for AutoAttack its
      robust accuracy and per-example robust flags), ``worst_case`` the examples correct
      under every attack, ``details`` each whole-set attack's own result (AutoAttack's
      ``Result``: clean flags, the accuracy after each component, ``model_info``).

    Raises:
      ValueError: ``model`` is none of the accepted kinds (or a path that does not
        load), the data is malformed (an array ``x`` without labels, labels given twice,
        different lengths), an attack name is unknown (or has no ``norm`` version) or
        ``epsilon`` is out of range (L-inf: outside [0, 1]; L2: negative).

    Example:
      A trained run's export (or its ``model.keras``, or a ``keras.Model``)::

        from tf_st import data
        from tf_st.evaluation import evaluate
        x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=200)
        result = evaluate("runs/demo/export", x, y, attacks=["clean", "pgd20", "aa"])
        print(result.attacks["aa"].accuracy, result.worst_case.mean())
    """
    from tf_st.distribute import run_sharded
    if logits_fn is not None:
        if model is not None:
            raise ValueError("give the model once: model= or logits_fn=, not both")
        model = logits_fn
    if data is not None:
        if x is not None:
            raise ValueError("give the data once: x (with y) or data=, not both")
        x = data
    if x is None:
        raise ValueError("evaluate needs data: evaluate(model, x, y, attacks=...) or "
                         "evaluate(model, (x, y), attacks)")
    norm = check_norm(norm)
    check_budget("epsilon", epsilon, norm)
    data, attacks = _data_and_attacks(x, y, attacks)
    logits_fn = logits_function(model)
    specs = [parse(a, epsilon=epsilon, step_size=step_size, norm=norm) if isinstance(a, str)
             else a for a in attacks]
    check_unique_names(specs)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    results, details = {}, {}
    arrays = None  # the whole set as arrays, for whole-set attacks
    batched_index = 0
    for spec in specs:
        if not spec.batched:
            if arrays is None:
                arrays = _as_arrays(data, dtype)
            ax, ay = arrays
            out = spec.evaluate(logits_fn, ax, ay, seed=seed,
                                batch_size=max(1, min(batch_size, len(ay))), verbose=verbose,
                                return_adversarials=False, strategy=strategy)
            correct = np.asarray(out.robust_flags, bool)
            results[spec.name] = AttackAccuracy(spec.name, float(out.robust_accuracy),
                                                float(out.seconds), correct)
            details[spec.name] = out
            if on_attack is not None:
                on_attack(_result(results, epsilon, step_size, seed, details, norm))
            continue
        index, batched_index = batched_index, batched_index + 1
        run = make_batch_attack(logits_fn, spec)
        flags, start = [], time.time()
        progress = _Progress(spec.name, data) if verbose else None
        batches = enumerate(_batches(data, batch_size))
        # One batch per replica at a time, streamed (a dataset need not fit in memory).
        while group := list(itertools.islice(batches, replicas)):
            calls, counts = [], []
            for b, (bx, by) in group:
                size = max(batch_size, len(bx))
                n = len(bx)
                xp, yp = pad_rows(size, np.asarray(bx), np.asarray(by))
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
            on_attack(_result(results, epsilon, step_size, seed, details, norm))
    return _result(results, epsilon, step_size, seed, details, norm)


_ACCEPTED_MODELS = ("a keras.Model, the path (str or os.PathLike) of a SavedModel directory, "
                    "an export directory of numbered versions or a .keras file, or a logits "
                    "function (a callable from an NHWC image batch in [0, 1] to logits)")


def logits_function(model):
    """``model`` (what ``evaluate`` accepts) as a logits function.

    Args:
      model: a ``keras.Model`` (called with ``training=False``), a path (SavedModel,
        export directory or ``.keras`` file, loaded by ``tf_st.saved_model.load``) or any
        other callable (returned as it is).

    Returns:
      A callable mapping a float NHWC batch in [0, 1] to logits.

    Raises:
      ValueError: ``model`` is none of these, or a path that holds nothing loadable.
    """
    import os

    import keras
    if isinstance(model, keras.Model):
        return lambda t: model(t, training=False)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ValueError(f"model: nothing at {path!r}; evaluate takes {_ACCEPTED_MODELS}")
        from tf_st import models  # noqa: F401 - registers tf_st's layers for .keras files
        from tf_st.saved_model import load
        try:
            return load(path)
        except FileNotFoundError as e:
            raise ValueError(f"model: {e}; evaluate takes {_ACCEPTED_MODELS}") from None
    if callable(model):
        return model
    raise ValueError(f"model: got {type(model).__name__} {str(model)[:60]!r}; evaluate "
                     f"takes {_ACCEPTED_MODELS}")


def check_unique_names(specs):
    """Refuses two attacks of one name (results are keyed by name: the second would
    replace the first, e.g. ``pgd20`` given twice).

    Args:
      specs: the parsed attack specs.

    Raises:
      ValueError: a name occurs twice.
    """
    names = [spec.name for spec in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"attacks: {', '.join(twice)} given twice (each attack's result "
                         "is reported under its name)")


def _is_array(v):
    return isinstance(v, (np.ndarray, tf.Tensor))


def _data_and_attacks(x, y, attacks):
    """``(data, attacks)`` of ``evaluate``'s two call forms (see its docstring)."""
    if isinstance(x, tf.data.Dataset) or (isinstance(x, (tuple, list)) and len(x) == 2):
        if y is not None:
            if attacks is not None:
                raise ValueError("attacks given twice: in evaluate(model, data, attacks) the "
                                 "third argument is the attack list")
            if _is_array(y) or (isinstance(y, (tuple, list)) and y
                                and all(isinstance(v, (int, np.integer)) for v in y)):
                raise ValueError("labels given twice: the second argument is already the "
                                 "data (an (x, y) pair or a dataset); call evaluate(model, "
                                 "x, y, attacks=...) with an array x, or evaluate(model, "
                                 "(x, y), attacks)")
            attacks = y
        data = x
        if not isinstance(data, tf.data.Dataset) and len(data[0]) != len(data[1]):
            raise ValueError(f"x has {len(data[0])} examples but y has {len(data[1])}")
    elif _is_array(x):
        if y is None:
            raise ValueError("evaluate(model, x, y, attacks=...) needs the labels y with an "
                             "array x (or pass the data as one pair: evaluate(model, (x, y), "
                             "attacks))")
        y = np.asarray(y).reshape(-1)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        data = (x, y)
    else:
        raise ValueError(f"data: got {type(x).__name__}; evaluate takes an array x with "
                         "labels y, an (x, y) pair or a batched tf.data.Dataset of pairs")
    if attacks is None:
        attacks = ("clean", "pgd20")
    elif isinstance(attacks, str) or (not isinstance(attacks, (tuple, list))
                                      and hasattr(attacks, "batched")):
        attacks = [attacks]  # one name or one spec
    return data, list(attacks)


def _as_arrays(data, dtype):
    """``(x, y)`` numpy arrays of the whole data (a dataset's batches concatenated), the
    images in ``dtype``."""
    if isinstance(data, tf.data.Dataset):
        xs, ys = zip(*data.as_numpy_iterator())
        x, y = np.concatenate(xs), np.concatenate(ys)
    else:
        x, y = data
    x = x.numpy() if isinstance(x, tf.Tensor) else x
    y = y.numpy() if isinstance(y, tf.Tensor) else y
    return (np.asarray(x, tf.as_dtype(dtype).as_numpy_dtype),
            np.asarray(y).astype(np.int64).reshape(-1))


def _result(results, epsilon, step_size, seed, details=None, norm="Linf"):
    n = len(next(iter(results.values())).correct) if results else 0
    return EvaluationResult(n, float(epsilon), float(step_size), int(seed), dict(results),
                            dict(details or {}), norm)


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
