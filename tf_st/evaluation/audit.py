"""An evaluation audit: cheap checks that catch gradient masking (issue 27, items 4-5).

A robust accuracy is only as good as the attacks behind it.  Models whose gradients are
masked (non-differentiable preprocessing, saturated outputs, randomness) look robust to
gradient attacks without being so.  ``audit(model, x, y)`` runs six kinds of checks on a
small subset and says which fail, what that usually means and what to run next:

========================  ===================================================  =========
check                     passes when                                          issue 27
========================  ===================================================  =========
``large_epsilon``         PGD-20 accuracy at the sweep's largest radius is     (a)
                          at most ``5% + 2 s``
``more_steps``            no stronger PGD (more steps, then restarts) is more  (b)
                          accurate than a weaker one by more than the noise
``black_box_accuracy``    Square (no gradients) is not less accurate than the  (c)
                          white-box worst case by more than the noise
``black_box_finds``       the fraction of examples Square fools and every      (c)
                          white-box run missed is at most ``2 s``
``gradients``             input gradients of the cross entropy are finite and  (d)
                          non-zero for at least 90% of the examples
``deterministic``         two forward passes agree (largest difference at      (e)
                          most ``1e-4`` of the largest output, or of 1)
``logits``                at most half of the output rows look like (scaled)   (f)
                          probabilities: non-negative, summing to the common
                          row sum
========================  ===================================================  =========

**Noise** (``noise_stderr``, ``NOISE_NOTE``): ``s(p, n)`` is the half-width of the 95%
Wilson interval of an accuracy ``p`` over ``n`` examples divided by 1.96
(``tf_st.provenance.accuracy_interval``): about the binomial standard error
``sqrt(p (1 - p) / n)`` away from 0 and 1, but positive at 0 and 1, so that a subset of
100 examples is not trusted to show a rise of one example.  Two accuracies differ
"beyond noise" when their difference exceeds ``2 sqrt(s1^2 + s2^2)``.

Every check is a small function of numbers (``check_large_epsilon``, ...) that the tests
feed hand-made values; ``audit`` computes the numbers: two forward passes, the input
gradients, PGD at ``0, 0.5, 1, 2, 4`` times ``epsilon`` (20 steps, the step scaled with
the radius; radii at most 1 in L-inf), PGD with 1, 5, 10, 20, 50 steps and 50 steps
with 3 restarts at ``epsilon``, and Square with 1000 queries.

**L2** (``norm='L2'``): the same checks with PGD and Square in L2, and the sweep
continued to ``8 * epsilon`` (4.0 at RobustBench's 0.5), where ``large_epsilon`` is
read: an L2 ball spreads its radius over every pixel (0.5 over a 32x32x3 image is about
2.3/255 per pixel, root mean square), so 4x an L2 radius moves each pixel much less than
4x an L-inf radius does, and a robust model need not be near 0% there.  Random draws are keyed
``tf_st.seeds.key(seed, "audit", run, batch)``.  The model is called through a wrapper
that adds ``0 * sum(x)`` to its outputs, so that a model whose outputs are not connected
to its input (``tf.round``, ``tf.stop_gradient``) has zero gradients rather than none:
the audit measures it instead of crashing.
"""

import dataclasses
import math
import time

import numpy as np
import tensorflow as tf

from tf_st import seeds
from tf_st.attacks.batches import pad_rows
from tf_st.attacks.checks import check_budget, check_norm, radius_text
from tf_st.attacks.losses import cross_entropy
from tf_st.attacks.pgd import input_gradient
from tf_st.attacks.specs import PGD, Clean, Square
from tf_st.evaluation.robustness import logits_function, make_batch_attack
from tf_st.provenance import accuracy_interval

NOISE_NOTE = ("s(p, n) = half-width of the 95% Wilson interval of p over n examples / 1.96 "
              "(the binomial standard error away from 0 and 1, positive at 0 and 1); two "
              "accuracies differ beyond noise when the difference exceeds "
              "2 sqrt(s1^2 + s2^2)")
