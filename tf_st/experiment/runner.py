"""The run layer: one experiment from settings to evaluated export, callable from Python
(``tf_st.experiment.run(Settings(method="st", ...))``) and used by every CLI, the sweep
and the tests.  Four steps that can be called alone:

  settings   ``resolve(Settings(...))``: given values over paper presets, checked
  run dir    ``prepare_run_dir``: locked, settings compared, then ``flags.txt``
  fit        ``fit``: strategy, networks, optimizers, one ``model.fit`` over all
             remaining epochs with the callbacks of ``tf_st.training.callbacks``
  export     ``export_best``: each network's best weights -> SavedModel + model card
  evaluate   ``final_evaluation``: the exported SavedModels under attack

``run(settings)`` does all of it.  Nothing here reads flags (``tf_st.experiment.cli``
does), so tests and ``tf_st.analysis.sweep`` call it in-process.

Run directory (default ``runs/<dataset>/<method>/<arch>/seed<seed>``):
  flags.txt            resolved flags; ``--flagfile=flags.txt`` re-runs the same thing
  metrics.csv          one row per epoch (train loss terms, clean and PGD-20 accuracy)
  tensorboard/         the same scalars
  checkpoints/         latest checkpoint; rerunning the same command resumes from it
  best.weights.h5      best classifier by PGD-20 (``best.<network>.weights.h5`` per
                       network when a method trains several)
  export/<version>/    SavedModel of the best classifier + model_card.json
                       (``export/<network>/<version>/`` per network)
  evaluation.json      final evaluation of the export (``evaluation.<network>.json``)
"""

import contextlib
import dataclasses
import math
import os
import shutil
import sys
import tempfile
from typing import Optional

import numpy as np

from tf_st.experiment.config import Settings, validate
from tf_st.training import presets

from tf_st.experiment import config

# The run settings an unset value of which the paper presets fill (declared with
# ``preset=True``; AWP's come from their own table).
# (--eval_step_size's preset depends on the resolved epsilon: ``resolve`` sets it.)
TRAINING_KEYS = tuple(f.name for f in config.fields()
                      if f.metadata["preset"] and f.metadata["group"] != "method"
                      and f.name != "eval_step_size")
ATTACK_KEYS = ("epsilon", "step_size", "steps")


def mixed_policy(dtype="auto"):
    """The Keras mixed-precision policy for ``--mixed_precision_dtype``.

    Args:
      dtype: ``'auto'`` (float16 with a GPU, else bfloat16), ``'float16'`` or ``'bfloat16'``.

    Returns:
      ``'mixed_float16'`` or ``'mixed_bfloat16'``.

    Raises:
      ValueError: another ``dtype``.
    """
    import tensorflow as tf
    if dtype == "auto":
        dtype = "float16" if tf.config.list_logical_devices("GPU") else "bfloat16"
    if dtype not in ("float16", "bfloat16"):
        raise ValueError(f"--mixed_precision_dtype={dtype!r}: choose auto, float16 or bfloat16")
    return f"mixed_{dtype}"


def method_class(key):
    """The registered method class for ``key`` (``tf_st.methods.get``).

    Args:
      key: a method key.

    Returns:
      The ``AdversarialMethod`` subclass.

    Raises:
      ValueError: an unknown key.
    """
    from tf_st import methods
    return methods.get(key)


