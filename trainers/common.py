"""The shared trainer runner: flags, presets, data, strategy, training loop with
per-epoch robust evaluation, resumable checkpoints, best-model selection, export and the
final evaluation.  ``trainers/<method>.py`` only declares the method's own flags.

Run directory (``--output_dir``, default ``runs/<dataset>/<method>/<arch>/seed<seed>``):
  flags.txt         resolved flags; ``--flagfile=flags.txt`` re-runs the same thing
  metrics.csv       one row per epoch (train loss terms, clean and PGD-20 accuracy)
  tensorboard/      the same scalars
  checkpoints/      latest checkpoint; rerunning the same command resumes from it
  best.weights.h5   classifier with the best PGD-20 accuracy (ties -> later epoch)
  export/<version>/ SavedModel of the best classifier + model_card.json
  evaluation.json   final evaluation of the exported SavedModel
"""

import csv
import math
import os
import sys
import time

from absl import flags, logging

FLAGS = flags.FLAGS

_COMMON = {}


def define_common_flags():
    """Flags shared by every trainer; ``None`` means "take the paper preset"."""
    if _COMMON:
        return
    d = _COMMON
    d["dataset"] = flags.DEFINE_string(
        "dataset", "cifar10_mini", "cifar10, cifar100, svhn, image_folder, or the bundled "
        "cifar10_mini (3,000 train / 1,000 held-out CIFAR-10 *training* images).")
    d["data_dir"] = flags.DEFINE_string("data_dir", None, "TFDS data dir, or image-folder root.")
    d["arch"] = flags.DEFINE_string("arch", None, "Architecture (preset: resnet18).")
    d["epochs"] = flags.DEFINE_integer("epochs", None, "Training epochs (preset).")
    d["train_examples"] = flags.DEFINE_integer(
        "train_examples", None, "Train on the first N training examples only (image folders "
        "are class-interleaved, so the prefix is balanced).")
    d["steps_per_epoch"] = flags.DEFINE_integer("steps_per_epoch", None,
                                                "Cap on steps per epoch (quick runs).")
    d["batch_size"] = flags.DEFINE_integer("batch_size", None, "Global batch size (preset 128).")
    d["lr"] = flags.DEFINE_float("lr", None, "Base learning rate (preset).")
    d["lr_milestones"] = flags.DEFINE_list("lr_milestones", None,
                                           "1-based epochs at which lr is cut x0.1 (preset).")
    d["weight_decay"] = flags.DEFINE_float("weight_decay", None,
                                           "Coupled (PyTorch-style) L2 weight decay (preset 5e-4).")
    d["momentum"] = flags.DEFINE_float("momentum", None, "SGD momentum (preset 0.9).")
    d["augment"] = flags.DEFINE_enum("augment", None, ["none", "crop_flip"],
                                     "Per-example augmentation (preset per dataset).")
    d["epsilon"] = flags.DEFINE_float("epsilon", None, "L-inf budget in [0, 1] (preset 8/255).")
    d["step_size"] = flags.DEFINE_float("step_size", None, "Inner step size in [0, 1] (preset).")
    d["steps"] = flags.DEFINE_integer("steps", None, "Inner iterations K (preset 10).")
    d["output_dir"] = flags.DEFINE_string("output_dir", None, "Run directory.")
    d["eval_examples"] = flags.DEFINE_integer(
        "eval_examples", None, "Per-epoch evaluation on the first N test examples (default all).")
    d["eval_batch_size"] = flags.DEFINE_integer("eval_batch_size", 500, "Evaluation batch size.")
    d["final_attacks"] = flags.DEFINE_list(
        "final_attacks", ["clean", "fgsm", "pgd20", "pgd100", "cw100"],
        "Attacks of the final evaluation of the exported model ('' to skip).")
    d["final_examples"] = flags.DEFINE_integer(
        "final_examples", None, "Final evaluation on the first N test examples (default all).")
    d["seed"] = flags.DEFINE_integer("seed", 1, "Seed for weights, data order, noise (ST-AT: 1).")
    d["strategy"] = flags.DEFINE_enum("strategy", "auto", ["auto", "default", "one_device",
                                                           "mirrored", "multi_worker"],
                                      "tf.distribute strategy.")
    d["mixed_precision"] = flags.DEFINE_bool("mixed_precision", False,
                                             "mixed_float16 compute (GPU); logits stay float32.")
    d["jit_compile"] = flags.DEFINE_bool(
        "jit_compile", False, "XLA-compile the train step (Keras' 'auto' is off under strategies).")

    def unit(name):
        flags.register_validator(name, lambda v: v is None or 0.0 <= v <= 1.0,
                                 f"--{name} must be in [0, 1] image units (8/255 = 0.0314, not 8)")
    unit("epsilon")
    unit("step_size")
    for name in ("epochs", "batch_size", "steps_per_epoch", "eval_examples", "final_examples",
                 "train_examples"):
        flags.register_validator(name, lambda v: v is None or v > 0, f"--{name} must be positive")
    flags.register_validator("steps", lambda v: v is None or v >= 0, "--steps must be >= 0")
    flags.register_validator("lr", lambda v: v is None or v > 0, "--lr must be positive")
    flags.register_validator("weight_decay", lambda v: v is None or v >= 0,
                             "--weight_decay must be >= 0")
    flags.register_validator("dataset", _known_dataset,
                             "unknown --dataset; use cifar10, cifar100, svhn, image_folder or "
                             "cifar10_mini")
    flags.register_validator("arch", _known_arch, "unknown --arch; use " + ", ".join(_arch_names()))
    flags.register_validator("final_attacks", _known_attacks,
                             "unknown attack in --final_attacks; use clean, fgsm, pgd<N>, "
                             "cw<N>, aa")