EPSILON_MULTIPLES = (0.0, 0.5, 1.0, 2.0, 4.0)
L2_EPSILON_MULTIPLES = EPSILON_MULTIPLES + (8.0,)
STEPS = (1, 5, 10, 20, 50)
LARGE_EPSILON_TOLERANCE = 0.05
GRADIENT_FRACTION = 0.9
DETERMINISM_TOLERANCE = 1e-4
PROBABILITY_FRACTION = 0.5
_Z95 = 1.959963984540054
_SWEEP_STEPS = 20


@dataclasses.dataclass(frozen=True)
class Check:
    """One audit check's outcome.

    Attributes:
      name: the check's name (``large_epsilon``, ``more_steps``, ...).
      passed: whether the model passed it.
      value: the measured number (None when it could not be measured, e.g. not finite).
      threshold: the number ``value`` is compared with.
      explanation: what was checked and, on failure, what it usually means and what to
        run next.
    """
    name: str
    passed: bool
    value: float
    threshold: float
    explanation: str

    def to_json(self):
        """The check as JSON-ready values.

        Returns:
          ``{"name", "passed", "value", "threshold", "explanation"}`` (non-finite numbers
          as None).
        """
        return {"name": self.name, "passed": bool(self.passed), "value": _finite(self.value),
                "threshold": _finite(self.threshold), "explanation": self.explanation}


def _finite(v):
    return None if v is None or not math.isfinite(float(v)) else float(v)


def noise_stderr(accuracy, n):
    """The noise level ``s`` of an accuracy over ``n`` examples (see the module docstring).

    Args:
      accuracy: the accuracy, in [0, 1].
      n: the number of examples.

    Returns:
      The 95% Wilson interval's half-width / 1.96 (0.0 for ``n = 0``).
    """
    _, ci = accuracy_interval(round(accuracy * n), n)
    return 0.0 if ci is None else (ci[1] - ci[0]) / (2 * _Z95)


def difference_noise(a, b, n):
    """The threshold beyond which two accuracies over the same ``n`` examples differ.

    Args:
      a: one accuracy, in [0, 1].
      b: the other.
      n: the number of examples.

    Returns:
      ``2 sqrt(s(a)^2 + s(b)^2)``.
    """
    return 2.0 * math.hypot(noise_stderr(a, n), noise_stderr(b, n))


_NEXT_GRADIENT = ("run an adaptive attack: BPDA (a differentiable approximation of the "
                  "non-differentiable part on the backward pass), EOT if the model is "
                  "random, the CW margin loss on logits (--attacks=cw100) and AutoAttack "
                  "(--attacks=aa, Square with 5000 queries)")


def check_large_epsilon(accuracy, n, epsilon, norm="Linf", multiple=4):
    """(a) PGD's accuracy at a large radius should be about 0.

    Args:
      accuracy: PGD-20's accuracy at ``epsilon``.
      n: the number of examples.
      epsilon: the large radius (``multiple`` times the threat model's), in [0, 1] units.
      norm: the threat model, ``'Linf'`` or ``'L2'``.
      multiple: how many times the threat model's radius ``epsilon`` is.

    Returns:
      A ``Check``: passed iff ``accuracy <= 0.05 + 2 s(accuracy, n)``.
    """
    threshold = LARGE_EPSILON_TOLERANCE + 2 * noise_stderr(accuracy, n)
    passed = accuracy <= threshold
    text = (f"PGD-{_SWEEP_STEPS} accuracy at {'L2 ' if norm == 'L2' else ''}eps="
            f"{radius_text(epsilon, norm)} ({multiple:.3g}x the threat model's) must be at most "
            "5% + 2 s.")
    if not passed:
        text += (" It is not: at such a radius almost any image can be moved into another "
                 "class, so the attack is failing, not the model robust -- gradients are "
                 "masked (non-differentiable preprocessing, vanishing or noisy gradients). "
                 "Next: " + _NEXT_GRADIENT + ".")
    return Check("large_epsilon", passed, float(accuracy), threshold, text)