def resolve(settings: Settings) -> Settings:
    """A copy of ``settings`` with presets filled in and every value checked.

    A bad value raises here, before any work.

    Args:
      settings: a ``Settings``, resolved or not.

    Returns:
      A new, resolved ``Settings`` (``output_dir`` defaults to
      ``runs/<dataset>/<method>/<arch>/seed<seed>``).

    Raises:
      ValueError: an unknown method or hyperparameter, or a setting out of range or
        inconsistent with another.
    """
    cls = method_class(settings.method)
    validate(settings)
    preset = presets.resolve(settings.method, settings.dataset)
    preset.setdefault("lr_schedule", "piecewise")
    preset.setdefault("nesterov", False)
    preset.setdefault("lr_multipliers", None)
    if settings.awp:
        # Before RST's: the AWP repository's RST runs train with semisup-adv's loss.
        preset.update(presets.awp_method_hparams(settings.method))
    if settings.unlabeled:
        rst_training, rst_hparams = presets.rst_preset(settings.method, settings.dataset)
        preset.update(rst_training)
        preset.update(rst_hparams)
        if not 0.0 <= settings.unlabeled_fraction < 1.0:
            raise ValueError(f"--unlabeled_fraction={settings.unlabeled_fraction} must be in "
                             "[0, 1)")
    if settings.norm == "l2":
        # Last: the cells' (and RST's) budgets are L-inf lengths.
        preset.update(presets.l2_preset())
    s = dataclasses.replace(settings, hparams=dict(settings.hparams))
    from tf_st.attacks.checks import check_norm
    given_norm = s.hparams.pop("norm", None)
    norm = check_norm(s.norm)
    if given_norm is not None and check_norm(given_norm) != norm:
        raise ValueError(f"hparams norm={given_norm!r} contradicts --norm={s.norm}")
    # The method refuses a threat model it does not implement, before any work.
    from tf_st.methods.base import check_norm_supported
    check_norm_supported(cls, norm)
    for key in TRAINING_KEYS:
        if getattr(s, key) is None:
            setattr(s, key, preset[key])
    s.lr_milestones = tuple(int(m) for m in s.lr_milestones)
    if s.lr_multipliers is not None:
        s.lr_multipliers = tuple(float(m) for m in s.lr_multipliers)
        if len(s.lr_multipliers) != len(s.lr_milestones):
            raise ValueError(f"--lr_multipliers has {len(s.lr_multipliers)} values for "
                             f"{len(s.lr_milestones)} --lr_milestones")
    for key in ATTACK_KEYS:
        if s.hparams.get(key) is None:
            s.hparams[key] = preset[key]
    fields = {f.name for f in dataclasses.fields(cls.HParams)}
    for key, value in preset.items():
        if key in fields and s.hparams.get(key) is None:
            s.hparams[key] = value
    s.hparams = {k: v for k, v in s.hparams.items() if v is not None}
    s.hparams["norm"] = norm
    # Building the dataclass validates every value and rejects unknown names.
    s.hparams = cls.HParams.build(settings.method, s.hparams).as_dict()
    if s.eval_step_size is None:
        s.eval_step_size = presets.eval_step_size(s.norm, s.hparams["epsilon"])
    s.final_attacks = tuple(a for a in s.final_attacks if a)
    from tf_st.attacks.specs import parse as parse_attack
    for a in s.final_attacks:
        # An unknown name, or one without this norm's version, fails here, before any work.
        parse_attack(a, epsilon=s.hparams["epsilon"], step_size=s.eval_step_size, norm=norm)
    parse_attack(cls.selection_attack, epsilon=s.hparams["epsilon"],
                 step_size=s.eval_step_size, norm=norm)
    if s.awp:
        for key, value in presets.awp_preset(s.method).items():
            if getattr(s, f"awp_{key}") is None:
                setattr(s, f"awp_{key}", value)
        if s.awp_gamma < 0 or s.awp_warmup < 0 or s.awp_proxy_lr <= 0:
            raise ValueError("--awp_gamma and --awp_warmup must be >= 0, --awp_proxy_lr > 0")
        if s.awp_first_epoch not in (0, 1):
            raise ValueError(f"--awp_first_epoch must be 0 or 1, got {s.awp_first_epoch}")
    if s.selection_split not in ("test", "holdout"):
        raise ValueError(f"--selection_split must be test or holdout, got {s.selection_split!r}")
    if s.method != "natural" and (s.hparams.get("steps") == 0 or s.hparams.get("step_size") == 0):
        print(f"warning: --steps={s.hparams.get('steps')} --step_size={s.hparams.get('step_size')}: "
              f"{s.method} will train without adversarial perturbation", file=sys.stderr)
    if s.output_dir is None:
        s.output_dir = os.path.join("runs", s.dataset, s.method, s.arch, f"seed{s.seed}")
    return s