def _known_dataset(v):
    from tf_st import data
    return v in data.DATASETS


def _arch_names():
    from tf_st import models
    return sorted(models.ARCHS)


def _known_arch(v):
    return v is None or v in _arch_names()


def _known_attacks(v):
    from tf_st.evaluation import parse_attack
    try:
        for a in v or []:
            if a and a != "aa":
                parse_attack(a)
    except ValueError:
        return False
    return True


def resolve_settings(method_key, method_flags):
    """Flag values over presets -> (training settings, method hparams)."""
    from tf_st.training import presets
    preset = presets.resolve(method_key, _COMMON["dataset"].value)
    s = {name: holder.value for name, holder in _COMMON.items()}
    for name in ("arch", "epochs", "batch_size", "lr", "weight_decay", "momentum", "augment",
                 "epsilon", "step_size", "steps"):
        if s[name] is None:
            s[name] = preset[name]
    s["lr_milestones"] = tuple(int(m) for m in (s["lr_milestones"] or preset["lr_milestones"]))
    hparams = {"epsilon": s["epsilon"], "step_size": s["step_size"], "steps": s["steps"]}
    for hparam, holder in _named(method_flags):
        value = holder.value
        if value is None:
            value = preset.get(hparam)
        if value is not None:
            hparams[hparam] = value
    if s["output_dir"] is None:
        s["output_dir"] = os.path.join("runs", s["dataset"], method_key, s["arch"], f"seed{s['seed']}")
    return s, hparams


def _named(method_flags):
    """``(hparam name, FlagHolder)`` pairs; a bare holder's hparam is its flag name (a
    flag may be named differently from its hparam, e.g. ``--trades_reg`` -> ``reg``)."""
    return [m if isinstance(m, tuple) else (m.name, m) for m in method_flags]


def _flagfile_text(settings, hparams, method_flags):
    lines = []
    entries = [(n, n, h) for n, h in _COMMON.items()]
    entries += [(h.name, hp, h) for hp, h in _named(method_flags)]
    for name, key, holder in entries:
        value = hparams.get(key, settings.get(key, holder.value))
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        else:
            lines.append(f"--{name}={value!r}" if isinstance(value, float) else f"--{name}={value}")
    return "\n".join(lines) + "\n"