def check_more_steps(accuracies, n):
    """(b) More PGD steps and restarts should never raise accuracy beyond noise.

    Args:
      accuracies: ``[(label, accuracy), ...]`` from the weakest attack to the strongest
        (more steps, then restarts).
      n: the number of examples.

    Returns:
      A ``Check`` on the pair (weaker ``j``, stronger ``i``) with the largest
      ``rise - noise``: ``value`` its rise ``acc_i - acc_j``, ``threshold`` its noise
      ``2 sqrt(s_i^2 + s_j^2)``; passed iff no pair rises beyond its noise.
    """
    worst = None
    for i, (label_i, acc_i) in enumerate(accuracies):
        for label_j, acc_j in accuracies[:i]:
            rise, noise = acc_i - acc_j, difference_noise(acc_i, acc_j, n)
            if worst is None or rise - noise > worst[0] - worst[1]:
                worst = (rise, noise, label_j, label_i)
    if worst is None:
        return Check("more_steps", True, 0.0, 0.0, "fewer than two PGD runs: nothing compared")
    rise, noise, weak, strong = worst
    passed = rise <= noise
    text = (f"A stronger PGD must not be more accurate than a weaker one beyond noise "
            f"(largest rise: {strong} over {weak}).")
    if not passed:
        text += (" It is: the loss surface misleads gradient steps (noisy, shattered or "
                 "randomised gradients) or the model is random. Next: check that the model "
                 "is deterministic, use EOT (gradients averaged over the randomness), APGD "
                 "(--attacks=apgd-ce: a step-size schedule) and BPDA.")
    return Check("more_steps", passed, float(rise), float(noise), text)


def check_black_box_accuracy(white_box_correct, square_correct):
    """(c) The black-box attack should not be more successful than the white-box ones.

    Args:
      white_box_correct: bool ``[N]``, correct under every white-box (PGD) run at the
        threat model's epsilon.
      square_correct: bool ``[N]``, correct under Square at the same epsilon.

    Returns:
      A ``Check``: ``value`` = white-box accuracy - Square accuracy, passed iff at most
      ``2 sqrt(s_wb^2 + s_sq^2)``.
    """
    wb, sq = np.asarray(white_box_correct, bool), np.asarray(square_correct, bool)
    n = wb.size
    a_wb, a_sq = float(wb.mean()) if n else 0.0, float(sq.mean()) if n else 0.0
    threshold = difference_noise(a_wb, a_sq, n)
    gap = a_wb - a_sq
    passed = gap <= threshold
    text = ("Square (no gradients) must not be less accurate than the white-box worst case "
            "beyond noise.")
    if not passed:
        text += (" It is: an attack without gradients beats the gradient attacks, so the "
                 "gradients are masked. Next: " + _NEXT_GRADIENT + ".")
    return Check("black_box_accuracy", passed, gap, threshold, text)


def check_black_box_finds(white_box_correct, square_correct):
    """(c) The black-box attack should not fool examples the white-box ones missed.

    Args:
      white_box_correct: bool ``[N]``, correct under every white-box (PGD) run.
      square_correct: bool ``[N]``, correct under Square.

    Returns:
      A ``Check``: ``value`` = the fraction of examples Square fools and every white-box
      run missed, passed iff at most ``2 s(value, N)``.
    """
    wb, sq = np.asarray(white_box_correct, bool), np.asarray(square_correct, bool)
    n = wb.size
    found = float((wb & ~sq).mean()) if n else 0.0
    threshold = 2 * noise_stderr(found, n)
    passed = found <= threshold
    text = "Square must not fool (beyond noise) examples that every PGD run missed."
    if not passed:
        text += (" It does: where gradients fail a search without them succeeds, the "
                 "signature of masked gradients. Next: " + _NEXT_GRADIENT + ".")
    return Check("black_box_finds", passed, found, threshold, text)


def check_gradients(usable):
    """(d) Input gradients should be finite and non-zero for most examples.

    Args:
      usable: bool ``[N]``: the example's input gradient of the cross entropy is finite
        everywhere and not all zero.

    Returns:
      A ``Check``: ``value`` = the fraction usable, passed iff at least 0.9.
    """
    usable = np.asarray(usable, bool)
    value = float(usable.mean()) if usable.size else 0.0
    passed = value >= GRADIENT_FRACTION
    text = ("Input gradients of the cross entropy must be finite and non-zero for at least "
            f"{100 * GRADIENT_FRACTION:.0f}% of the examples.")
    if not passed:
        text += (" They are not: non-differentiable preprocessing (quantisation, JPEG, "
                 "thresholding), a stop-gradient, or outputs so saturated (a softmax "
                 "inside the model, a huge logit scale) that the gradient underflows in "
                 "float32; gradient attacks then do not move. Next: BPDA through the "
                 "preprocessing, the CW margin loss on rescaled logits (--attacks=cw100), "
                 "Square (--attacks=aa).")
    return Check("gradients", passed, value, GRADIENT_FRACTION, text)


