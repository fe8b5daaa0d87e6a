"""Keras callbacks of a training run, in the order the runner installs them:

``EpochRecord`` (lr, train seconds) -> ``RobustEvaluation`` (clean and PGD-20 accuracy
of every network, the selection metric) -> ``BestAndLatest`` (best weights per network,
staged) -> ``MetricsCSV`` -> ``keras.callbacks.TensorBoard`` -> ``CommitEpoch`` (the
resumable checkpoint, then the staged best weights into place: the epoch's one commit
point, ``tf_st.training.checkpoint``) -> ``EpochSummary`` (one printed line per epoch
with ETA), with ``StopOnNonFinite`` watching every batch.

Each callback reads and extends the epoch's ``logs`` dict, which Keras hands to every
callback in turn, so the CSV row, the TensorBoard scalars and the printed line show the
same numbers.  Metric keys: the method's training metrics (``loss``, its terms,
``accuracy``), then ``test_clean_acc`` / ``test_pgd20_acc`` (prefixed ``<network>_``
when a method trains several networks; ``holdout_...`` when the run selects on a
holdout, ``--selection_split=holdout``), ``lr``, ``train_seconds``, ``eval_seconds``.
"""

import csv
import math
import os
import time

import keras
import numpy as np

from tf_st.fileio import atomic_write_text


def metric_prefix(method, network):
    return "" if len(method.network_names) == 1 else f"{network}_"


def metric_key(method, network, split, measure):
    """A per-epoch accuracy's key in ``logs`` and ``metrics.csv``:
    ``[<network>_]<split>_<measure>_acc`` (``test_clean_acc``, ``a_holdout_pgd20_acc``).

    Args:
      method: the training method (its networks decide the prefix).
      network: the network's name.
      split: the set it was measured on, ``test`` or ``holdout``.
      measure: ``clean`` or the selection attack's name.
    """
    return f"{metric_prefix(method, network)}{split}_{measure}_acc"


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss term: the run stops before anything
    from that step is saved."""
    exit_code = 3  # tf_st.cli: not bad input (2), not a bug (a traceback)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops at the first batch whose logged loss terms are not finite, by raising:
    unlike ``keras.callbacks.TerminateOnNaN``, which lets the epoch end run (and our
    epoch-end callbacks would then select, checkpoint and export NaN weights), an
    exception skips every epoch-end callback, so the last good checkpoint stays the
    latest one.  The logged values are running means, so a single bad step poisons them
    and is caught at that step."""

    def __init__(self, hparams=None):
        super().__init__()
        self.hparams = hparams or {}
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad = {k: float(v) for k, v in logs.items()
               if np.ndim(v) == 0 and not math.isfinite(float(v))}
        if bad:
            terms = ", ".join(f"{k}={float(v):.4g}" for k, v in logs.items() if np.ndim(v) == 0)
            raise NonFiniteLossError(
                f"non-finite training loss at epoch {self._epoch + 1}, step {batch + 1}: "
                f"{terms}; hyperparameters {self.hparams}.  Nothing from this epoch was "
                f"saved; lower the learning rate or check the inputs.")


class MethodEpochBegin(keras.callbacks.Callback):
    """Hands the 1-based epoch to the method's per-epoch schedule (FAT's tau)."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def on_epoch_begin(self, epoch, logs=None):
        self.method.on_epoch_begin(epoch + 1)


class EpochRecord(keras.callbacks.Callback):
    """The epoch's learning rate and training wall time (before evaluation starts)."""

    def __init__(self, lr_at_epoch):
        super().__init__()
        self.lr_at_epoch = lr_at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs["lr"] = self.lr_at_epoch(epoch + 1)
        logs["train_seconds"] = round(time.time() - self._t0, 2)


class RobustEvaluation(keras.callbacks.Callback):
    """Clean and PGD-N accuracy of every network of the method, in inference mode, on a
    fixed evaluation set (ST-AT ``utils.py:evaluate``: PGD-20, step 2/255, every epoch;
    the attack is the method's ``selection_attack``); ``split`` names the set in the
    metric keys (``test``, or ``holdout`` when selecting on a holdout)."""

    def __init__(self, method, x, y, *, epsilon, step_size, batch_size, seed, norm="Linf",
                 split="test"):
        super().__init__()
        self.method, self.x, self.y, self.split = method, x, y, split
        self.epsilon, self.step_size, self.norm = epsilon, step_size, norm
        self.batch_size, self.seed, self.attack = batch_size, seed, method.selection_attack

    def on_epoch_end(self, epoch, logs=None):
        from tf_st.evaluation import evaluate

        t0 = time.time()
        for name, net in self.method.networks.items():
            ev = evaluate(lambda t, net=net: net(t, training=False), (self.x, self.y),
                          ("clean", self.attack), epsilon=self.epsilon,
                          step_size=self.step_size, batch_size=self.batch_size,
                          seed=self.seed, context=epoch + 1, verbose=False, norm=self.norm)
            for measure in ("clean", self.attack):
                logs[metric_key(self.method, name, self.split, measure)] = \
                    ev.attacks[measure].accuracy
        logs["eval_seconds"] = round(time.time() - t0, 2)