@contextlib.contextmanager
def prepare_run_dir(settings, flagfile_text=None, overwrite=False):
    """Holds the run directory for the ``with`` block.

    The directory is locked, checked to have been started with these settings (see
    ``tf_st.training.rundir``) and cleared of a killed run's temporaries; only then is
    ``flags.txt`` written.

    Args:
      settings: the resolved ``Settings`` (its ``output_dir`` is the run directory).
      flagfile_text: the text of ``flags.txt``; None writes none.
      overwrite: start over in a directory of a run with other settings.

    Yields:
      The run directory's path.
    """
    from tf_st.fileio import atomic_write_text, remove_stale_temporaries
    from tf_st.training.rundir import RunDirectory
    with RunDirectory(settings.output_dir, settings.as_json(), overwrite=overwrite):
        # Ours alone now (locked): what a killed predecessor left half-written goes.
        remove_stale_temporaries(settings.output_dir)
        if flagfile_text is not None:
            atomic_write_text(os.path.join(settings.output_dir, "flags.txt"), flagfile_text)
        yield settings.output_dir


def make_deterministic(log=print):
    """Turns on TensorFlow's op determinism and pins its threads to one (``--deterministic``).

    Args:
      log: a ``print``-like function for the warnings when the threads cannot be pinned
        or oneDNN is on.
    """
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    if tf.config.threading.get_intra_op_parallelism_threads() == 1:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime already started (in-process use): keep its threads
        log("warning: TensorFlow already started; --deterministic could not pin its "
            "threads, so runs may still differ in the last bits")
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
        log("warning: TF_ENABLE_ONEDNN_OPTS is not 0; set it before starting Python "
            "for bit-exact CPU runs")