def check_deterministic(first, second):
    """(e) Two forward passes on the same inputs should agree.

    Args:
      first: the outputs ``[N, classes]`` of one pass.
      second: those of a second pass on the same inputs.

    Returns:
      A ``Check``: ``value`` = the largest absolute difference / max(1, largest |output|),
      passed iff at most 1e-4 (None, failing, when the outputs are not finite).
    """
    a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        value = float("nan")
    else:
        scale = max(1.0, float(np.abs(a).max()) if a.size else 1.0)
        value = float(np.abs(a - b).max()) / scale if a.size else 0.0
    passed = bool(value <= DETERMINISM_TOLERANCE)
    text = "Two forward passes on the same inputs must agree (to 1e-4 relative)."
    if not passed:
        text += (" They do not: the model is random (input noise, dropout left on, "
                 "stochastic layers, training-mode BatchNorm) or its outputs are not finite; "
                 "an attack on one draw overestimates robustness. Next: EOT (gradients "
                 "averaged over many draws), AutoAttack's rand version, accuracy over "
                 "several draws; or call the model in inference mode.")
    return Check("deterministic", passed, value, DETERMINISM_TOLERANCE, text)


def probability_rows(outputs):
    """Which output rows look like (scaled) probabilities.

    Args:
      outputs: ``[N, classes]`` model outputs.

    Returns:
      Bool ``[N]``: the row is non-negative and sums to the median row sum (positive)
      within 1e-4 relative.
    """
    z = np.asarray(outputs, np.float64)
    if z.size == 0:
        return np.zeros(len(z), bool)
    sums = z.sum(axis=1)
    common = float(np.median(sums))
    if not math.isfinite(common) or common <= 0:
        return np.zeros(len(z), bool)
    return (z >= 0).all(axis=1) & (np.abs(sums - common) <= 1e-4 * common)


def check_logits(outputs):
    """(f) The outputs should be logits, not (scaled) probabilities.

    Args:
      outputs: ``[N, classes]`` model outputs.

    Returns:
      A ``Check``: ``value`` = the fraction of ``probability_rows``, passed iff at most 0.5.
    """
    rows = probability_rows(outputs)
    value = float(rows.mean()) if rows.size else 0.0
    passed = value <= PROBABILITY_FRACTION
    text = ("The outputs must be logits: not non-negative rows that all sum to the same "
            "value (probabilities, possibly scaled).")
    if not passed:
        text += (" They are: the cross entropy of probabilities saturates and its gradients "
                 "vanish, so attacks are weaker and robustness is overestimated. Next: "
                 "export the pre-softmax logits; meanwhile attack the CW margin loss "
                 "(--attacks=cw100) and Square (--attacks=aa).")
    return Check("logits", passed, value, PROBABILITY_FRACTION, text)


@dataclasses.dataclass
class AuditResult:
    """The audit's checks and the numbers behind them.

    Attributes:
      checks: the ``Check`` of each check, in the order of the module docstring.
      examples: the number of examples audited.
      epsilon: the threat model's radius, in [0, 1] units.
      step_size: its PGD step.
      seed: the audit's seed.
      curves: the numbers behind the figure: ``epsilon`` (radii, accuracies and their
        noise), ``steps`` (PGD step counts, accuracies, noise; the restarts run),
        ``square`` and ``white_box`` accuracies, ``clean`` accuracy.
      seconds: the audit's wall-clock time.
      figure: the PNG's path, or None.
      norm: the threat model, ``'Linf'`` or ``'L2'``.
    """
    checks: list
    examples: int
    epsilon: float
    step_size: float
    seed: int
    curves: dict
    seconds: float = 0.0
    figure: str = None
    norm: str = "Linf"

    @property
    def suspicious(self):
        """Whether any check failed."""
        return not all(c.passed for c in self.checks)

    @property
    def failed(self):
        """The names of the failed checks."""
        return [c.name for c in self.checks if not c.passed]

    def to_json(self):
        """The report's ``audit`` block.

        Returns:
          ``{"checks": [...], "suspicious", "failed", "examples", "norm", "epsilon",
          "step_size", "seed", "noise", "curves", "seconds", "figure"}``.
        """
        return {"checks": [c.to_json() for c in self.checks], "suspicious": self.suspicious,
                "failed": self.failed, "examples": self.examples, "norm": self.norm,
                "epsilon": self.epsilon,
                "step_size": self.step_size, "seed": self.seed, "noise": NOISE_NOTE,
                "curves": self.curves, "seconds": round(self.seconds, 2),
                "figure": self.figure}

    def table(self):
        """The checks as a Markdown table.

        Returns:
          The table as text: check | passed | value | threshold.
        """
        lines = [f"| {'check':<18} | {'passed':<6} | {'value':>9} | {'threshold':>9} |",
                 f"|{'-' * 20}|{'-' * 8}|{'-' * 11}|{'-' * 11}|"]
        for c in self.checks:
            value = "n/a" if _finite(c.value) is None else f"{c.value:.4g}"
            lines.append(f"| {c.name:<18} | {'yes' if c.passed else 'NO':<6} | {value:>9} | "
                         f"{c.threshold:>9.4g} |")
        return "\n".join(lines)


