"""Hyperparameter sweeps over seeds, aggregated with 95% confidence intervals (ST paper
Fig. 6; Table 1's "average of seven runs with 95% confidence intervals").

``python -m tf_st.analysis sweep --method=st --beta=4,6,8,12 --seeds=1,2,3 \\
    --output_dir=runs/sweep_st --train_flags="--dataset=cifar10 --epochs=120" --parallel=2``

Runs (or resumes) one trainer per (beta, seed) in ``<output_dir>/runs/<method>_beta<b>_seed<s>``
as independent processes (``--parallel`` at a time; each trainer resumes from its own
checkpoint, so rerunning the sweep after a kill continues where it stopped; a run whose
``evaluation.json`` is complete is not started again).  Then aggregates every
``evaluation.json``: per beta and attack, the mean accuracy over seeds and the half-width
of its 95% confidence interval, ``t(0.975, n - 1) * s / sqrt(n)`` (Student's t, sample
standard deviation ``s``).  Writes ``sweep.csv`` (one row per beta and attack),
``sweep_runs.csv`` (one row per run), ``sweep.json`` and ``sweep.png`` (robust against
clean accuracy, one point per beta with its intervals, Fig. 6), and prints the table.
``--aggregate_only`` skips the training.  Trainer logs go to ``<output_dir>/logs``.
"""

import json
import math
import os
import shlex
import subprocess
import sys
import time

import numpy as np
from absl import flags

from tf_st.analysis import common

# Two-sided 95% Student t quantiles t(0.975, df); between entries the smaller df's
# (larger, conservative) value is used; beyond 120, the normal 1.96.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
         16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042,
         40: 2.021, 60: 2.000, 120: 1.980}


