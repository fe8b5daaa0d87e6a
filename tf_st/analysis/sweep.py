"""Hyperparameter sweeps over seeds, aggregated with 95% confidence intervals (ST paper
Fig. 6; Table 1's "average of seven runs with 95% confidence intervals").

``python -m tf_st.analysis sweep --method=st --beta=4,6,8,12 --seeds=1,2,3 \\
    --output_dir=runs/sweep_st --train_flags="--dataset=cifar10 --epochs=120" --parallel=2``

Runs (or resumes) one experiment per (beta, seed) in
``<output_dir>/runs/<method>_beta<b>_seed<s>`` through the run layer
(``tf_st.experiment.run``; ``--train_flags`` are the trainer's flags, parsed and checked
for every run before the first starts): in this process with ``--parallel=1``, else in
``--parallel`` spawned worker processes at a time (TensorFlow's runtime is one per
process).  Each run resumes from its own checkpoint, so rerunning the sweep after a kill
continues where it stopped; a run whose ``evaluation.json`` is complete is not started
again.  Then aggregates every
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
import contextlib
import multiprocessing
import shlex
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


def run_settings(method, extra, beta, seed, run_dir):
    """``(resolved Settings, flags.txt text)`` of one run: ``extra`` (the trainer's flags)
    parsed by the trainer's own flag declarations (``tf_st.experiment.config``) on a
    private registry, so a bad flag fails before any run starts."""
    from tf_st import methods
    from tf_st.experiment import config, runner
    fv = flags.FlagValues()
    flag_set = config.FlagSet(fv, methods.METHODS)
    fv(["sweep"] + list(extra) + [f"--beta={beta}", f"--seed={seed}", f"--output_dir={run_dir}"])
    settings = runner.resolve(flag_set.settings(method))
    return settings, flag_set.flagfile_text(settings)


def _run_logged(settings, flagfile_text, log_path):
    """One run with its output appended to ``log_path``; returns the exit status of the
    trainer CLI's error policy (0, 2 bad input, 3 diverged, ...)."""
    from tf_st import cli
    from tf_st.experiment import runner
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        try:
            runner.run(settings, flagfile_text=flagfile_text)
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - cli.report re-raises bugs
            return cli.report(e)
    return 0


def _worker(settings, flagfile_text, log_path):
    if settings.deterministic:  # before this process imports TensorFlow
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    sys.exit(_run_logged(settings, flagfile_text, log_path))


def train_all(jobs, parallel, log_dir):
    """Runs ``jobs`` (``(name, settings, flags.txt text)``), in this process when
    ``parallel`` is 1, else ``parallel`` spawned processes at a time; returns ``{name:
    status}``."""
    os.makedirs(log_dir, exist_ok=True)
    started, total, status = time.time(), len(jobs), {}

    def done(name, code):
        status[name] = code
        outcome = "finished" if code == 0 else (
            f"FAILED (exit {code}, see {os.path.join(log_dir, name + '.log')})")
        print(f"[sweep] {name} {outcome} [{len(status)}/{total}, {time.time() - started:.0f}s]",
              flush=True)

    if parallel == 1:
        for i, (name, settings, text) in enumerate(jobs):
            print(f"[sweep] started {name} ({i + 1}/{total})", flush=True)
            done(name, _run_logged(settings, text, os.path.join(log_dir, f"{name}.log")))
        return status
    context = multiprocessing.get_context("spawn")
    pending, running = list(jobs), {}
    while pending or running:
        while pending and len(running) < parallel:
            name, settings, text = pending.pop(0)
            proc = context.Process(target=_worker, name=name,
                                   args=(settings, text, os.path.join(log_dir, f"{name}.log")))
            proc.start()
            running[name] = proc
            print(f"[sweep] started {name} ({len(status) + len(running)}/{total})", flush=True)
        time.sleep(0.5)
        for name, proc in list(running.items()):
            if not proc.is_alive():
                proc.join()
                del running[name]
                done(name, proc.exitcode)
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
        jobs = [(os.path.basename(d), *run_settings(method, extra, b, s, d))
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
