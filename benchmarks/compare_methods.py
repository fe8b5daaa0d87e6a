r"""A first comparison of the methods on real CIFAR-10 data, sized for a 2-core CPU.

  python -m benchmarks.compare_methods                      # all of the protocol below
  python -m benchmarks.compare_methods --methods=natural,st --epochs=2   # a quicker look

Protocol (also printed with the results):
  data     --data_dir (default $TF_ST_SHARED_DATA/cifar10-jpeg): JPEG re-encoded
           CIFAR-10 as an image folder, image_folder loader;
           train on the first --train_examples training images (class-interleaved, so
           balanced), evaluate on the first --test_examples test images (balanced)
  model    small_cnn (about 75k parameters), seed --seed
  training --epochs epochs, batch 128, TorchSGD lr 0.05 (x0.1 at the last epoch), momentum
           0.9, coupled weight decay 5e-4, pad-4 crop + flip; eps 8/255, step 2/255, K=10;
           beta 6 (TRADES, ST), 5 (MART)
  select   best PGD-20 accuracy on the test prefix, ties to the later epoch (ST-AT's rule:
           selection on the test split, as the references do)
  evaluate the exported SavedModel: clean, PGD-20, CW-20 (and AutoAttack standard on the
           first --aa_examples test images when --aa_examples > 0)

A method entry is a trainer key (``fat``, ``cat``, ...), ``<key>+awp`` (the method with
adversarial weight perturbation at its reference gamma, from the first epoch: the
references' 10-epoch warm-up would leave a 5-epoch run without AWP) and/or
``<key>+mixed`` (trained in mixed precision, evaluated from its float32 export).  Every run gets the
protocol's eps, step, lr schedule and weight decay explicitly, so methods whose presets
differ (FAT: eps 0.031, wd 2e-4) are compared on the same footing; a method with several
networks (``cat``) gives one row per network (``cat:trades``, ``cat:alp``), each
selected by the method's own rule (CAT: PGD-10, strict).  "attack steps" is the mean
number of gradient steps per training example of the inner attack (FAT Figure 5: FAT's
early stop; K for the fixed-K methods).

Each method runs through its real trainer (``python -m trainers.<key>``), so the runner,
checkpoints, selection and export are the ones users get; an interrupted comparison is
resumed by running it again (finished trainings only redo their final evaluation, and
reported times come from the run directory).  Outputs in --output_dir:
results.md (the table), results.json, clean_vs_robust.png, and per entry its run directory
with log.txt (each process's output appended under a line naming its command);
--report_only rewrites the table and plot from results.json (its recorded protocol and
AutoAttack counts) without running anything; --append refuses a results.json recorded
under another protocol.
"""

import csv
import json
import os
import subprocess
import sys
import time

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHARED = os.environ.get("TF_ST_SHARED_DATA")
DEFAULT_DATA = os.path.join(_SHARED, "cifar10-jpeg") if _SHARED else None

_METHODS = flags.DEFINE_list("methods", ["natural", "madry", "trades", "mart", "st"], "Methods.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", DEFAULT_DATA, "CIFAR-10 image folder (default: $TF_ST_SHARED_DATA/cifar10-jpeg).")
_TRAIN = flags.DEFINE_integer("train_examples", 5000, "Training images.")
_TEST = flags.DEFINE_integer("test_examples", 1000, "Test images.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Epochs.")
_APPEND = flags.DEFINE_bool(
    "append", False, "Keep the rows of other methods already in --output_dir/results.json.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Only rewrite results.md and the plot from results.json.")
_AA = flags.DEFINE_integer("aa_examples", 0, "AutoAttack examples (0 = skip).")
_SEED = flags.DEFINE_integer("seed", 1, "Seed.")
_OUT = flags.DEFINE_string("output_dir", os.path.join(ROOT, "runs", "compare_methods"), "Output.")


def protocol_text():
    return (f"CIFAR-10 JPEG folder, first {_TRAIN.value} train / {_TEST.value} test images "
            f"(class-balanced); small_cnn; {_EPOCHS.value} epochs, batch 128, lr 0.05 "
            f"(x0.1 at epoch {_EPOCHS.value}), momentum 0.9, wd 5e-4, crop+flip; eps 8/255, "
            f"step 2/255, K=10; beta 6 (TRADES, ST), 5 (MART); best PGD-20 epoch on the "
            f"test prefix; seed {_SEED.value}")