def figure_path(report_path):
    """Where the audit's PNG goes beside a report.

    Args:
      report_path: the JSON report's path.

    Returns:
      ``<report stem>_audit.png``.
    """
    import os
    return os.path.splitext(report_path)[0] + "_audit.png"


def _connected(logits_fn):
    """``logits_fn`` plus ``0 * sum(x)``: a zero gradient where the model has none."""
    def fn(x):
        z = logits_fn(x)
        return z + tf.cast(0.0 * tf.reduce_sum(x, axis=[1, 2, 3]), z.dtype)[:, None]
    return fn


def _batches(n, batch_size):
    for b, i in enumerate(range(0, n, batch_size)):
        yield b, slice(i, min(n, i + batch_size))


def _outputs(fn, x, batch_size):
    return np.concatenate([np.asarray(fn(tf.constant(x[s])))
                           for _, s in _batches(len(x), batch_size)])


def _usable_gradients(fn, x, y, batch_size):
    @tf.function(reduce_retracing=True)
    def grad(bx, by):
        return input_gradient(fn, bx, by, cross_entropy)

    out = []
    for _, s in _batches(len(x), batch_size):
        n = s.stop - s.start
        bx, by = pad_rows(batch_size, x[s], y[s])
        g = grad(tf.constant(bx), tf.constant(by)).numpy()[:n].reshape(n, -1)
        out.append(np.isfinite(g).all(axis=1) & (np.abs(np.nan_to_num(g)).max(axis=1) > 0))
    return np.concatenate(out)


def _correct(fn, spec, x, y, seed, run, batch_size):
    attack = make_batch_attack(fn, spec)
    flags = []
    for b, s in _batches(len(x), batch_size):
        n = s.stop - s.start
        bx, by = pad_rows(batch_size, x[s], y[s])
        flags.append(attack(tf.constant(bx), tf.constant(by, tf.int64),
                            seeds.key(seed, "audit", run, b)).numpy()[:n])
    return np.concatenate(flags)


