"""Per-epoch curves of trainer runs (ST paper Fig. 4, 5, 8, 9, 10), from their
``metrics.csv`` (what the trainer logged each epoch, also in TensorBoard).

``python -m tf_st.analysis curves --run_dir=runs/trades,runs/st --output_dir=figs``
    clean (dashed) and robust (solid) test accuracy per epoch of each run (Fig. 4, 9, 10;
    the robust attack is the run's selection attack, PGD-20 by default).
``... curves --run_dir=runs/trades --metrics=train_col_ratio``
    TRADES' collaborative ratio per epoch (Fig. 5, lower): the fraction of inner
    maximisers whose CE is below the benign CE.
``... curves --run_dir=runs/st --metrics=train_ce,train_ce_upper,train_ce_lower``
    ST's CE of x, of the up-role and of the low-role points per epoch (Fig. 8).

Writes ``curves.csv`` (run, epoch and the plotted columns) and ``curves.png``.  Only
``--run_dir`` applies (no model is loaded).
"""

import csv
import os
import re

import numpy as np
from absl import flags

from tf_st.analysis import common


def define_flags(fv):
    flags.DEFINE_list("metrics", [], "metrics.csv columns to plot (default: the test clean "
                      "and robust accuracies).", flag_values=fv)
    flags.DEFINE_string("name", "curves", "Base name of the output files.", flag_values=fv)


def read_metrics(run_dir):
    """Rows of ``run_dir/metrics.csv`` as dicts of floats (empty cells -> NaN)."""
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir} has no metrics.csv (not a trainer run, or no "
                                "epoch finished yet)")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        row = {}
        for k, v in r.items():
            try:
                row[k] = float(v) if v not in ("", None) else float("nan")
            except ValueError:
                row[k] = v
        out.append(row)
    return out


def accuracy_columns(columns):
    """``[(clean column, robust column, network prefix)]`` of a metrics.csv header."""
    out = []
    for c in columns:
        # test_..., or holdout_... for a run that selected on a holdout.
        m = re.fullmatch(r"(.*?)(test|holdout)_clean_acc", c)
        if m:
            prefix, split = m.group(1), m.group(2) + "_"
            robust = [d for d in columns if d.startswith(prefix + split) and d != c
                      and d.endswith("_acc")
                      and d[len(prefix + split):-4].count("_") == 0]
            out.append((c, robust[0] if robust else None, prefix))
    return out


def run(fv):
    runs = common.run_dirs(fv, "curves")
    out = common.output_dir(fv)
    wanted = list(fv["metrics"].value)
    series, rows = [], []
    for label, rd in runs:
        data = read_metrics(rd)
        columns = list(data[0]) if data else []
        epochs = np.array([r["epoch"] for r in data])
        if wanted:
            missing = [m for m in wanted if m not in columns]
            if missing:
                raise ValueError(f"{rd}/metrics.csv has no column {missing[0]!r}; it has "
                                 f"{[c for c in columns if c != 'epoch']}")
            for m in wanted:
                series.append((label, m, epochs, np.array([r[m] for r in data]), "-"))
        else:
            for clean, robust, prefix in accuracy_columns(columns):
                name = label + (f" [{prefix.rstrip('_')}]" if prefix else "")
                series.append((name, clean, epochs, np.array([r[clean] for r in data]), "--"))
                if robust:
                    series.append((name, robust, epochs, np.array([r[robust] for r in data]), "-"))
        for r in data:
            rows.append({"run": label, "epoch": int(r["epoch"]),
                         **{m: r.get(m) for m in (wanted or [c for c in columns
                                                             if c.endswith("_acc")])}})
    name = fv["name"].value
    files = [common.write_csv(os.path.join(out, f"{name}.csv"), rows),
             plot(series, bool(wanted), os.path.join(out, f"{name}.png"))]
    common.announce(files)
    return series


def plot(series, custom, path):
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    colors = {}
    for label, column, epochs, values, style in series:
        key = label if not custom else (label, column)
        colors.setdefault(key, f"C{len(colors)}")
        pretty = (column.replace("test_", "").replace("holdout_", "holdout ")
                  .replace("_acc", "").replace("train_", ""))
        scale = 100.0 if column.endswith("_acc") or column.endswith("ratio") else 1.0
        ax.plot(epochs, values * scale, style, marker="o", ms=3, color=colors[key],
                label=f"{label}: {pretty}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)" if not custom else
                  ("%" if all(c.endswith(("_acc", "ratio")) for _, c, *_ in series) else "value"))
    ax.legend(fontsize=7)
    return common.save_figure(fig, path)