def run_method(entry, env):
    """Trains one entry; returns one row per network."""
    key, *variants = entry.split("+")
    run_dir = os.path.join(_OUT.value, entry)
    cmd = [sys.executable, "-m", f"trainers.{key}", "--dataset=image_folder",
           f"--data_dir={_DATA_DIR.value}", "--arch=small_cnn", f"--epochs={_EPOCHS.value}",
           "--batch_size=128", "--lr=0.05", f"--lr_milestones={_EPOCHS.value}",
           "--lr_multipliers=0.1", "--weight_decay=5e-4", "--momentum=0.9",
           f"--epsilon={8 / 255!r}", f"--step_size={2 / 255!r}",
           f"--train_examples={_TRAIN.value}", f"--eval_examples={_TEST.value}",
           f"--final_examples={_TEST.value}", "--final_attacks=clean,pgd20,cw20",
           f"--seed={_SEED.value}", f"--output_dir={run_dir}"]
    if key != "natural":
        cmd.append("--steps=10")
    for variant in variants:
        if variant == "awp":
            cmd += ["--awp", "--awp_warmup=0"]
        elif variant == "mixed":
            # Mixed precision (bfloat16 on a CPU, float16 with loss scaling on a GPU);
            # the export and its evaluation stay float32.
            cmd.append("--mixed_precision")
        else:
            raise ValueError(f"unknown variant {variant!r} in {entry!r} (+awp, +mixed)")
    os.makedirs(run_dir, exist_ok=True)
    start = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    train_seconds = time.time() - start
    # Appended: a rerun (resuming, or adding AutoAttack) must not erase the epochs an
    # earlier process logged.
    with open(os.path.join(run_dir, "log.txt"), "a") as f:
        f.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(start))} "
                f"{' '.join(cmd[1:])}\n{r.stdout}\n{r.stderr}\n")
    if r.returncode != 0:
        raise RuntimeError(f"{entry} failed; see {run_dir}/log.txt\n{r.stderr[-2000:]}")
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        epochs = list(csv.DictReader(f))
    exports = os.path.join(run_dir, "export")
    networks = ([None] if os.path.isdir(os.path.join(exports, "1"))
                else sorted(os.listdir(exports)))
    rows = []
    for net in networks:
        prefix = f"{net}_" if net else ""
        card_path = os.path.join(exports, *(([net] if net else []) + ["1", "model_card.json"]))
        with open(card_path) as f:
            card = json.load(f)
        with open(os.path.join(run_dir, f"evaluation.{net}.json" if net else "evaluation.json")) as f:
            report = json.load(f)
        selection = next(k for k in card if k.endswith("_acc") and k != "clean_acc")[:-4]
        steps = [float(e["train_bp"]) for e in epochs if e.get("train_bp")]
        # Times from the run directory, so that a resumed run still reports its full cost.
        row = {"method": entry + (f":{net}" if net else ""),
               "train_seconds": round(sum(float(e["train_seconds"]) for e in epochs), 1),
               "final_eval_seconds": report["seconds"],
               "process_seconds": round(train_seconds, 1),
               "best_epoch": card["best_epoch"], "selection": selection,
               "training_precision": card.get("training_precision"),
               "attack_steps": (round(sum(steps) / len(steps), 2) if steps
                                else 0 if key == "natural" else 10),
               "last_epoch_clean_acc": float(epochs[-1][prefix + "test_clean_acc"]),
               f"last_epoch_{selection}_acc": float(epochs[-1][f"{prefix}test_{selection}_acc"]),
               **{f"{a}_acc": v["accuracy"] for a, v in report["attacks"].items()}}
        if _AA.value > 0:
            aa_json = os.path.join(run_dir, f"aa.{net}.json" if net else "aa.json")
            r = subprocess.run([sys.executable, "-m", "export.evaluate",
                                f"--saved_model={os.path.dirname(os.path.dirname(card_path))}",
                                "--dataset=image_folder", f"--data_dir={_DATA_DIR.value}",
                                "--attacks=aa", f"--examples={_AA.value}", f"--output={aa_json}"],
                               cwd=ROOT, env=env, capture_output=True, text=True)
            if r.returncode == 0:
                with open(aa_json) as f:
                    aa = json.load(f)["autoattack"]
                row["aa_acc"] = aa["robust_accuracy"]
                row["aa_seconds"] = aa.get("seconds")
                row["aa_examples"] = aa.get("n_examples", _AA.value)
            else:
                row["aa_error"] = r.stderr[-500:]
        rows.append(row)
    return rows


def aa_label(rows):
    """How many images the rows' AutoAttack numbers are on, from the rows themselves
    (``--report_only`` need not repeat ``--aa_examples``): ``"200"``, ``"200/1000"`` when
    rows differ, or ``"?"`` for rows written before the count was recorded and no
    ``--aa_examples`` given."""
    counts = sorted({r.get("aa_examples") or _AA.value or None for r in rows
                     if r.get("aa_acc") is not None} - {None})
    return "/".join(str(c) for c in counts) or "?"


