"""Loss landscape around benign examples (ST paper Fig. 3).

``python -m tf_st.analysis landscape --run_dir=runs/trades --output_dir=figs``

``u``: the collaborative direction of each example (``sign`` of its Eq. 4 perturbation
after ``--steps`` descent steps of 1/255 within ``--epsilon``; ``sign`` so that ``x + a u``
has L-inf size ``|a|``); ``v``: a random sign vector made orthogonal to ``u`` (Gram-Schmidt
in the flattened input space) and rescaled to the L-inf size of ``u``.  The surface is
the cross-entropy at ``clip(x + a u + b v, 0, 1)`` on a ``--grid`` x ``--grid`` lattice of
``a, b`` in ``[-radius, radius]`` (``--radius`` in [0, 1] image units), averaged over ``--examples``
examples.  Writes ``landscape.csv`` (a, b, mean CE, per model), ``landscape.json`` and
``landscape.png`` (one 3-D surface per model, the paper's axes).
"""

import os

import numpy as np
import tensorflow as tf
from absl import flags

from tf_st import cli
from tf_st.analysis import common
from tf_st.analysis.collaborative import collaborative_examples, cross_entropy


def define_flags(fv):
    cli.define_float("epsilon", 8 / 255, "Budget of the collaborative direction.",
                     flag_values=fv, lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("steps", 100, "Descent steps for the direction.", lower_bound=1,
                         flag_values=fv)
    cli.define_float("radius", 16 / 255, "Half-width of the plane.", flag_values=fv,
                     lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("grid", 21, "Points per axis.", lower_bound=2, flag_values=fv)
    fv.set_default("examples", 16)


def directions(logits_fn, x, y, *, epsilon, steps, seed):
    """``(u, v)`` per example: sign of the collaborative perturbation and a random sign
    vector orthogonal to it, rescaled to ``u``'s L-inf norm (1, or 0 where the descent
    did not move)."""
    x_col = collaborative_examples(logits_fn, tf.constant(x), tf.constant(y), epsilon=epsilon,
                                   step_size=1 / 255, steps=steps).numpy()
    u = np.sign(x_col - x).astype(np.float64)
    rng = np.random.default_rng(seed)
    r = rng.choice([-1.0, 1.0], size=x.shape)
    uf, rf = u.reshape(len(x), -1), r.reshape(len(x), -1)
    nu = np.maximum((uf * uf).sum(1, keepdims=True), 1e-12)
    vf = rf - (rf * uf).sum(1, keepdims=True) / nu * uf
    vf /= np.maximum(np.abs(vf).max(1, keepdims=True), 1e-12)
    return u, vf.reshape(x.shape)


def surface(logits_fn, x, y, u, v, alphas, betas, batch_size=100, progress=None):
    """Mean CE over the examples at ``clip(x + a u + b v)``, shape ``[len(alphas),
    len(betas)]``."""
    out = np.zeros((len(alphas), len(betas)))
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            total = 0.0
            for s in common.batches(len(x), batch_size):
                pts = np.clip(x[s] + a * u[s] + b * v[s], 0, 1).astype(np.float32)
                total += float(np.sum(cross_entropy(logits_fn, tf.constant(pts),
                                                    tf.constant(y[s])).numpy()))
            out[i, j] = total / len(x)
            if progress:
                progress.update()
    return out


def run(fv):
    srcs = common.sources(fv)
    out = common.output_dir(fv)
    x, y, _ = common.load_examples(fv, srcs[0].model.image_shape)
    radius = fv["radius"].value
    grid = np.linspace(-radius, radius, fv["grid"].value)
    progress = common.Progress("landscape", len(srcs) * len(grid) ** 2)
    rows, surfaces = [], {}
    for src in srcs:
        u, v = directions(src, x, y, epsilon=fv["epsilon"].value,
                          steps=fv["steps"].value, seed=fv["seed"].value)
        z = surface(src, x, y, u, v, grid, grid, fv["batch_size"].value, progress)
        surfaces[src.label] = z
        rows += [dict(model=src.label, a_255=grid[i] * 255, b_255=grid[j] * 255,
                      cross_entropy=z[i, j]) for i in range(len(grid)) for j in range(len(grid))]
    files = [common.write_csv(os.path.join(out, "landscape.csv"), rows),
             common.write_json(os.path.join(out, "landscape.json"),
                               {"grid_255": (grid * 255).tolist(), "examples": len(x),
                                "surfaces": {k: v.tolist() for k, v in surfaces.items()}}),
             plot(grid, surfaces, os.path.join(out, "landscape.png"))]
    common.announce(files)
    return surfaces


def plot(grid, surfaces, path):
    plt = common.pyplot()
    fig = plt.figure(figsize=(4.2 * len(surfaces), 3.8))
    a, b = np.meshgrid(grid * 255, grid * 255, indexing="ij")
    for k, (label, z) in enumerate(surfaces.items()):
        ax = fig.add_subplot(1, len(surfaces), k + 1, projection="3d")
        ax.plot_surface(a, b, z, cmap="viridis", linewidth=0, antialiased=True)
        ax.set_xlabel("u (collaborative, /255)", fontsize=7)
        ax.set_ylabel("v (random, /255)", fontsize=7)
        ax.set_zlabel("cross-entropy", fontsize=7)
        ax.set_title(label, fontsize=8)
    return common.save_figure(fig, path)