def define_flags(fv):
    flags.DEFINE_string("method", None, "Trainer method key (st, trades, ...).", flag_values=fv)
    flags.DEFINE_list("beta", [], "Values of --beta to sweep.", flag_values=fv)
    flags.DEFINE_list("seeds", ["1"], "Seeds (one run per seed and beta).", flag_values=fv)
    flags.DEFINE_string("train_flags", "", "More trainer flags, shell-quoted, for every run.",
                        flag_values=fv)
    flags.DEFINE_integer("parallel", 1, "Runs at a time.", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("aggregate_only", False, "Do not train; aggregate what exists.",
                      flag_values=fv)


def t975(df):
    if df < 1:
        return math.nan
    if df > 120:
        return 1.96
    return _T975[max(k for k in _T975 if k <= df)]


def mean_ci(values):
    """``(mean, half-width of the 95% CI, n)``; the half-width is NaN for one value."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    if len(v) == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), float(t975(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))), len(v)


def run_name(method, beta, seed):
    return f"{method}_beta{beta}_seed{seed}"


def finished(run_dir):
    path = os.path.join(run_dir, "evaluation.json")
    if not os.path.isfile(path):
        return False
    try:
        with open(path) as f:
            return not json.load(f).get("partial", False)
    except ValueError:
        return False


def train_all(jobs, parallel, log_dir):
    """Runs ``jobs`` (``(name, argv)``) ``parallel`` at a time; returns ``{name: status}``."""
    os.makedirs(log_dir, exist_ok=True)
    pending, running, status = list(jobs), {}, {}
    started = time.time()
    total = len(jobs)
    while pending or running:
        while pending and len(running) < parallel:
            name, argv = pending.pop(0)
            log = open(os.path.join(log_dir, f"{name}.log"), "a")
            running[name] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log)
            print(f"[sweep] started {name} ({len(status) + len(running)}/{total})", flush=True)
        time.sleep(0.5)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                status[name] = proc.returncode
                del running[name]
                print(f"[sweep] {name} {'finished' if proc.returncode == 0 else 'FAILED (exit ' + str(proc.returncode) + ', see ' + os.path.join(log_dir, name + '.log') + ')'}"
                      f" [{len(status)}/{total}, {time.time() - started:.0f}s]", flush=True)
    return status


def _accuracy(report, attack):
    if attack == "aa":
        return report["autoattack"]["robust_accuracy"] if "autoattack" in report else None
    return report.get("attacks", {}).get(attack, {}).get("accuracy")


def aggregate(results):
    """``results``: ``[(beta, seed, report dict)]`` -> rows per (beta, attack)."""
    rows = []
    betas = sorted({b for b, _, _ in results}, key=float)
    for beta in betas:
        reports = [r for b, _, r in results if b == beta]
        attacks = list(dict.fromkeys(a for r in reports for a in r.get("attacks", {})))
        if any("autoattack" in r for r in reports):
            attacks.append("aa")
        for attack in attacks:
            m, h, n = mean_ci([_accuracy(r, attack) for r in reports])
            rows.append(dict(beta=beta, attack=attack, mean=m, ci95=h, runs=n))
    return rows


def run(fv):
    method = fv["method"].value
    from tf_st import methods
    if method not in methods.METHODS:
        raise ValueError(f"--method must be one of {sorted(methods.METHODS)}")
    betas, seeds = list(fv["beta"].value), list(fv["seeds"].value)
    if not betas:
        raise ValueError("give --beta values to sweep (e.g. --beta=4,6,8)")
    for b in betas:
        float(b)  # ValueError names the value
    seeds = [int(s) for s in seeds]
    out = common.output_dir(fv)
    extra = shlex.split(fv["train_flags"].value)
    bad = [f for f in extra if f.split("=")[0] in ("--beta", "--seed", "--output_dir",
                                                  "--method")]
    if bad:
        raise ValueError(f"--train_flags may not set {bad[0]}: the sweep sets it")
    grid = [(b, s, os.path.join(out, "runs", run_name(method, b, s))) for b in betas for s in seeds]
    if not fv["aggregate_only"].value:
        jobs = [(os.path.basename(d), [sys.executable, "-m", "trainers.train", f"--method={method}",
                                       f"--beta={b}", f"--seed={s}", f"--output_dir={d}", *extra])
                for b, s, d in grid if not finished(d)]
        print(f"[sweep] {len(grid) - len(jobs)} of {len(grid)} runs already finished", flush=True)
        status = train_all(jobs, fv["parallel"].value, os.path.join(out, "logs"))
        failed = [n for n, c in status.items() if c != 0]
    else:
        failed = []
    results, per_run = [], []
    for b, s, d in grid:
        if finished(d):
            with open(os.path.join(d, "evaluation.json")) as f:
                rep = json.load(f)
            results.append((b, s, rep))
            per_run.append(dict(beta=b, seed=s, run_dir=d,
                                **{a: v["accuracy"] for a, v in rep.get("attacks", {}).items()},
                                **({"aa": rep["autoattack"]["robust_accuracy"]}
                                   if "autoattack" in rep else {})))
    if not results:
        raise ValueError(f"no finished run to aggregate in {out}/runs"
                         + (f" ({len(failed)} failed: see {out}/logs)" if failed else ""))
    rows = aggregate(results)
    files = [common.write_csv(os.path.join(out, "sweep.csv"), rows),
             common.write_csv(os.path.join(out, "sweep_runs.csv"), per_run),
             common.write_json(os.path.join(out, "sweep.json"),
                               {"method": method, "betas": betas, "seeds": seeds,
                                "train_flags": extra, "rows": rows, "missing":
                                [run_name(method, b, s) for b, s, d in grid if not finished(d)]}),
             plot(rows, method, os.path.join(out, "sweep.png"))]
    print(format_table(rows))
    common.announce(files)
    if failed:
        raise RuntimeError(f"{len(failed)} runs failed ({', '.join(failed)}); their logs are in "
                           f"{out}/logs; the table aggregates the finished ones")
    return rows


def format_table(rows):
    lines = ["| beta | attack | mean | 95% CI | runs |", "|---|---|---|---|---|"]
    for r in rows:
        ci = "n/a" if math.isnan(r["ci95"]) else f"+-{100 * r['ci95']:.2f}"
        lines.append(f"| {r['beta']} | {r['attack']} | {100 * r['mean']:.2f}% | {ci} | {r['runs']} |")
    return "\n".join(lines)


def plot(rows, method, path):
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    betas = list(dict.fromkeys(r["beta"] for r in rows))
    for beta in betas:
        by = {r["attack"]: r for r in rows if r["beta"] == beta}
        robust = by.get("aa") or next((by[a] for a in reversed(list(by)) if a != "clean"), None)
        clean = by.get("clean")
        if robust is None or clean is None:
            continue
        ax.errorbar(100 * clean["mean"], 100 * robust["mean"],
                    xerr=None if math.isnan(clean["ci95"]) else 100 * clean["ci95"],
                    yerr=None if math.isnan(robust["ci95"]) else 100 * robust["ci95"],
                    fmt="o", color="C0", capsize=3)
        ax.annotate(f"beta={beta}", (100 * clean["mean"], 100 * robust["mean"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
        ax.set_ylabel(f"robust accuracy ({robust['attack']}, %)")
    ax.set_xlabel("clean accuracy (%)")
    ax.set_title(f"{method}: clean vs robust accuracy over beta (95% CI)", fontsize=9)
    return common.save_figure(fig, path)
