"""Attack cost per epoch: FAT's early-stopped PGD against fixed-K methods (FAT paper
Fig. 5).

``python -m tf_st.analysis fat_cost --run_dir=runs/fat,runs/madry --output_dir=figs``

For each run: the mean number of attack gradient steps per training example in each
epoch.  ``fat*`` runs log it (``train_bp`` in ``metrics.csv``: PGD-K-tau stops early
per example); a fixed-K method takes ``steps`` for every example (ST: ``2 * steps``, its
adversarial and collaborative points each take a gradient step; the ``*2`` neighbour
variants and CAT likewise count their extra points).  Each step is one backward pass
through the network, so this is the attack's share of the training cost.  Writes
``fat_cost.csv`` (run, method, epoch, steps per example, relative to the largest fixed-K
run) and ``fat_cost.png``.  Only ``--run_dir`` applies.
"""

import os

import numpy as np

from tf_st.analysis import common
from tf_st.analysis.curves import read_metrics

# Points per example that take an attack gradient step each inner iteration.
POINTS = {"st": 2, "madry2": 2, "trades2": 2, "mart2": 2, "natural": 0, "cat": 2}


def define_flags(fv):
    del fv  # the shared flags only


def steps_per_example(run_dir):
    """``(method, epochs[E], steps[E], logged)``; ``logged``: measured by the run (FAT)
    rather than fixed by its settings."""
    settings = common.run_settings(run_dir)
    method, hp = settings["method"], settings.get("hparams", {})
    rows = read_metrics(run_dir)
    epochs = np.array([int(r["epoch"]) for r in rows])
    if rows and "train_bp" in rows[0]:
        return method, epochs, np.array([r["train_bp"] for r in rows], float), True
    if method == "natural":
        steps = 0
    elif "steps" not in hp or hp["steps"] is None:
        raise ValueError(f"{run_dir}: method {method!r} records neither train_bp nor steps")
    else:
        steps = float(hp["steps"]) * POINTS.get(method, 1)
    return method, epochs, np.full(len(epochs), steps, float), False


def run(fv):
    runs = common.run_dirs(fv, "fat_cost")
    out = common.output_dir(fv)
    series = [(label, *steps_per_example(rd)) for label, rd in runs]
    fixed = [s[3].max() for s in series if not s[4] and len(s[3])]
    ref = max(fixed) if fixed else None
    rows = [dict(run=label, method=method, epoch=int(e), steps_per_example=float(v),
                 measured=logged, relative_to_fixed=(float(v) / ref if ref else ""))
            for label, method, epochs, vals, logged in series for e, v in zip(epochs, vals)]
    files = [common.write_csv(os.path.join(out, "fat_cost.csv"), rows),
             plot(series, os.path.join(out, "fat_cost.png"))]
    common.announce(files)
    return rows


def plot(series, path):
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for i, (label, method, epochs, vals, logged) in enumerate(series):
        ax.plot(epochs, vals, "o-" if logged else "--", ms=3, color=f"C{i}",
                label=f"{label} ({method}{'' if logged else ', fixed'})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("attack gradient steps per example")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title("Attack cost per epoch (backward passes)")
    return common.save_figure(fig, path)