def main_for(method_key, method_flags=()):
    """An ``absl.app`` main that trains ``method_key``."""
    from absl import app

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        from tf_st.data import DatasetNotFoundError
        try:
            run(method_key, method_flags)
        except (DatasetNotFoundError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return main


def define_beta(default_doc):
    holder = flags.DEFINE_float("beta", None, f"Regulariser weight ({default_doc}).")
    flags.register_validator("beta", lambda v: v is None or v >= 0, "--beta must be >= 0")
    return holder


def define_attack_bn(default="eval"):
    return flags.DEFINE_enum("attack_bn", default, ["eval", "train", "batch_stats"],
                             "BatchNorm mode while generating the attack (reference: eval).")


def run(method_key, method_flags=()):
    """Trains ``method_key`` with the resolved flags; returns the final report dict."""
    import tensorflow as tf
    import keras

    from tf_st import data, methods, models
    from tf_st.evaluation import evaluate
    from tf_st.evaluation.report import evaluate_and_report
    from tf_st.training import checkpoint as ckpt_lib
    from tf_st.training.optim import EpochPiecewiseSchedule, TorchSGD
    from tf_st.training.strategy import make_strategy
    from export.saved_model import export_classifier

    logging.set_verbosity(logging.WARNING)  # TF's SavedModel writer logs at INFO via absl
    tf.get_logger().setLevel("ERROR")
    settings, hparams = resolve_settings(method_key, method_flags)
    # Data first: a missing dataset fails before anything is written.
    train_split = data.take(data.load(settings["dataset"], "train", data_dir=settings["data_dir"]),
                            settings["train_examples"])
    test_split = data.load(settings["dataset"], "test", data_dir=settings["data_dir"])
    run_dir = settings["output_dir"]
    os.makedirs(run_dir, exist_ok=True)
    ckpt_lib.atomic_write_text(os.path.join(run_dir, "flags.txt"),
                               _flagfile_text(settings, hparams, method_flags))
    print(f"[{method_key}] run directory: {run_dir}")
    print(f"[{method_key}] settings: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())
                                                   if k not in ("output_dir",)))
    print(f"[{method_key}] hparams: {hparams}")

    keras.utils.set_random_seed(settings["seed"])
    if settings["mixed_precision"]:
        keras.mixed_precision.set_global_policy("mixed_float16")

    eval_x, eval_y = data.as_numpy(test_split, limit=settings["eval_examples"])
    image_shape = tuple(eval_x.shape[1:])
    steps_per_epoch = train_split.num_examples // settings["batch_size"]
    if settings["steps_per_epoch"]:
        steps_per_epoch = min(steps_per_epoch, settings["steps_per_epoch"])
    if steps_per_epoch < 1:
        raise ValueError(f"batch size {settings['batch_size']} exceeds the "
                         f"{train_split.num_examples} training examples")

    strategy = make_strategy(settings["strategy"])
    if settings["batch_size"] % strategy.num_replicas_in_sync:
        raise ValueError(f"--batch_size={settings['batch_size']} is not divisible by "
                         f"{strategy.num_replicas_in_sync} replicas")
    with strategy.scope():
        classifier = models.build(settings["arch"], train_split.num_classes, input_shape=image_shape)
        method = methods.build(method_key, classifier, seed=settings["seed"], **hparams)
        schedule = EpochPiecewiseSchedule(settings["lr"], settings["lr_milestones"], steps_per_epoch)
        optimizer = TorchSGD(schedule, momentum=settings["momentum"],
                             coupled_weight_decay=settings["weight_decay"])
        method.compile(optimizer=optimizer, jit_compile=settings["jit_compile"])
        method(tf.zeros((1,) + image_shape))
        optimizer.build(classifier.trainable_variables)
    # method.optimizer is the LossScaleOptimizer wrapper under mixed precision.
    run_ckpt = ckpt_lib.RunCheckpoint(run_dir, method, method.optimizer)
    start_epoch = run_ckpt.restore()
    if start_epoch:
        print(f"[{method_key}] resumed after epoch {start_epoch} "
              f"(best PGD-20 {100 * float(run_ckpt.best_robust.numpy()):.2f}% at epoch "
              f"{int(run_ckpt.best_epoch.numpy())})")

    metrics_path = os.path.join(run_dir, "metrics.csv")
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
    eval_fn = lambda x: classifier(x, training=False)  # noqa: E731
    epochs = settings["epochs"]
    verbose = 1 if sys.stdout.isatty() else 2
    run_started = time.time()
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        lr = schedule.lr_at_epoch(epoch + 1)
        print(f"[{method_key}] epoch {epoch + 1}/{epochs} lr={lr:g}", flush=True)
        train_ds = data.train_pipeline(train_split, settings["batch_size"], settings["augment"],
                                       seed=settings["seed"] * 100003 + epoch)
        history = method.fit(train_ds.take(steps_per_epoch), epochs=epoch + 1,
                             initial_epoch=epoch, steps_per_epoch=steps_per_epoch, verbose=verbose,
                             shuffle=False)
        train_seconds = time.time() - t0
        ev = evaluate(eval_fn, (eval_x, eval_y), ("clean", "pgd20"), epsilon=hparams["epsilon"],
                      step_size=2 / 255,  # ST-AT utils.py:evaluate, every dataset
                      batch_size=min(settings["eval_batch_size"], len(eval_x)),
                      seed=settings["seed"] + epoch, verbose=False)
        clean, robust = ev.attacks["clean"].accuracy, ev.attacks["pgd20"].accuracy
        is_best = run_ckpt.maybe_save_best(classifier, robust, epoch + 1)
        row = {"epoch": epoch + 1, "lr": lr,
               **{f"train_{k}": float(v[-1]) for k, v in history.history.items()},
               "test_clean_acc": clean, "test_pgd20_acc": robust,
               "train_seconds": round(train_seconds, 2),
               "eval_seconds": round(time.time() - t0 - train_seconds, 2)}
        _append_csv(metrics_path, row)
        with writer.as_default(step=epoch + 1):
            for k, v in row.items():
                if k != "epoch":
                    tf.summary.scalar(k, v)
        run_ckpt.save(epoch + 1)
        elapsed = time.time() - run_started
        done = epoch + 1 - start_epoch
        eta = elapsed / done * (epochs - epoch - 1)
        print(f"[{method_key}] epoch {epoch + 1}/{epochs}: "
              + " ".join(f"{k[6:]}={v:.4f}" for k, v in row.items() if k.startswith("train_")
                         and not k.endswith("seconds"))
              + f" | test clean {100 * clean:.2f}% pgd20 {100 * robust:.2f}%"
              + (" (best)" if is_best else "") + f" | {time.time() - t0:.0f}s, ETA {eta:.0f}s",
              flush=True)
    writer.flush()

    if not os.path.exists(run_ckpt.best_weights_path):
        raise RuntimeError("no epoch finished; nothing to export")
    classifier.load_weights(run_ckpt.best_weights_path)
    best_epoch = int(run_ckpt.best_epoch.numpy())
    best_row = _read_csv_row(metrics_path, best_epoch)
    card = {"method": method_key, "dataset": settings["dataset"], "arch": settings["arch"],
            "num_classes": train_split.num_classes, "image_shape": list(image_shape),
            "epsilon": hparams["epsilon"], "hparams": method.hparams(),
            "best_epoch": best_epoch,
            "clean_acc": float(best_row.get("test_clean_acc", math.nan)),
            "pgd20_acc": float(best_row.get("test_pgd20_acc", math.nan)),
            "selection": "best PGD-20 accuracy on the evaluation split, ties to the later epoch",
            "data_note": test_split.note,
            "flags": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}}
    export_dir = os.path.join(run_dir, "export")
    version_dir = export_classifier(classifier, export_dir, version=1, model_card=card,
                                    overwrite=True)
    print(f"[{method_key}] exported best classifier (epoch {best_epoch}) to {version_dir}")
    attacks = [a for a in settings["final_attacks"] if a]
    if not attacks:
        return card
    from export.saved_model import load
    return evaluate_and_report(
        load(version_dir), dataset=settings["dataset"], data_dir=settings["data_dir"],
        split="test", attacks=attacks, epsilon=hparams["epsilon"], step_size=2 / 255,
        examples=settings["final_examples"], batch_size=settings["eval_batch_size"],
        seed=settings["seed"], output=os.path.join(run_dir, "evaluation.json"),
        model_card=card, verbose=True)


def _append_csv(path, row):
    new = not os.path.exists(path)
    rows = []
    if not new:
        with open(path) as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]
    rows.append({k: str(v) for k, v in row.items()})
    fields = list(row.keys())
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _read_csv_row(path, epoch):
    with open(path) as f:
        for r in csv.DictReader(f):
            if int(r["epoch"]) == epoch:
                return r
    return {}
