"""Collaborative examples (ST paper Sec. 3.1, Eq. 4, Fig. 1-2, Table 5).

``python -m tf_st.analysis collaborative --run_dir=runs/st,runs/natural --output_dir=figs``

Descending PGD on the cross-entropy -- ``x <- Proj(x - alpha * sign(grad CE))`` from the
benign ``x``, alpha = 1/255, 100 steps -- at each budget of ``--epsilons`` (4/255, 8/255,
16/255, 32/255).  Writes ``collaborative.csv`` (per model and budget: mean and std of the benign
and the collaborative CE, as in Fig. 1 and Table 5), ``collaborative_examples.csv`` (per
example), ``collaborative.png`` (CE against budget, one line per model, shaded +-std;
the benign CE dashed) and ``collaborative_grid.png`` (benign / collaborative /
perturbation rows at ``--grid_epsilon``, the perturbation mapped from [-eps, eps] to
[0, 1]; Fig. 2).  Iterates are also clipped to [0, 1] (valid images; the paper's Eq. 4
projects onto the ball only).
"""

import os

import numpy as np
import tensorflow as tf
from absl import flags

from tf_st import cli
from tf_st.analysis import common
from tf_st.attacks import losses
from tf_st.attacks.pgd import pgd


def define_flags(fv):
    cli.define_floats("epsilons", [4 / 255, 8 / 255, 16 / 255, 32 / 255], "Budgets.",
                      flag_values=fv)
    flags.register_validator("epsilons", lambda v: all(0 < e <= 1 for e in v),
                             "--epsilons must be in (0, 1] image units (8/255 = 0.0314, not 8)",
                             flag_values=fv)
    cli.define_float("step_size", 1 / 255, "Step (paper: 1/255).", flag_values=fv,
                     lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("steps", 100, "Descent steps (paper: 100).", lower_bound=0,
                         flag_values=fv)
    cli.define_float("grid_epsilon", 16 / 255, "Budget of the image grid.", flag_values=fv,
                     lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("grid_examples", 8, "Examples in the image grid.", lower_bound=1,
                         flag_values=fv)


def collaborative_examples(logits_fn, x, y, *, epsilon, step_size=1 / 255, steps=100):
    """Eq. 4: ``steps`` sign-gradient *descent* steps on CE from ``x`` itself, projected
    onto the L-inf ``epsilon``-ball and [0, 1]."""
    return pgd(logits_fn, x, y, epsilon=epsilon, step_size=step_size, steps=steps,
               random_start=False, targeted=True)


def cross_entropy(logits_fn, x, y):
    return losses.cross_entropy(losses.as_float(logits_fn(x)), y)


def measure(logits_fn, x, y, epsilons, *, step_size=1 / 255, steps=100, batch_size=100,
            progress=None):
    """``{"benign": ce[N], eps: ce[N], ...}`` (float64 numpy) and the collaborative
    examples of each budget."""

    @tf.function(reduce_retracing=True)
    def run(xb, yb, eps):
        x_col = collaborative_examples(logits_fn, xb, yb, epsilon=eps, step_size=step_size,
                                       steps=steps)
        return cross_entropy(logits_fn, x_col, yb), x_col

    ce = {"benign": np.concatenate([
        np.asarray(cross_entropy(logits_fn, tf.constant(x[s]), tf.constant(y[s])), np.float64)
        for s in common.batches(len(x), batch_size)])}
    examples = {}
    for eps in epsilons:
        vals, cols = [], []
        for s in common.batches(len(x), batch_size):
            c, xc = run(tf.constant(x[s]), tf.constant(y[s]), tf.constant(eps, tf.float32))
            vals.append(np.asarray(c, np.float64))
            cols.append(xc.numpy())
            if progress:
                progress.update(1, f"eps={eps * 255:g}/255")
        ce[eps], examples[eps] = np.concatenate(vals), np.concatenate(cols)
    return ce, examples


def run(fv):
    srcs = common.sources(fv)
    out = common.output_dir(fv)
    x, y, _ = common.load_examples(fv, srcs[0].model.image_shape)
    epsilons = [float(e) for e in fv["epsilons"].value]
    if any(not 0 < e <= 1 for e in epsilons):
        raise ValueError("--epsilons must be in (0, 1] image units (8/255 = 0.0314, not 8)")
    grid_eps = fv["grid_epsilon"].value
    budgets = sorted(set(epsilons) | {grid_eps})
    n_batches = -(-len(x) // fv["batch_size"].value)
    progress = common.Progress("collaborative", len(srcs) * len(budgets) * n_batches)
    summary, per_example, grids = [], [], {}
    for src in srcs:
        ce, ex = measure(src, x, y, budgets, step_size=fv["step_size"].value,
                         steps=fv["steps"].value, batch_size=fv["batch_size"].value,
                         progress=progress)
        for eps in epsilons:
            summary.append(dict(model=src.label, epsilon_255=round(eps * 255, 6),
                                benign_ce_mean=ce["benign"].mean(), benign_ce_std=ce["benign"].std(),
                                collaborative_ce_mean=ce[eps].mean(),
                                collaborative_ce_std=ce[eps].std(), examples=len(x)))
            per_example += [dict(model=src.label, epsilon_255=round(eps * 255, 6), index=i,
                                 label=int(y[i]), benign_ce=ce["benign"][i],
                                 collaborative_ce=ce[eps][i]) for i in range(len(x))]
        grids[src.label] = ex[grid_eps][: fv["grid_examples"].value]
    files = [common.write_csv(os.path.join(out, "collaborative.csv"), summary),
             common.write_csv(os.path.join(out, "collaborative_examples.csv"), per_example),
             plot(summary, os.path.join(out, "collaborative.png")),
             plot_grid(x[: fv["grid_examples"].value], grids, grid_eps,
                       os.path.join(out, "collaborative_grid.png"))]
    common.announce(files)
    return summary


def plot(summary, path):
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for i, label in enumerate(dict.fromkeys(r["model"] for r in summary)):
        rows = [r for r in summary if r["model"] == label]
        e = np.array([r["epsilon_255"] for r in rows])
        m = np.array([r["collaborative_ce_mean"] for r in rows])
        s = np.array([r["collaborative_ce_std"] for r in rows])
        color = f"C{i}"
        ax.plot(e, m, "o-", color=color, label=f"{label}: collaborative")
        ax.fill_between(e, np.maximum(m - s, 0), m + s, color=color, alpha=0.2)
        ax.axhline(rows[0]["benign_ce_mean"], color=color, ls="--", label=f"{label}: benign")
    ax.set_xlabel(r"perturbation budget $\epsilon$ (/255)")
    ax.set_ylabel("cross-entropy loss")
    ax.set_xticks(sorted({r["epsilon_255"] for r in summary}))
    ax.legend(fontsize=7)
    ax.set_title("Benign vs collaborative examples")
    return common.save_figure(fig, path)


def plot_grid(x, collaborative, eps, path):
    plt = common.pyplot()
    rows = 1 + 2 * len(collaborative)
    n = len(x)
    fig, axes = plt.subplots(rows, n, figsize=(1.1 * n, 1.2 * rows), squeeze=False)
    panels = [("benign", x)]
    for label, xc in collaborative.items():
        panels += [(f"{label}: collaborative", xc),
                   (f"{label}: perturbation", np.clip(0.5 + (xc - x) / (2 * eps), 0, 1))]
    for r, (title, images) in enumerate(panels):
        for c in range(n):
            ax = axes[r, c]
            img = images[c]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img,
                      cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle(f"collaborative examples, eps = {eps * 255:g}/255", fontsize=8)
    return common.save_figure(fig, path)