class BestAndLatest(keras.callbacks.Callback):
    """Stages each network's best weights by its own robust accuracy; ``CommitEpoch``
    (after the metrics row is written) saves the checkpoint and puts them in place."""

    def __init__(self, run_ckpt, method, split="test"):
        super().__init__()
        self.run_ckpt, self.method = run_ckpt, method
        self.split = split
        self.best_at_last_epoch = set()

    def on_epoch_end(self, epoch, logs=None):
        self.best_at_last_epoch = set()
        for name, net in self.method.networks.items():
            acc = logs[metric_key(self.method, name, self.split, self.method.selection_attack)]
            if self.run_ckpt.maybe_save_best(name, net, acc, epoch + 1,
                                             strict=self.method.selection_strict):
                self.best_at_last_epoch.add(name)


class CommitEpoch(keras.callbacks.Callback):
    """The epoch's commit point: the resumable checkpoint, then the staged best weights.
    Installed after everything that writes the epoch's records (metrics row, TensorBoard),
    so a resumed run either redoes the epoch whole or finds it complete."""

    def __init__(self, run_ckpt):
        super().__init__()
        self.run_ckpt = run_ckpt

    def on_epoch_end(self, epoch, logs=None):
        self.run_ckpt.save(epoch + 1)


class MetricsCSV(keras.callbacks.Callback):
    """``metrics.csv``, one row per epoch.  Unlike ``keras.callbacks.CSVLogger``, rows of
    epochs a killed run had logged but not checkpointed are replaced when the resumed
    run redoes them, and the file is rewritten atomically."""

    def __init__(self, path, train_keys):
        super().__init__()
        self.path, self.train_keys = path, tuple(train_keys)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "lr": logs.get("lr")}
        row.update({f"train_{k}": float(logs[k]) for k in self.train_keys if k in logs})
        row.update({k: v for k, v in logs.items()
                    if k not in self.train_keys and k not in row})
        rows = [r for r in read_metrics(self.path) if int(r["epoch"]) < row["epoch"]]
        rows.append({k: str(v) for k, v in row.items()})
        fields = list(row)
        lines = [",".join(fields)]
        for r in rows:
            lines.append(",".join(_csv_cell(r.get(k, "")) for k in fields))
        atomic_write_text(self.path, "\n".join(lines) + "\n")


def _csv_cell(value):
    value = str(value)
    return f'"{value}"' if "," in value or '"' in value else value


def read_metrics(path):
    """The rows of ``metrics.csv`` (none if it does not exist); a corrupt file raises
    ``ValueError`` naming it."""
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            int(r["epoch"])
        return rows
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path} is corrupt ({type(e).__name__}: {e}); delete it and the "
                         "run's checkpoints directory to retrain, or rerun with --overwrite") \
            from None


def read_metrics_row(path, epoch):
    for r in read_metrics(path):
        if int(r["epoch"]) == epoch:
            return r
    return {}


class EpochSummary(keras.callbacks.Callback):
    """One line per epoch: training terms, test accuracies, "(best)" markers, ETA."""

    def __init__(self, tag, method, best, first_epoch, epochs, train_keys, lr_at_epoch,
                 split="test"):
        super().__init__()
        self.tag, self.method, self.best, self.split = tag, method, best, split
        self.lr_at_epoch = lr_at_epoch
        self.first_epoch, self.epochs, self.train_keys = first_epoch, epochs, train_keys
        self._started = None

    def on_train_begin(self, logs=None):
        self._started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.time()
        print(f"[{self.tag}] epoch {epoch + 1}/{self.epochs} lr={self.lr_at_epoch(epoch + 1):g}",
              flush=True)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1 - self.first_epoch
        eta = (time.time() - self._started) / done * (self.epochs - epoch - 1)
        train = " ".join(f"{k}={float(logs[k]):.4f}" for k in self.train_keys if k in logs)
        tests = []
        attack = self.method.selection_attack
        for name in self.method.network_names:
            prefix = metric_prefix(self.method, name)
            label = f"{name} " if prefix else ""
            clean, robust = (logs[metric_key(self.method, name, self.split, m)]
                             for m in ("clean", attack))
            tests.append(f"{label}clean {100 * clean:.2f}% {attack} {100 * robust:.2f}%"
                         + (" (best)" if name in self.best.best_at_last_epoch else ""))
        print(f"[{self.tag}] epoch {epoch + 1}/{self.epochs}: {train} | {self.split} "
              + "; ".join(tests) + f" | {time.time() - self._t0:.0f}s, ETA {eta:.0f}s",
              flush=True)