def holdout(split, n):
    """Sets aside a class-balanced holdout of ``n`` training examples as the selection set.

    The first ``n // classes`` of each class in split order (the remainder from the first
    classes) are set aside; the rest, in order, is trained on.

    Args:
      split: the training split (a ``tf_st.data`` split).
      n: the holdout size.

    Returns:
      ``(train, holdout)`` splits.

    Raises:
      ValueError: ``n`` outside ``[1, examples - 1]`` or a class too small for its quota.
    """
    from tf_st import data
    from tf_st.data import rst
    x, y = rst.split_arrays(split)
    classes = split.num_classes
    if not 0 < n < len(y):
        raise ValueError(f"--holdout_examples={n} must be in [1, {len(y) - 1}]")
    quota = [n // classes + (1 if c < n % classes else 0) for c in range(classes)]
    taken = np.zeros(len(y), bool)
    for c in range(classes):
        idx = np.nonzero(y == c)[0][:quota[c]]
        if len(idx) < quota[c]:
            raise ValueError(f"class {c} has {len(idx)} training examples, fewer than the "
                             f"{quota[c]} a balanced holdout of {n} needs")
        taken[idx] = True
    note = f"class-balanced holdout of {n} training examples"
    common = dict(num_classes=classes, class_names=split.class_names, name=split.name)
    return (data.from_arrays(x[~taken], y[~taken], split="train",
                             note=f"training set minus the {note}", **common),
            data.from_arrays(x[taken], y[taken], split="holdout", note=note, **common))


def _class_names(split):
    """The label names of ``split`` as strings, index = label (image folders: the folder
    names; TFDS: ``info.features["label"].names``; cifar10_mini: CIFAR-10's), or None
    when its source names none; a list that does not match ``num_classes`` is refused."""
    names = split.class_names
    if names is None:
        return None
    names = [str(n) for n in names]
    if len(names) != split.num_classes:
        raise ValueError(f"{split.name} names {len(names)} classes but has "
                         f"{split.num_classes}")
    return names


@dataclasses.dataclass
class Trained:
    """What ``fit`` hands to ``export_best``.

    Attributes:
      method: the ``AdversarialMethod``, with the weights of the last epoch.
      run_ckpt: the run's checkpoint (best weights paths and epochs per network).
      test_note: the test split's note, for the model card.
      selection_note: which data selected the best epoch.
      num_classes: the number of classes.
      image_shape: the HWC shape of one image.
      class_names: the class names for the model card (None when the source has none).
    """
    method: object          # the AdversarialMethod, weights of the last epoch
    run_ckpt: object
    test_note: Optional[str]
    selection_note: str
    num_classes: int
    image_shape: tuple
    class_names: Optional[list] = None  # the data's label names (the model card's)


def fit(settings, log=print, chief=True):
    """Trains (or resumes) the run in ``settings.output_dir``.

    Args:
      settings: the resolved ``Settings``.
      log: a ``print``-like function for progress lines.
      chief: False for a non-chief worker in its private copy of the run directory.

    Returns:
      A ``Trained``.

    Raises:
      ValueError: pseudo-labels outside the classes, or a batch size that the data or the
        replicas do not fit.
    """
    import keras
    import tensorflow as tf

    from tf_st import data, methods, models
    from tf_st.training import callbacks as cb
    from tf_st.training import checkpoint as ckpt_lib
    from tf_st.training.optim import EpochCosineSchedule, EpochPiecewiseSchedule, TorchSGD
    from tf_st.distribute import make_strategy

    s, tag = settings, settings.method
    from tf_st.distribute import set_threads, split_cpu
    split_cpu(s.cpu_devices)
    set_threads(s.intra_op_threads, s.inter_op_threads)
    if s.deterministic:
        make_deterministic(log)
    train_split = data.take(data.load(s.dataset, "train", data_dir=s.data_dir), s.train_examples)
    test_split = data.load(s.dataset, "test", data_dir=s.data_dir)
    selection_split = test_split
    if s.selection_split == "holdout":
        train_split, selection_split = holdout(train_split, s.holdout_examples)
    keras.utils.set_random_seed(s.seed)
    if s.mixed_precision:
        keras.mixed_precision.set_global_policy(mixed_policy(s.mixed_precision_dtype))
    elif keras.mixed_precision.global_policy().name.startswith("mixed_"):
        # Runs in one process (a sweep, the tests) must not inherit the last run's policy.
        keras.mixed_precision.set_global_policy("float32")
    eval_x, eval_y = data.as_numpy(selection_split, limit=s.eval_examples)
    image_shape = tuple(eval_x.shape[1:])
    steps_per_epoch = train_split.num_examples // s.batch_size
    unlabeled = None
    if s.unlabeled:
        from tf_st.data import rst
        unlabeled = rst.load_unlabeled(s.unlabeled)
        if unlabeled[1].max() >= train_split.num_classes or unlabeled[1].min() < 0:
            raise ValueError(f"pseudo-labels of {s.unlabeled} are outside "
                             f"[0, {train_split.num_classes})")
        # The reference's "epoch": ceil(N_labelled / B) batches (semisup-adv, 50000 / B).
        steps_per_epoch = rst.batches_per_epoch(train_split.num_examples, s.batch_size)
        log(f"[{s.method}] robust self-training: {len(unlabeled[1])} pseudo-labelled "
            f"images from {s.unlabeled}, fraction {s.unlabeled_fraction} of each batch")
    if s.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, s.steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError(f"batch size {s.batch_size} exceeds the "
                         f"{train_split.num_examples} training examples")

    strategy = make_strategy(s.strategy)
    log(f"[{tag}] strategy: {type(strategy).__name__}, {strategy.num_replicas_in_sync} "
        f"replica(s)")
    if s.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(f"--batch_size={s.batch_size} is not divisible by "
                         f"{strategy.num_replicas_in_sync} replicas")
    cls = method_class(s.method)
    if s.lr_schedule == "cosine":
        schedule = EpochCosineSchedule(s.lr, s.epochs, steps_per_epoch)
    else:
        schedule = EpochPiecewiseSchedule(s.lr, s.lr_milestones, steps_per_epoch,
                                          multipliers=s.lr_multipliers)
    with strategy.scope():
        networks = {name: models.build(arch, train_split.num_classes, input_shape=image_shape)
                    for name, arch in cls.network_archs(s.arch, s.hparams).items()}
        if s.sync_batchnorm:
            for net in networks.values():
                models.set_batchnorm(net, synchronized=True)
        hooks = []
        if s.awp:
            from tf_st.methods.awp import AWP
            hooks.append(AWP(s.awp_gamma, s.awp_warmup, s.awp_proxy_lr, steps_per_epoch,
                             first_epoch=s.awp_first_epoch))
        method = methods.build(s.method, networks, seed=s.seed, step_hooks=hooks, **s.hparams)
        # One optimizer per network, as the references that train several networks do.
        optimizers = {name: TorchSGD(schedule, momentum=s.momentum,
                                     coupled_weight_decay=s.weight_decay, nesterov=s.nesterov)
                      for name in networks}
        method.compile(optimizer=optimizers if len(optimizers) > 1 else optimizers[next(iter(networks))],
                       jit_compile=s.jit_compile)
        method(tf.zeros((1,) + image_shape))
        method.build_optimizers()
    run_ckpt = ckpt_lib.RunCheckpoint(s.output_dir, method)
    start_epoch = run_ckpt.restore(check_best=chief)
    # A corrupt metrics.csv is refused now, not after an epoch of training.
    cb.read_metrics(os.path.join(s.output_dir, "metrics.csv"))
    if start_epoch:
        best = ", ".join(
            f"{'' if run_ckpt.single else n + ' '}{100 * float(run_ckpt.best_robust[n].numpy()):.2f}% "
            f"at epoch {int(run_ckpt.best_epoch[n].numpy())}" for n in method.network_names)
        log(f"[{tag}] resumed after epoch {start_epoch} (best {method.selection_attack} {best})")

    train_keys = [m.name for m in method.metrics]
    best_cb = cb.BestAndLatest(run_ckpt, method, s.selection_split)
    callbacks = [
        cb.MethodEpochBegin(method),
        cb.StopOnNonFinite(s.hparams),
        cb.EpochRecord(schedule.lr_at_epoch),
        cb.RobustEvaluation(method, eval_x, eval_y, epsilon=s.hparams["epsilon"],
                            step_size=s.eval_step_size, norm=s.hparams["norm"],
                            batch_size=min(s.eval_batch_size, len(eval_x)), seed=s.seed,
                            split=s.selection_split),
        best_cb,
        cb.MetricsCSV(os.path.join(s.output_dir, "metrics.csv"), train_keys),
        keras.callbacks.TensorBoard(os.path.join(s.output_dir, "tensorboard"),
                                    write_graph=False, update_freq="epoch"),
        cb.CommitEpoch(run_ckpt),
        cb.EpochSummary(tag, method, best_cb, start_epoch, s.epochs, train_keys,
                        schedule.lr_at_epoch, s.selection_split),
    ]
    if start_epoch < s.epochs:
        if unlabeled is not None:
            train_ds = rst.rst_epochs(rst.split_arrays(train_split), unlabeled, s.batch_size,
                                      s.unlabeled_fraction, s.augment, s.seed, start_epoch,
                                      s.epochs, steps_per_epoch)
        else:
            train_ds = data.train_epochs(train_split, s.batch_size, s.augment, s.seed,
                                         start_epoch, s.epochs, steps_per_epoch)
        from tf_st.distribute import distribute_batches
        train_ds = distribute_batches(strategy, train_ds, s.batch_size)
        method.fit(train_ds, epochs=s.epochs, initial_epoch=start_epoch,
                   steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                   shuffle=False, verbose=1 if sys.stdout.isatty() else 0)
    selection_note = (f"{selection_split.note} (--selection_split=holdout)"
                      if s.selection_split == "holdout"
                      else "the test split (as the references select)")
    return Trained(method, run_ckpt, test_split.note, selection_note,
                   train_split.num_classes, image_shape, _class_names(train_split))


def export_best(settings, trained, log=print):
    """Loads each network's best weights and exports it as a SavedModel with a model card.

    Args:
      settings: the run's ``Settings`` (resolved by ``resolve``).
      trained: what ``fit`` returned.
      log: a ``print``-like function for progress lines.

    Returns:
      ``{network: (version dir, model card)}``.

    Raises:
      RuntimeError: no epoch finished, or ``metrics.csv`` lacks the best epoch's row.
      NonFiniteLossError: the best weights are not finite.
    """
    import keras

    from tf_st.saved_model import export_classifier
    from tf_st.training.callbacks import NonFiniteLossError, metric_key, read_metrics_row

    s, method, ckpt = settings, trained.method, trained.run_ckpt
    metrics_path = os.path.join(s.output_dir, "metrics.csv")
    archs = method_class(s.method).network_archs(s.arch, s.hparams)
    out = {}
    for name, net in method.networks.items():
        path = ckpt.best_weights_paths[name]
        if not os.path.exists(path):
            raise RuntimeError("no epoch finished; nothing to export")
        net.load_weights(path)
        if not all(np.all(np.isfinite(keras.ops.convert_to_numpy(v))) for v in net.weights):
            raise NonFiniteLossError(f"the best weights of {name} ({path}) are not finite; "
                                     "nothing is exported")
        best_epoch = int(ckpt.best_epoch[name].numpy())
        row = read_metrics_row(metrics_path, best_epoch)
        if not row:
            raise RuntimeError(f"{metrics_path} has no row for epoch {best_epoch}, the best "
                               f"epoch of {name}; nothing is exported (the card would "
                               "carry no accuracy)")
        split = s.selection_split
        attack = method.selection_attack
        card = {"method": s.method, "dataset": s.dataset, "arch": archs[name],
                "num_classes": trained.num_classes, "class_names": trained.class_names,
                "image_shape": list(trained.image_shape),
                "epsilon": s.hparams["epsilon"],
                # The threat model of training, selection and evaluation ("linf"/"l2").
                "norm": s.norm, "hparams": method.hparams(),
                # The policy the network trained under ("float32", "mixed_bfloat16",
                # "mixed_float16"); the export itself is float32 whatever it was
                # (tf_st.saved_model.float32_copy).
                "training_precision": net.dtype_policy.name,
                "awp": ({"gamma": s.awp_gamma, "warmup": s.awp_warmup,
                         "proxy_lr": s.awp_proxy_lr, "first_epoch": s.awp_first_epoch}
                        if s.awp else None),
                "best_epoch": best_epoch,
                # On the selection split (test or holdout), as "selection" says.
                "clean_acc": float(row.get(metric_key(method, name, split, "clean"), math.nan)),
                f"{attack}_acc": float(row.get(metric_key(method, name, split, attack),
                                               math.nan)),
                "selection_split": split,
                "selection": f"best {attack}"
                             + (" (L2)" if s.norm == "l2" else "")
                             + f" accuracy on {trained.selection_note}, "
                             + ("strictly better epochs only" if method.selection_strict
                                else "ties to the later epoch"),
                "data_note": trained.test_note, "flags": s.as_json(),
                # export_classifier adds the versions, time, command line, path and
                # fingerprint of the SavedModel (tf_st.provenance).
                "provenance": {"dataset": s.dataset, "split": "train",
                               "selection_data": trained.selection_note,
                               "epsilon": s.hparams["epsilon"], "norm": s.norm,
                               "seeds": {"training": s.seed}}}
        export_dir = os.path.join(s.output_dir, "export")
        if not ckpt.single:
            card["network"] = name
            export_dir = os.path.join(export_dir, name)
        version_dir = export_classifier(net, export_dir, version=1, model_card=card,
                                        overwrite=True)
        log(f"[{s.method}] exported best {'classifier' if ckpt.single else name} "
            f"(epoch {best_epoch}) to {version_dir}")
        out[name] = (version_dir, card)
    return out


def final_evaluation(settings, exports):
    """Evaluates each exported SavedModel under ``settings.final_attacks``.

    Each report is written to ``evaluation.json`` (``evaluation.<network>.json`` per network)
    in the run directory.

    Args:
      settings: the run's ``Settings`` (resolved by ``resolve``).
      exports: what ``export_best`` returned.

    Returns:
      ``{network: report}``.
    """
    from tf_st.saved_model import load
    from tf_st.evaluation.report import evaluate_and_report

    s = settings
    reports = {}
    for name, (version_dir, card) in exports.items():
        output = "evaluation.json" if len(exports) == 1 else f"evaluation.{name}.json"
        reports[name] = evaluate_and_report(
            load(version_dir), dataset=s.dataset, data_dir=s.data_dir, split="test",
            attacks=list(s.final_attacks), epsilon=s.hparams["epsilon"], step_size=s.eval_step_size,
            norm=s.hparams["norm"],
            examples=s.final_examples, batch_size=s.eval_batch_size, seed=s.seed,
            output=os.path.join(s.output_dir, output), model_card=card, verbose=True)
    return reports


def run(settings, flagfile_text=None, log=print, overwrite=False):
    """Trains ``settings.method`` end to end: resolve, run directory, fit, export, evaluate.

    Rerunning the same settings resumes from the run directory's checkpoint.

    Args:
      settings: a ``Settings`` (resolved or not).
      flagfile_text: the text of ``flags.txt`` to write; None writes none.
      log: a ``print``-like function for progress lines.
      overwrite: start over in a directory of a run with other settings.

    Returns:
      The final reports ``{network: report}`` or, without final attacks, the model cards
      ``{network: card}`` (``{}`` on a non-chief worker).

    Raises:
      ValueError: bad settings (see ``resolve``) or a batch larger than the training set.

    Example:
      A short Squeeze Training run on the bundled CIFAR-10 subset::

          from tf_st import experiment

          settings = experiment.Settings(
              method="st", dataset="cifar10_mini", arch="small_cnn", epochs=1,
              final_attacks=("pgd20",), output_dir="runs/demo")
          reports = experiment.run(settings)  # {"classifier": report}
    """
    import tensorflow as tf
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # TF's SavedModel writer logs at INFO via absl
    tf.get_logger().setLevel("ERROR")
    s = resolve(settings)
    # Data first: a missing dataset fails before anything is written.
    from tf_st import data
    train_split = data.take(data.load(s.dataset, "train", data_dir=s.data_dir), s.train_examples)
    if train_split.num_examples < s.batch_size:
        raise ValueError(f"--batch_size={s.batch_size} exceeds the {train_split.num_examples} "
                         f"training examples of {s.dataset}")
    worker_dir = None
    if s.strategy == "multi_worker":
        from tf_st.distribute import make_strategy, worker_index
        index = worker_index(make_strategy("multi_worker"))
        if index:
            # Only the chief writes the run directory.  Another worker trains in a private
            # copy of the chief's checkpoints (resuming where the chief resumes; a shared
            # file system is assumed) and leaves nothing behind.
            worker_dir = _worker_copy(s.output_dir, index)
            log(f"[{s.method}] worker {index}: private run directory {worker_dir}")
            s = dataclasses.replace(s, output_dir=worker_dir, final_attacks=())
    try:
        with prepare_run_dir(s, flagfile_text, overwrite=overwrite):
            if worker_dir:
                fit(s, log=log, chief=False)
                return {}
            return _run_in(s, log)
    finally:
        if worker_dir:
            shutil.rmtree(worker_dir, ignore_errors=True)


def _worker_copy(chief_dir, index):
    private = tempfile.mkdtemp(prefix=f"tf_st-worker{index}-")
    source = os.path.join(chief_dir, "checkpoints")
    if os.path.isdir(source):
        shutil.copytree(source, os.path.join(private, "checkpoints"),
                        ignore=shutil.ignore_patterns("*.tmp*", ".tmp-*"))
    return private


def _run_in(s, log):
    """The chief's (or the only process's) run: train, export the best model, evaluate."""
    log(f"[{s.method}] run directory: {s.output_dir}")
    log(f"[{s.method}] settings: " + ", ".join(
        f"{k}={v}" for k, v in sorted(s.as_json().items())
        if k not in ("output_dir", "hparams")))
    log(f"[{s.method}] hparams: {s.hparams}")
    trained = fit(s, log=log)
    exports = export_best(s, trained, log=log)
    if not s.final_attacks:
        return {name: card for name, (_, card) in exports.items()}
    return final_evaluation(s, exports)
