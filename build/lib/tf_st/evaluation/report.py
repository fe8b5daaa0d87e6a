"""Evaluation with data loading, a printed table and a JSON report; shared by
``export.evaluate`` and the trainers' final evaluation."""

import json
import os
import time


from tf_st.evaluation.robustness import evaluate, parse_attack


def evaluate_and_report(logits_fn, *, dataset, data_dir, split, attacks, epsilon, step_size,
                        examples, batch_size, seed, output=None, model_card=None,
                        state_file=None, verbose=True):
    from tf_st import data as tf_st_data

    attacks = list(attacks)
    for a in attacks:
        if a != "aa":
            parse_attack(a)  # fail on a bad name before any work
    split_obj = tf_st_data.load(dataset, split, data_dir=data_dir)
    x, y = tf_st_data.as_numpy(split_obj, limit=examples)
    plain = [a for a in attacks if a != "aa"]
    started = time.time()
    result = evaluate(logits_fn, (x, y), plain, epsilon=epsilon, step_size=step_size,
                      batch_size=min(batch_size, len(x)), seed=seed, verbose=verbose)
    report = {"dataset": dataset, "split": split, "data_note": split_obj.note,
              "num_examples": int(len(x)), **result.to_json()}
    rows = [(r.name, r.accuracy, r.seconds) for r in result.attacks.values()]
    if "aa" in attacks:
        from tf_st.attacks import autoattack
        card = model_card or {}
        aa = autoattack.evaluate(logits_fn, x, y, epsilon=epsilon, version="standard",
                                 seed=seed, batch_size=min(batch_size, len(x)),
                                 state_file=state_file, verbose=verbose,
                                 return_adversarials=False, dataset=dataset,
                                 architecture=card.get("arch"))
        report["autoattack"] = aa.to_json()
        report["model_info"] = dict(aa.model_info)
        for log in aa.attacks:
            rows.append((f"aa:{log.name}", log.robust_accuracy, log.seconds))
        rows.append(("aa", aa.robust_accuracy, aa.seconds))
    report["seconds"] = round(time.time() - started, 2)
    if model_card:
        report["model"] = {k: model_card.get(k) for k in ("method", "arch", "dataset")}
    print(format_table(rows, header=f"{dataset}/{split}, {len(x)} examples, eps={epsilon:.5f}"
                                    + (f" ({split_obj.note})" if split_obj.note else "")))
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        tmp = output + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, output)
    return report


def format_table(rows, header=None):
    lines = [header] if header else []
    lines += [f"| {'attack':<11} | {'accuracy':>9} | {'seconds':>8} |",
              f"|{'-' * 13}|{'-' * 11}|{'-' * 10}|"]
    for name, acc, sec in rows:
        lines.append(f"| {name:<11} | {100 * acc:>8.2f}% | {sec:>8.1f} |")
    return "\n".join(lines)
