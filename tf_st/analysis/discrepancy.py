"""Prediction discrepancy of two models (CAT paper Eq. 7, Fig. 1, Table 6).

``python -m tf_st.analysis discrepancy --run_dir=runs/cat --output_dir=figs``
``... discrepancy --saved_model=runs/madry/export,runs/trades/export --attack=pgd20``

``intersection = mean_i 1[f(x_i) = g(x_i)]``, ``discrepancy = 1 - intersection``, on the
clean examples or, with ``--attack``, on each model's own adversarial examples (each
model is attacked by the named attack of ``tf_st.attacks.parse``; the prediction of ``f``
on ``f``'s adversarial example is compared with ``g``'s on ``g``'s).  A CAT run
directory holding two exports (``export/<network>``) is compared network against
network.  Writes ``discrepancy.json`` (discrepancy, both accuracies, the
confusion matrices), ``discrepancy.csv`` (the disagreement matrix: rows f's class, columns
g's class, counts of examples where they differ) and ``discrepancy.png`` (each model's
confusion matrix with its diagonal set to 0, as in CAT's Fig. 1, and the disagreement
matrix).
"""

import glob
import os

import numpy as np
import tensorflow as tf
from absl import flags

from tf_st import cli
from tf_st import seeds
from tf_st.analysis import common


def define_flags(fv):
    flags.DEFINE_string("attack", "clean", "clean, or an attack name (fgsm, pgd20, cw20...).",
                        flag_values=fv)
    cli.define_float("epsilon", 8 / 255, "Attack budget.", flag_values=fv, lower_bound=0.0,
                     upper_bound=1.0)
    cli.define_float("step_size", 2 / 255, "Attack step.", flag_values=fv, lower_bound=0.0,
                     upper_bound=1.0)
    fv.set_default("examples", 1000)


def two_models(fv):
    run_dirs, saved = list(fv["run_dir"].value), list(fv["saved_model"].value)
    if len(run_dirs) == 1 and not saved:
        common.run_settings(run_dirs[0])
        exports = sorted(d for d in glob.glob(os.path.join(run_dirs[0], "export", "*"))
                         if os.path.isdir(d) and not os.path.basename(d).isdigit())
        if len(exports) != 2:
            raise ValueError(f"{run_dirs[0]} does not hold two exports (export/<network>, "
                             "as CAT writes); give two --run_dir or --saved_model")
        return [common.Source(e, label) for e, label in zip(exports, common.labels(fv, exports))]
    srcs = common.sources(fv)
    if len(srcs) != 2:
        raise ValueError(f"discrepancy compares two models; {len(srcs)} given")
    return srcs


def predictions(logits_fn, x, y, spec, *, batch_size, seed):
    preds = []
    for b, s in enumerate(common.batches(len(x), batch_size)):
        xb, yb = tf.constant(x[s]), tf.constant(y[s])
        if spec is not None:
            xb = spec.run(logits_fn, xb, yb, seed=seeds.key(seed, "analysis", 0, b)).x_adv
        preds.append(tf.argmax(logits_fn(xb), axis=1).numpy())
    return np.concatenate(preds)


def discrepancy(pred_f, pred_g, y, classes):
    """``(discrepancy, confusion_f, confusion_g, disagreement)``: confusion matrices
    count (true class, predicted class); ``disagreement[i, j]`` counts examples f puts in
    class i and g in class j != i."""
    conf = lambda p: np.bincount(y * classes + p, minlength=classes ** 2).reshape(classes, classes)  # noqa: E731
    pair = np.bincount(pred_f * classes + pred_g, minlength=classes ** 2).reshape(classes, classes)
    np.fill_diagonal(pair, 0)
    return float(np.mean(pred_f != pred_g)), conf(pred_f), conf(pred_g), pair


def run(fv):
    from tf_st.attacks.specs import parse
    f, g = two_models(fv)
    out = common.output_dir(fv)
    x, y, split = common.load_examples(fv, f.model.image_shape)
    spec = None
    if fv["attack"].value != "clean":
        spec = parse(fv["attack"].value, epsilon=fv["epsilon"].value,
                     step_size=fv["step_size"].value)
        if not spec.batched:
            raise ValueError(f"--attack={spec.name} is not a per-batch attack")
    progress = common.Progress("discrepancy", 2)
    preds = []
    for src in (f, g):
        preds.append(predictions(src, x, y, spec, batch_size=fv["batch_size"].value,
                                 seed=fv["seed"].value))
        progress.update(1, src.label)
    y = y.astype(np.int64)
    d, cf, cg, pair = discrepancy(preds[0], preds[1], y, split.num_classes)
    result = {"models": [f.label, g.label], "attack": fv["attack"].value,
              "examples": int(len(y)), "discrepancy": d, "intersection": 1 - d,
              "accuracy": {f.label: float(np.mean(preds[0] == y)),
                           g.label: float(np.mean(preds[1] == y))},
              "confusion": {f.label: cf.tolist(), g.label: cg.tolist()},
              "disagreement": pair.tolist(), "class_names": split.class_names}
    rows = [{"f_class": i, **{f"g_{j}": int(pair[i, j]) for j in range(len(pair))}}
            for i in range(len(pair))]
    files = [common.write_json(os.path.join(out, "discrepancy.json"), result),
             common.write_csv(os.path.join(out, "discrepancy.csv"), rows),
             plot(result, os.path.join(out, "discrepancy.png"))]
    print(f"prediction discrepancy ({fv['attack'].value}) of {f.label} and {g.label}: "
          f"{100 * d:.2f}% of {len(y)} examples")
    common.announce(files)
    return result


def plot(result, path):
    plt = common.pyplot()
    f, g = result["models"]
    mats = [(f"{f}: confusion (diagonal 0)", np.array(result["confusion"][f])),
            (f"{g}: confusion (diagonal 0)", np.array(result["confusion"][g])),
            (f"{f} vs {g}: disagreement", np.array(result["disagreement"]))]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (title, m) in zip(axes, mats):
        m = m.copy()
        np.fill_diagonal(m, 0)
        im = ax.imshow(m, cmap="Blues")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("predicted class" if "confusion" in title else f"{g}'s class", fontsize=7)
        ax.set_ylabel("true class" if "confusion" in title else f"{f}'s class", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"prediction discrepancy {100 * result['discrepancy']:.2f}% "
                 f"({result['attack']}, {result['examples']} examples)", fontsize=9)
    return common.save_figure(fig, path)