def audit(model, x, y, *, epsilon=8 / 255, step_size=2 / 255, seed=0, batch_size=200,
          examples=100, steps=STEPS, restarts=3, queries=1000, output_png=None,
          verbose=False, norm="Linf"):
    """Audits an evaluation for gradient masking on the first ``examples`` examples.

    Args:
      model: what ``tf_st.evaluation.evaluate`` accepts (a ``keras.Model``, a SavedModel
        or ``.keras`` path, a logits function).
      x: images, float NHWC in [0, 1].
      y: their integer labels.
      epsilon: the threat model's radius, in [0, 1] units (> 0; an L2 radius, e.g. 0.5,
        with ``norm='L2'``).
      step_size: its PGD step.
      seed: the audit's seed (keys ``tf_st.seeds.key(seed, "audit", run, batch)``).
      batch_size: examples per call.
      examples: how many of the first examples to audit (None: all).
      steps: the PGD step counts of the steps curve, increasing; the last one is run
        again with ``restarts`` restarts.
      restarts: the restarts of the strongest PGD run (1: none added).
      queries: Square's query budget.
      output_png: where to write the figure (accuracy vs epsilon, accuracy vs PGD
        steps), or None for none.
      verbose: print a line per stage.
      norm: the threat model, ``'Linf'`` or ``'L2'``: every attack of the audit runs in it.

    Returns:
      An ``AuditResult`` (``.table()``, ``.to_json()``, ``.suspicious``).

    Raises:
      ValueError: ``epsilon`` is not positive (or above 1 in L-inf), an unknown ``norm``,
        ``steps`` is empty or not increasing,
        the data is empty or ``x`` and ``y`` differ in length, or ``model`` is not
        accepted (``logits_function``).

    Example:
      ::

        from tf_st.evaluation import audit
        result = audit(model, x_test[:100], y_test[:100], output_png="audit.png")
        print(result.table())
        assert not result.suspicious, result.failed
    """
    norm = check_norm(norm)
    if not 0.0 < check_budget("epsilon", epsilon, norm):
        raise ValueError("the audit needs epsilon > 0 (it attacks at multiples of it)")
    steps = tuple(int(s) for s in steps)
    if not steps or any(b <= a for a, b in zip(steps, steps[1:])) or steps[0] < 1:
        raise ValueError(f"steps must be increasing positive step counts, got {steps}")
    x = np.asarray(x.numpy() if isinstance(x, tf.Tensor) else x, np.float32)
    y = np.asarray(y.numpy() if isinstance(y, tf.Tensor) else y).astype(np.int64).reshape(-1)
    if examples is not None:
        x, y = x[:examples], y[:examples]
    if len(x) != len(y) or not len(x):
        raise ValueError(f"the audit needs as many labels as images, at least one: got "
                         f"{len(x)} images and {len(y)} labels")
    # One tf.function per attack run is intended here: TensorFlow's retracing warnings
    # about it are held back for the audit's duration.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        return _audit(model, x, y, epsilon=epsilon, step_size=step_size, seed=seed,
                      batch_size=batch_size, steps=steps, restarts=restarts, queries=queries,
                      output_png=output_png, verbose=verbose, norm=norm)
    finally:
        logger.setLevel(level)


def _audit(model, x, y, *, epsilon, step_size, seed, batch_size, steps, restarts, queries,
           output_png, verbose, norm):
    started = time.time()
    fn = _connected(logits_function(model))
    n, batch_size = len(x), max(1, min(batch_size, len(x)))

    def say(text):
        if verbose:
            print(f"[audit] {text} ({time.time() - started:.0f}s)", flush=True)

    first, second = _outputs(fn, x, batch_size), _outputs(fn, x, batch_size)
    usable = _usable_gradients(fn, x, y, batch_size)
    say("forward passes and gradients done")
    run = iter(range(1 << 20))
    clean = _correct(fn, Clean(), x, y, seed, next(run), batch_size)
    sweep = []
    # L-inf radii stop at 1 (the whole box); an L2 radius has no such bound.
    cap = 1.0 if norm == "Linf" else float("inf")
    for m in EPSILON_MULTIPLES if norm == "Linf" else L2_EPSILON_MULTIPLES:
        e = min(cap, m * epsilon)
        if m == 0:
            flags = clean
        else:
            flags = _correct(fn, PGD(epsilon=e, step_size=min(cap, m * step_size),
                                     steps=_SWEEP_STEPS, norm=norm),
                             x, y, seed, next(run), batch_size)
        sweep.append((m, e, flags))
    say("accuracy vs epsilon done")
    runs = [(f"pgd{s}", s, 1, _correct(fn, PGD(epsilon=epsilon, step_size=step_size, steps=s,
                                               norm=norm),
                                       x, y, seed, next(run), batch_size))
            for s in steps]
    if restarts > 1:
        runs.append((f"pgd{steps[-1]}x{restarts}", steps[-1], restarts,
                     _correct(fn, PGD(epsilon=epsilon, step_size=step_size, steps=steps[-1],
                                      restarts=restarts, norm=norm),
                              x, y, seed, next(run), batch_size)))
    say("accuracy vs PGD steps done")
    square = _correct(fn, Square(epsilon=epsilon, steps=queries, norm=norm), x, y, seed,
                      next(run), batch_size)
    say("Square done")
    white_box = clean.copy()
    for m, _, flags in sweep:
        if m == 1.0:
            white_box &= flags
    for *_, flags in runs:
        white_box &= flags

    def acc(flags):
        return float(np.mean(flags))

    large = sweep[-1]
    checks = [
        # The multiple actually reached: an L-inf sweep stops at radius 1.
        check_large_epsilon(acc(large[2]), n, large[1], norm,
                            large[1] / epsilon if epsilon else large[0]),
        check_more_steps([(label, acc(f)) for label, _, _, f in runs], n),
        check_black_box_accuracy(white_box, square),
        check_black_box_finds(white_box, square),
        check_gradients(usable),
        check_deterministic(first, second),
        check_logits(first),
    ]
    curves = {
        "clean": acc(clean),
        "epsilon": {"multiples": [m for m, _, _ in sweep], "epsilon": [e for _, e, _ in sweep],
                    "accuracy": [acc(f) for *_, f in sweep],
                    "noise": [noise_stderr(acc(f), n) for *_, f in sweep],
                    "attack": f"pgd{_SWEEP_STEPS}, step = multiple * step_size"},
        "steps": {"labels": [r[0] for r in runs], "steps": [r[1] for r in runs],
                  "restarts": [r[2] for r in runs], "accuracy": [acc(r[3]) for r in runs],
                  "noise": [noise_stderr(acc(r[3]), n) for r in runs]},
        "square": {"queries": int(queries), "accuracy": acc(square)},
        "white_box": {"accuracy": acc(white_box),
                      "attacks": ["clean", f"pgd{_SWEEP_STEPS}"] + [r[0] for r in runs]},
        "gradients_usable": acc(usable),
    }
    result = AuditResult(checks, n, float(epsilon), float(step_size), int(seed), curves,
                         norm=norm)
    if output_png:
        result.figure = write_figure(result, output_png)
    result.seconds = time.time() - started
    return result


