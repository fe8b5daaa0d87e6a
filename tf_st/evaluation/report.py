"""Evaluation with data loading, a printed table and a JSON report; shared by
``export.evaluate`` and the trainers' final evaluation."""

import contextlib
import dataclasses
import errno
import os
import time

from tf_st.attacks.checks import check_norm, looks_like_probabilities
from tf_st.attacks.specs import parse
from tf_st.evaluation.robustness import check_unique_names, evaluate
from tf_st.fileio import LockHeld, atomic_write_json, lock_file, release
from tf_st.provenance import (INTERVAL_NOTE, accuracy_interval, environment, examples_hash,
                              interval_fields, saved_model_fingerprint)


class NonFiniteOutputError(ValueError):
    """The model returns NaN or infinite logits: no accuracy of it would mean anything."""
    exit_code = 3  # as a diverged training (tf_st.cli)


# Free space the report needs at least (a report is a few kilobytes; the probe write
# below catches a full disk that ``statvfs`` would still call non-full for root).
_PROBE_BYTES = 64 * 1024


def check_output_writable(output, what="the report"):
    """Fails now, not after hours of attacks, if ``output`` cannot be written.

    Args:
      output: the file to write; empty or None checks nothing.
      what: the file's description in the messages.

    Raises:
      ValueError: ``output`` is a directory or a dangling symbolic link.
      PermissionError: its directory is not writable.
      OSError: the disk is full or the probe write fails otherwise.
    """
    if not output:
        return
    if os.path.islink(output) and not os.path.exists(output):
        raise ValueError(f"cannot write {what} {output}: it is a dangling symbolic link")
    if os.path.isdir(output):
        raise ValueError(f"cannot write {what} {output}: it is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(output))
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        raise PermissionError(f"cannot write {what} {output}: {probe} is not a "
                              "writable directory")
    test = os.path.join(probe, f".tmp-space-probe-{os.getpid()}")
    try:
        with open(test, "wb") as f:
            f.write(b"\0" * _PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(e.errno, f"cannot write {what} {output}: no space left on the "
                          f"device of {probe}") from None
        raise OSError(e.errno, f"cannot write {what} {output}: {e.strerror}") from None
    finally:
        if os.path.exists(test):
            os.remove(test)


@contextlib.contextmanager
def exclusive(path, what="report"):
    """An advisory lock on ``path`` for the ``with`` block, as the trainer holds its run directory.

    The lock is a ``.<name>.lock`` file beside ``path``, removed again at the end: a second
    evaluation writing the same file is refused before any attack instead of both exiting 0
    with one report lost.

    Args:
      path: the file to lock; empty or None locks nothing.
      what: the file's description in the message.

    Yields:
      Nothing; the lock is held inside the block.

    Raises:
      ValueError: another process holds the lock.
    """
    if not path:
        yield
        return
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    lock = os.path.join(parent, f".{os.path.basename(path)}.lock")
    try:
        fd = lock_file(lock)
    except LockHeld as held:
        raise ValueError(f"the {what} {path} is being written by {held.owner}; wait for it "
                         "or choose another file") from None
    try:
        yield
    finally:
        release(fd, lock, remove=True)


def check_logits(logits_fn, x, batch_size, num_classes=None, data="the data"):
    """Checks the model's outputs on every example before any attack.

    They must be 2-D (examples x classes, at least two), one per class of the data when
    ``num_classes`` is given (a 3-class model on 10-class data would be reported as 0%
    accurate, not refused), and finite; NaN or inf stops the evaluation (exit 3) instead of
    being reported as an accuracy.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to logits.
      x: the images, NHWC float in [0, 1].
      batch_size: the examples per call.
      num_classes: the data's number of classes, or None to skip that check.
      data: the data's description in the messages.

    Raises:
      ValueError: outputs of the wrong shape or class count.
      NonFiniteOutputError: a NaN or infinite output.
    """
    import numpy as np
    for i in range(0, len(x), batch_size):
        z = np.asarray(logits_fn(x[i:i + batch_size]))
        if z.ndim != 2 or z.shape[1] < 2:
            raise ValueError(f"the model's outputs have shape {z.shape}; evaluation needs "
                             "logits of shape (examples, classes) with at least 2 classes")
        if num_classes is not None and z.shape[1] != num_classes:
            raise ValueError(f"the model outputs {z.shape[1]} classes and {data} has "
                             f"{num_classes}: no accuracy of it on this data would mean "
                             "anything; evaluate it on the dataset it was trained for")
        bad = ~np.isfinite(z).all(axis=1)
        if bad.any():
            first = i + int(np.argmax(bad))
            raise NonFiniteOutputError(
                f"the model returns non-finite logits (NaN or inf) on {int(bad.sum())} of "
                f"the examples {i}-{i + len(z) - 1} (first: example {first}); nothing is "
                "reported")


def is_partial(output):
    """Whether ``output`` is a report that says it is partial.

    (An interrupted run's; a complete report of an earlier run at the same path is not.)

    Args:
      output: the report's path.

    Returns:
      A bool; False for a missing or unreadable file.
    """
    import json
    if not output:
        return False
    try:
        with open(output) as f:
            return json.load(f).get("partial") is True
    except (OSError, ValueError, AttributeError):
        return False


def sanity_warnings(logits_fn, x):
    """Warnings about a model that every attack would evaluate wrongly.

    Outputs that are probabilities (gradients of the attacks' losses assume logits and
    vanish after a softmax, overestimating robustness;
    ``tf_st.attacks.checks.looks_like_probabilities``, AutoAttack's test too) or outputs that
    do not depend on the input.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to logits.
      x: a few images, NHWC float in [0, 1].

    Returns:
      A list of warning texts (empty if none).
    """
    import numpy as np
    z = np.asarray(logits_fn(x), np.float64)
    out = []
    if looks_like_probabilities(z):
        out.append("the model's outputs look like probabilities (non-negative, rows summing "
                   "to 1), not logits: attacks on them are weaker and robust accuracy is "
                   "overestimated; export the pre-softmax outputs")
    if len(x) > 1 and np.allclose(z, np.asarray(logits_fn(1.0 - x), np.float64), atol=1e-6):
        out.append("the model's outputs do not change when the input does (x vs 1 - x): "
                   "every attack will fail; check the model")
    return out


def evaluate_and_report(logits_fn, *, dataset, data_dir, split, attacks, epsilon, step_size,
                        examples, batch_size, seed, output=None, model_card=None,
                        state_file=None, verbose=True, strategy=None, norm="Linf",
                        audit_examples=None):
    """Runs ``attacks`` on ``dataset/split``, prints the table and writes the JSON report.

    Per-batch attacks run first, then those that evaluate the whole set (AutoAttack), each
    on every example; then, with ``audit_examples``, the gradient-masking audit
    (``tf_st.evaluation.audit``) on the first ``audit_examples`` of them: its table is
    printed, its checks go into the report's ``audit`` block and its figure to
    ``<output stem>_audit.png`` (``"audit"`` is pending, the report partial, until then).

    The report is rewritten after every finished attack with ``"partial": true`` and the
    attacks still ``"pending"``, so a run killed after hours keeps what it measured and
    says it is incomplete; the final write has ``"partial": false``.

    Args:
      logits_fn: function from NHWC float images in [0, 1] to logits.
      dataset: a dataset name of ``tf_st.data``.
      data_dir: the TFDS data dir or image-folder root, or None.
      split: the split to evaluate (``test``, ...).
      attacks: attack names (``tf_st.attacks.parse``) or specs.
      epsilon: the budget in [0, 1] units (an L2 radius with ``norm='L2'``).
      step_size: PGD step in [0, 1] units.
      examples: how many examples (the first ones); None for all.
      batch_size: the examples per attack batch.
      seed: the evaluation's seed.
      output: the JSON report's path, or None to write none.
      model_card: the model card to copy into the report, or None.
      state_file: AutoAttack's resume file, or None.
      verbose: print progress and the table.
      strategy: a ``tf.distribute`` strategy whose replicas attack different batches at
        the same time, with the per-example results of one device; None for one device.
      audit_examples: audit the first N examples (N >= 1) after the attacks; None for no
        audit.  Under several workers only the chief (the writer) audits.
      norm: the threat model of the named attacks, ``'Linf'`` or ``'L2'`` (recorded in
        the report: ``norm``, ``provenance.norm``, AutoAttack's ``model_info``).

    Returns:
      The report (the dict written to ``output``); with the audit, ``report["audit"]`` is
      ``AuditResult.to_json()``.

    Raises:
      ValueError: an unknown attack name, a bad setting, an output that cannot be
        written or is being written by another process.
    """
    # Bad names, unwritable outputs and a foreign AutoAttack state fail before any work.
    norm = check_norm(norm)
    specs = [parse(a, epsilon=epsilon, step_size=step_size, norm=norm) if isinstance(a, str)
             else a for a in attacks]
    check_unique_names(specs)
    check_output_writable(output)
    if state_file and all(s.batched for s in specs):
        import sys
        print(f"warning: --state_file={state_file} is not used: no attack of this run "
              "keeps state (only AutoAttack-type attacks resume from it)", file=sys.stderr)
        state_file = None
    # Only the process that writes takes the locks: under several workers the others read
    # the state file to resume and write nothing (tf_st.distribute.worker_index).
    from tf_st.distribute import worker_index
    writer = strategy is None or worker_index(strategy) == 0
    if state_file and writer:
        check_output_writable(state_file, "the state file")
    with exclusive(output if writer else None), \
            exclusive(state_file if writer else None, "state file"):
        return _evaluate_and_report(
            logits_fn, specs, dataset=dataset, data_dir=data_dir, split=split, epsilon=epsilon,
            step_size=step_size, examples=examples, batch_size=batch_size, seed=seed,
            output=output, model_card=model_card, state_file=state_file, verbose=verbose,
            strategy=strategy, norm=norm,
            audit_examples=audit_examples if writer else None)


def attack_settings(spec):
    """An attack spec's scalar settings (epsilon, step size, steps, restarts, loss, norm,
    ...), JSON-ready.

    Args:
      spec: an attack spec (a dataclass of ``tf_st.attacks.specs``).

    Returns:
      ``{field: value}`` of its int, float, str, bool and None fields.
    """
    if not dataclasses.is_dataclass(spec):
        return {}
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
            if isinstance(getattr(spec, f.name), (int, float, str, bool, type(None)))}


def _evaluate_and_report(logits_fn, specs, *, dataset, data_dir, split, epsilon, step_size,
                         examples, batch_size, seed, output, model_card, state_file, verbose,
                         strategy, norm, audit_examples=None):
    from tf_st import data as tf_st_data

    import numpy as np

    split_obj = tf_st_data.load(dataset, split, data_dir=data_dir)
    x, y = tf_st_data.as_numpy(split_obj, limit=examples)
    batch = min(batch_size, len(x))
    check_logits(logits_fn, x, batch, num_classes=split_obj.num_classes,
                 data=f"{dataset}/{split}")
    whole = [s for s in specs if not s.batched]
    if state_file:
        for spec in whole:
            spec.check_state(logits_fn, x, y, state_file=state_file, seed=seed, batch_size=batch)
    started = time.time()
    card = model_card or {}
    report = {"dataset": dataset, "split": split, "data_note": split_obj.note,
              "num_examples": int(len(x))}
    if model_card:
        report["model"] = {k: model_card.get(k) for k in ("method", "arch", "dataset")}
    report["provenance"] = _provenance(logits_fn, card, dataset=dataset, split=split,
                                       note=split_obj.note, y=y, epsilon=epsilon,
                                       step_size=step_size, seed=seed, norm=norm)
    robust = {}  # attack name -> per-example robust flags, in run order

    def worst_case():
        """Robust under every attack run so far, AutoAttack included."""
        if not robust:
            return {}
        flags = np.logical_and.reduce([np.asarray(f, bool) for f in robust.values()])
        acc = float(flags.mean()) if flags.size else 0.0
        return {"worst_case_accuracy": acc,
                "worst_case": {"accuracy": acc, **interval_fields(flags),
                               "attacks": list(robust)},
                "intervals": INTERVAL_NOTE}

    audit_pending = ["audit"] if audit_examples else []

    def save(done, pending):
        report.update(done)
        report["seconds"] = round(time.time() - started, 2)
        report["partial"] = bool(pending or audit_pending)
        report["pending"] = [s.name for s in pending] + audit_pending
        if output:
            atomic_write_json(output, report, indent=1)

    batched = [s for s in specs if s.batched]

    def with_settings(js):
        """Each attack's entry with the settings it ran with (``pgd_rst`` steps 0.01
        whatever ``step_size`` says at the top of the report)."""
        for spec in batched:
            if spec.name in js["attacks"]:
                js["attacks"][spec.name]["settings"] = attack_settings(spec)
        return js

    def on_attack(res):
        robust.update({name: r.correct for name, r in res.attacks.items()})
        save({**with_settings(res.to_json()), **worst_case()},
             batched[len(res.attacks):] + whole)

    result = evaluate(logits_fn, (x, y), batched, epsilon=epsilon, step_size=step_size,
                      batch_size=batch, seed=seed, verbose=verbose, on_attack=on_attack,
                      strategy=strategy, norm=norm)
    n = len(x)
    # With only whole-set attacks (AutoAttack alone) the per-batch result is empty and
    # counts 0 examples; the report counts what was evaluated.
    report.update({**with_settings(result.to_json()), "num_examples": int(n)})
    rows = [(r.name, r.accuracy, r.seconds, _stderr(r.accuracy, n))
            for r in result.attacks.values()]
    for i, spec in enumerate(whole):
        aa = spec.evaluate(logits_fn, x, y, seed=seed, batch_size=batch,
                           state_file=state_file, verbose=verbose, return_adversarials=False,
                           dataset=dataset, architecture=card.get("arch"), strategy=strategy)
        report["model_info"] = dict(aa.model_info)
        for log in aa.attacks:
            rows.append((f"{spec.name}:{log.name}", log.robust_accuracy, log.seconds,
                         _stderr(log.robust_accuracy, n)))
        rows.append((spec.name, aa.robust_accuracy, aa.seconds,
                     _stderr(aa.robust_accuracy, n)))
        robust[spec.name] = aa.robust_flags
        save({"autoattack": _with_intervals(aa.to_json(), n), **worst_case()}, whole[i + 1:])
    if len(robust) > 1:
        wc = report["worst_case"]
        rows.append(("worst case", wc["accuracy"], None, wc["stderr"]))
    eps_text = f"eps={epsilon:.5f}" + ("" if norm == "Linf" else f" ({norm})")
    print(format_table(rows, header=f"{dataset}/{split}, {len(x)} examples, {eps_text}"
                                    + (f" ({split_obj.note})" if split_obj.note else "")))
    if audit_examples:
        from tf_st.evaluation.audit import audit, figure_path
        save({}, [])  # every attack done; the audit still pending
        checked = audit(logits_fn, x, y, epsilon=epsilon, step_size=step_size, seed=seed,
                        batch_size=batch, examples=audit_examples, verbose=verbose,
                        output_png=figure_path(output) if output else None, norm=norm)
        print(f"audit of the first {checked.examples} examples"
              + (f" (figure: {checked.figure})" if checked.figure else "") + ":")
        print(checked.table())
        audit_pending.clear()
        report["audit"] = checked.to_json()
    save({}, [])
    return report


def _stderr(accuracy, n):
    return accuracy_interval(round(accuracy * n), n)[0]


def _with_intervals(aa_json, n):
    """AutoAttack's report with the standard error and 95% interval of its clean and
    robust accuracies (``clean_stderr``, ``clean_ci95``, ``robust_stderr``,
    ``robust_ci95``) and of each component's cumulative robust accuracy."""
    out = dict(aa_json)
    for kind in ("clean", "robust"):
        fields = interval_fields(out[f"{kind}_flags"])
        out[f"{kind}_stderr"], out[f"{kind}_ci95"] = fields["stderr"], fields["ci95"]
    out["attacks"] = [{**log, **dict(zip(("stderr", "ci95"), accuracy_interval(
        round(log["robust_accuracy"] * n), n)))} for log in out["attacks"]]
    return out


def _provenance(logits_fn, card, *, dataset, split, note, y, epsilon, step_size, seed,
                norm="Linf"):
    """The report's ``provenance`` block (``tf_st.provenance``): what was evaluated (the
    SavedModel's path and fingerprint when ``logits_fn`` is a loaded one, the data split
    and a hash of the example indices and labels), how (epsilon, norm, seeds), with what
    (versions) and when, by which command line."""
    import numpy as np
    path = getattr(logits_fn, "path", None)
    path = os.path.abspath(path) if isinstance(path, str) else None
    n = len(y)
    flags = card.get("flags") if isinstance(card.get("flags"), dict) else {}
    training = flags.get("seed")  # the trainer's seed, from a tf_st model card
    return {"saved_model": path,
            "fingerprint": saved_model_fingerprint(path) if path else None,
            **environment(),
            "dataset": dataset, "split": split, "data_note": note,
            "examples": {"indices": [0, n], "count": n,
                         "indices_labels_sha256": examples_hash(np.arange(n), y),
                         "note": "the first `count` examples of the split, indices "
                                 "[start, stop); the hash is of the indices and labels "
                                 "as int64"},
            "epsilon": float(epsilon), "norm": norm.lower(), "step_size": float(step_size),
            "seeds": {"evaluation": int(seed), "training": training}}


def format_table(rows, header=None):
    """Evaluation rows as a Markdown table with each accuracy's binomial standard error.

    Args:
      rows: ``(name, accuracy, seconds[, stderr])`` tuples (``seconds`` None: left blank).
      header: a line to put above the table, or None.

    Returns:
      The table as text.
    """
    lines = [header] if header else []
    lines += [f"| {'attack':<11} | {'accuracy':>9} | {'± stderr':>8} | {'seconds':>8} |",
              f"|{'-' * 13}|{'-' * 11}|{'-' * 10}|{'-' * 10}|"]
    for name, acc, sec, *err in rows:
        err = err[0] if err else None
        err_text = f"± {100 * err:.2f}" if err is not None else ""
        sec_text = f"{sec:.1f}" if sec is not None else ""
        lines.append(f"| {name:<11} | {100 * acc:>8.2f}% | {err_text:>8} | {sec_text:>8} |")
    return "\n".join(lines)