def write_outputs(rows, protocol):
    """Writes results.md, results.json and clean_vs_robust.png.

    Args:
      rows: one dict per network (``run_method``).
      protocol: the protocol line the rows were produced under.

    Returns:
      results.md's text.
    """
    from tf_st.fileio import atomic_write_json, atomic_write_text
    cols = [("method", "method"), ("clean_acc", "clean"), ("pgd20_acc", "PGD-20"),
            ("cw20_acc", "CW-20")]
    if any("aa_acc" in r for r in rows):
        cols.append(("aa_acc", f"AA ({aa_label(rows)} imgs)"))
    cols += [("best_epoch", "selected epoch"), ("last_epoch_clean_acc", "last-epoch clean"),
             ("last_epoch_pgd20_acc", "last-epoch PGD-20"), ("attack_steps", "attack steps"),
             ("train_seconds", "training s"),
             ("final_eval_seconds", "final eval s")]
    if any("aa_seconds" in r for r in rows):
        cols.append(("aa_seconds", "AA s"))
    lines = ["Protocol: " + protocol, "",
             "| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k)
            if k == "last_epoch_pgd20_acc" and v is None and r.get("selection"):
                # Methods selected on another attack (CAT: PGD-10) log that one per epoch.
                other = r.get(f"last_epoch_{r['selection']}_acc")
                cells.append("-" if other is None else
                             f"{100 * other:.1f}% ({r['selection'].upper()})")
                continue
            if v is None:
                cells.append("-")
            elif k.endswith("_acc"):
                cells.append(f"{100 * v:.1f}%")
            elif k.endswith("_seconds"):
                cells.append(f"{v:.0f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    atomic_write_text(os.path.join(_OUT.value, "results.md"), table + "\n")
    atomic_write_json(os.path.join(_OUT.value, "results.json"),
                      {"protocol": protocol, "rows": rows}, indent=1)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("pgd20_acc", "PGD-20 accuracy (%)")]
    if all(r.get("aa_acc") is not None for r in rows):
        panels.append(("aa_acc", f"AutoAttack accuracy (%), first {aa_label(rows)} images"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    top = max(r[k] for r in rows for k, _ in panels)
    for ax, (key, label) in zip(axes[0], panels):
        # Methods often land within a point of each other, so names go in a legend
        # (fixed colour per method across panels) rather than beside the points.
        # tab20 and two marker shapes keep up to 40 methods apart.
        for i, r in enumerate(rows):
            ax.scatter(100 * r["clean_acc"], 100 * r[key], s=40,
                       color=plt.get_cmap("tab20")(i % 20), marker="os"[i // 20 % 2],
                       label=r["method"])
        ax.legend(loc="upper left", fontsize=8)
        ax.set_xlim(0, 100 * max(r["clean_acc"] for r in rows) + 10)
        ax.set_ylim(0, 100 * top + 10)
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle("small_cnn, CIFAR-10 subset, eps 8/255", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(_OUT.value, "clean_vs_robust.png"), dpi=120)
    return table


def main(argv):
    del argv
    results = os.path.join(_OUT.value, "results.json")
    if _REPORT_ONLY.value:
        if not os.path.exists(results):
            raise ValueError(f"no {results} to report; run without --report_only first")
        with open(results) as f:
            saved = json.load(f)
        # The recorded protocol, not this command's flags (which need not be repeated).
        print(write_outputs(saved["rows"], saved["protocol"]))
        return
    if not _DATA_DIR.value or not os.path.isdir(_DATA_DIR.value):
        raise ValueError(f"no CIFAR-10 image folder at {_DATA_DIR.value}; pass --data_dir")
    os.makedirs(_OUT.value, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    print("Protocol:", protocol_text(), flush=True)
    rows = []
    if _APPEND.value and os.path.exists(results):
        with open(results) as f:
            saved = json.load(f)
        if saved.get("protocol", protocol_text()) != protocol_text():
            raise ValueError(f"--append to {results}, whose rows ran under another "
                             f"protocol ({saved['protocol']!r}; this run: "
                             f"{protocol_text()!r}); use the same flags or another "
                             "--output_dir")
        rows = [r for r in saved["rows"] if r["method"].split(":")[0] not in _METHODS.value]
    for entry in _METHODS.value:
        print(f"[{entry}] training ...", flush=True)
        for row in run_method(entry, env):
            rows.append(row)
            print(f"[{row['method']}] {row}", flush=True)
        write_outputs(rows, protocol_text())
    print(write_outputs(rows, protocol_text()))


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