def write_figure(result, path):
    """Writes the audit's figure: accuracy vs epsilon and accuracy vs PGD steps.

    Args:
      result: an ``AuditResult`` (its ``curves``).
      path: the PNG's path (written atomically).

    Returns:
      ``path``.
    """
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    from tf_st.fileio import atomic_path
    c = result.curves
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    unit = 255 if result.norm == "Linf" else 1  # L-inf radii in 255ths, L2 as they are
    eps = np.asarray(c["epsilon"]["epsilon"]) * unit
    left.errorbar(eps, c["epsilon"]["accuracy"], yerr=2 * np.asarray(c["epsilon"]["noise"]),
                  marker="o", capsize=3, label=f"PGD-{_SWEEP_STEPS}")
    left.axvline(unit * result.epsilon, color="grey", ls=":", label="threat model")
    left.axhline(LARGE_EPSILON_TOLERANCE, color="red", ls="--", lw=0.8, label="5%")
    left.set(xlabel="epsilon (/255)" if unit == 255 else "L2 epsilon", ylabel="accuracy",
             ylim=(-0.02, 1.02), title="accuracy vs epsilon")
    left.legend(fontsize=7)
    st = c["steps"]
    single = [i for i, r in enumerate(st["restarts"]) if r == 1]
    right.errorbar([st["steps"][i] for i in single], [st["accuracy"][i] for i in single],
                   yerr=[2 * st["noise"][i] for i in single], marker="o", capsize=3,
                   label="PGD, 1 restart")
    for i, r in enumerate(st["restarts"]):
        if r > 1:
            right.errorbar([st["steps"][i]], [st["accuracy"][i]], yerr=[2 * st["noise"][i]],
                           marker="s", capsize=3, ls="", label=f"PGD, {r} restarts")
    right.axhline(c["square"]["accuracy"], color="green", ls="--",
                  label=f"Square, {c['square']['queries']} queries")
    right.set_xscale("log")
    right.set(xlabel="PGD steps", ylabel="accuracy", ylim=(-0.02, 1.02),
              title=f"accuracy vs PGD steps (eps={radius_text(result.epsilon, result.norm)}"
                    f"{', L2' if result.norm == 'L2' else ''})")
    right.legend(fontsize=7)
    failed = result.failed
    fig.suptitle(f"audit of {result.examples} examples: "
                 + (f"SUSPICIOUS ({', '.join(failed)})" if failed else "all checks passed"),
                 fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
