"""Evaluation with data loading, a printed table and a JSON report; shared by
``export.evaluate`` and the trainers' final evaluation."""

import os
import time

from tf_st.attacks.checks import looks_like_probabilities
from tf_st.attacks.specs import parse
from tf_st.evaluation.robustness import evaluate
from tf_st.fileio import atomic_write_json


def check_output_writable(output):
    """Fails now, not after hours of attacks, if the report cannot be written."""
    if not output:
        return
    parent = os.path.dirname(os.path.abspath(output))
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        raise PermissionError(f"cannot write the report {output}: {probe} is not a "
                              "writable directory")


def is_partial(output):
    """Whether ``output`` is a report that says it is partial (an interrupted run's; a
    complete report of an earlier run at the same path is not)."""
    import json
    if not output:
        return False
    try:
        with open(output) as f:
            return json.load(f).get("partial") is True
    except (OSError, ValueError, AttributeError):
        return False


def sanity_warnings(logits_fn, x):
    """Warnings about a model that every attack would evaluate wrongly: outputs that are
    probabilities (gradients of the attacks' losses assume logits and vanish after a
    softmax, overestimating robustness; ``tf_st.attacks.checks.looks_like_probabilities``,
    AutoAttack's test too) or outputs that do not depend on the input."""
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
                        state_file=None, verbose=True, strategy=None):
    """Runs ``attacks`` (names or specs) on ``examples`` of ``dataset/split``, prints the
    table and writes the JSON report to ``output``; per-batch attacks first, then those
    that evaluate the whole set (AutoAttack), each on every example.

    The report is rewritten after every finished attack with ``"partial": true`` and the
    attacks still ``"pending"``, so a run killed after hours keeps what it measured and
    says it is incomplete; the final write has ``"partial": false``.

    ``strategy``: replicas attack different batches at the same time, with the
    per-example results of one device (``robustness.evaluate``)."""
    from tf_st import data as tf_st_data

    # Bad names, unwritable outputs and a foreign AutoAttack state fail before any work.
    specs = [parse(a, epsilon=epsilon, step_size=step_size) if isinstance(a, str) else a
             for a in attacks]
    check_output_writable(output)
    split_obj = tf_st_data.load(dataset, split, data_dir=data_dir)
    x, y = tf_st_data.as_numpy(split_obj, limit=examples)
    batch = min(batch_size, len(x))
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

    def save(done, pending):
        report.update(done)
        report["seconds"] = round(time.time() - started, 2)
        report["partial"] = bool(pending)
        report["pending"] = [s.name for s in pending]
        if output:
            atomic_write_json(output, report, indent=1)

    batched = [s for s in specs if s.batched]

    def on_attack(res):
        save(res.to_json(), batched[len(res.attacks):] + whole)

    result = evaluate(logits_fn, (x, y), batched, epsilon=epsilon, step_size=step_size,
                      batch_size=batch, seed=seed, verbose=verbose, on_attack=on_attack,
                      strategy=strategy)
    report.update(result.to_json())
    rows = [(r.name, r.accuracy, r.seconds) for r in result.attacks.values()]
    for i, spec in enumerate(whole):
        aa = spec.evaluate(logits_fn, x, y, seed=seed, batch_size=batch,
                           state_file=state_file, verbose=verbose, return_adversarials=False,
                           dataset=dataset, architecture=card.get("arch"), strategy=strategy)
        report["model_info"] = dict(aa.model_info)
        for log in aa.attacks:
            rows.append((f"{spec.name}:{log.name}", log.robust_accuracy, log.seconds))
        rows.append((spec.name, aa.robust_accuracy, aa.seconds))
        save({"autoattack": aa.to_json()}, whole[i + 1:])
    print(format_table(rows, header=f"{dataset}/{split}, {len(x)} examples, eps={epsilon:.5f}"
                                    + (f" ({split_obj.note})" if split_obj.note else "")))
    save({}, [])
    return report


def format_table(rows, header=None):
    lines = [header] if header else []
    lines += [f"| {'attack':<11} | {'accuracy':>9} | {'seconds':>8} |",
              f"|{'-' * 13}|{'-' * 11}|{'-' * 10}|"]
    for name, acc, sec in rows:
        lines.append(f"| {name:<11} | {100 * acc:>8.2f}% | {sec:>8.1f} |")
    return "\n".join(lines)
