"""Angles between adversarial and collaborative perturbations (ST paper Appendix B,
Fig. 7).

``python -m tf_st.analysis angles --run_dir=runs/st --output_dir=figs``

For each number of steps K in ``--steps_list``: the PGD-K adversarial perturbation
(sign-gradient ascent on CE from ``x``, no random start, step ``--step_size``)
and the collaborative one (the same descending, Eq. 4), both within ``--epsilon``; the
angle between them in the flattened input space, per example.  At K = 1 they are
opposite (180 degrees) wherever neither is clipped by [0, 1]; as K grows they tend to
90 degrees.  Writes ``angles.csv`` (per model, K and example), ``angles_summary.csv``
(mean, std, quartiles) and ``angles.png`` (histograms per K, one panel per model).
"""

import os

import numpy as np
import tensorflow as tf
from absl import flags

from tf_st import cli
from tf_st.analysis import common
from tf_st.attacks.pgd import pgd


def define_flags(fv):
    cli.define_float("epsilon", 8 / 255, "Budget.", flag_values=fv, lower_bound=0.0, upper_bound=1.0)
    cli.define_float("step_size", 2 / 255, "Step.", flag_values=fv, lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_list("steps_list", ["1", "2", "5", "10", "20"], "Numbers of steps K.",
                      flag_values=fv)


_COMPILED = {}


def _perturbations(logits_fn, epsilon, step_size, steps):
    """One compiled (adversarial, collaborative) pair per model and setting."""
    key = (id(logits_fn), float(epsilon), float(step_size), int(steps))
    if key not in _COMPILED:
        kw = dict(epsilon=epsilon, step_size=step_size, steps=steps, random_start=False)

        @tf.function(reduce_retracing=True)
        def both(x, y):
            return (pgd(logits_fn, x, y, **kw) - x,
                    pgd(logits_fn, x, y, targeted=True, **kw) - x)
        _COMPILED[key] = both
    return _COMPILED[key]


def angles(logits_fn, x, y, *, epsilon, step_size, steps):
    """Degrees between ``x_adv - x`` and ``x_col - x`` per example (NaN where either is 0)."""
    d_adv, d_col = _perturbations(logits_fn, epsilon, step_size, steps)(
        tf.constant(x), tf.constant(y))
    d_adv = d_adv.numpy().reshape(len(x), -1).astype(np.float64)
    d_col = d_col.numpy().reshape(len(x), -1).astype(np.float64)
    na, nc = np.linalg.norm(d_adv, axis=1), np.linalg.norm(d_col, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (d_adv * d_col).sum(1) / (na * nc)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def run(fv):
    srcs = common.sources(fv)
    out = common.output_dir(fv)
    x, y, _ = common.load_examples(fv, srcs[0].model.image_shape)
    ks = [int(k) for k in fv["steps_list"].value]
    if not ks or min(ks) < 1:
        raise ValueError("--steps_list must be positive integers")
    bs = fv["batch_size"].value
    progress = common.Progress("angles", len(srcs) * len(ks) * (-(-len(x) // bs)))
    rows, summary, dist = [], [], {}
    for src in srcs:
        for k in ks:
            vals = []
            for s in common.batches(len(x), bs):
                vals.append(angles(src, x[s], y[s], epsilon=fv["epsilon"].value,
                                   step_size=fv["step_size"].value, steps=k))
                progress.update()
            a = np.concatenate(vals)
            dist[(src.label, k)] = a
            rows += [dict(model=src.label, steps=k, index=i, angle_deg=a[i])
                     for i in range(len(a))]
            ok = a[~np.isnan(a)]
            q = np.percentile(ok, [25, 50, 75]) if len(ok) else [np.nan] * 3
            summary.append(dict(model=src.label, steps=k, mean_deg=ok.mean() if len(ok) else np.nan,
                                std_deg=ok.std() if len(ok) else np.nan, q25=q[0], median=q[1],
                                q75=q[2], undefined=int(np.isnan(a).sum())))
    files = [common.write_csv(os.path.join(out, "angles.csv"), rows),
             common.write_csv(os.path.join(out, "angles_summary.csv"), summary),
             plot(dist, [s.label for s in srcs], ks, os.path.join(out, "angles.png"))]
    common.announce(files)
    return summary


def plot(dist, labels, ks, path):
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.2), squeeze=False)
    bins = np.linspace(0, 180, 61)
    for c, label in enumerate(labels):
        ax = axes[0, c]
        for i, k in enumerate(ks):
            a = dist[(label, k)]
            ax.hist(a[~np.isnan(a)], bins=bins, alpha=0.5, color=f"C{i}", label=f"K = {k}")
        ax.set_xlabel("angle between adversarial and collaborative perturbation (deg)",
                      fontsize=7)
        ax.set_ylabel("examples")
        ax.set_title(label, fontsize=8)
        ax.legend(fontsize=7)
    return common.save_figure(fig, path)
