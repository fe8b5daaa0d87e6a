"""Run-directory bookkeeping: resumable checkpoints and best weights per network.

The latest checkpoint holds *everything* a run needs to continue exactly: every
network's weights and BN statistics, every optimizer's slots and iteration count (which
also drives the lr schedule and the methods' noise seeds), the number of finished
epochs and each network's best robust accuracy so far.  ``tf.train.CheckpointManager``
writes the index file last, so a kill mid-write leaves the previous checkpoint usable.

One commit point per epoch: a new best is first written beside the best-weights file as
``best[.<network>].pending-e<epoch>.weights.h5``; the epoch's metrics row is written;
then the checkpoint (which records the new best accuracy and epoch) is saved, and only
then is the pending file renamed over ``best[.<network>].weights.h5``.  A kill before the
checkpoint leaves a pending file of an epoch the checkpoint does not hold, which
``restore`` deletes (the epoch is redone); a kill after it leaves one of the epoch the
checkpoint holds as best, which ``restore`` renames into place.  So the best weights, the
checkpoint's best epoch and the metrics row behind the model card always agree, with or
without ``--deterministic``.
"""

import glob
import os
import re

import tensorflow as tf

from tf_st.fileio import atomic_replace, atomic_save_weights, fault_point


class RunFileError(ValueError):
    """A file of the run directory that a resume needs is missing or corrupt."""


def _reason(e):
    text = (getattr(e, "message", None) or str(e)).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else 'no detail'}"


def _set_aside_unreadable_state(directory):
    """``tf.train.CheckpointManager`` raises on a garbled state file ``checkpoint``; it
    is renamed ``checkpoint.unreadable`` (kept for inspection) so that ``restore`` falls
    back to the numbered checkpoint files it names."""
    state = os.path.join(directory, "checkpoint")
    if not os.path.exists(state):
        return
    try:
        tf.train.get_checkpoint_state(directory)
    except Exception as e:  # noqa: BLE001 - text-format ParseError, UnicodeDecodeError, ...
        os.replace(state, state + ".unreadable")
        print(f"warning: {state} is unreadable ({_reason(e)}); set aside as "
              f"{state}.unreadable", flush=True)


class RunCheckpoint:
    """``method``: an ``AdversarialMethod`` (compiled).  Each network is selected by its
    own robust accuracy (CAT's rule; the one-network case is ST-AT's)."""

    def __init__(self, run_dir, method):
        names = method.network_names
        self.single = len(names) == 1
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
        self.best_robust = {n: tf.Variable(-1.0, dtype=tf.float64, trainable=False,
                                           name=f"best_robust_{n}") for n in names}
        self.best_epoch = {n: tf.Variable(0, dtype=tf.int64, trainable=False,
                                          name=f"best_epoch_{n}") for n in names}
        # method.optimizer is the LossScaleOptimizer wrapper under mixed precision.
        objects = dict(model=method, optimizer=method.optimizer, epoch=self.epoch)
        if self.single:
            (n,) = names
            objects.update(best_robust=self.best_robust[n], best_epoch=self.best_epoch[n])
        else:
            objects.update(best_robust=self.best_robust, best_epoch=self.best_epoch,
                           extra_optimizers=dict(method._extra_optimizers))
        self._ckpt = tf.train.Checkpoint(**objects)
        directory = os.path.join(run_dir, "checkpoints")
        _set_aside_unreadable_state(directory)
        self._manager = tf.train.CheckpointManager(
            self._ckpt, directory, max_to_keep=1, checkpoint_name="latest")
        self.best_weights_paths = {
            n: os.path.join(run_dir, "best.weights.h5" if self.single else f"best.{n}.weights.h5")
            for n in names}
        self._pending = {}

    def pending_path(self, name, epoch):
        return self.best_weights_paths[name][:-len(".weights.h5")] + f".pending-e{epoch}.weights.h5"

    def restore(self, check_best=True):
        """Restores the latest checkpoint if there is one, then settles the best-weights
        files a killed run left pending (see the module docstring); returns epochs done.
        ``check_best=False``: a non-chief worker, whose private copy holds the chief's
        checkpoints but not its best weights (it exports nothing)."""
        directory = self._manager.directory
        path = self._manager.latest_checkpoint
        if path is None:
            # The state file ``checkpoint`` missing or garbled while checkpoints are there:
            # never silently restart (that would overwrite the best weights).
            numbered = sorted((int(m.group(1)), f) for f in os.listdir(directory)
                              if (m := re.fullmatch(r"latest-(\d+)\.index", f))) \
                if os.path.isdir(directory) else []
            if numbered:
                path = os.path.join(directory, numbered[-1][1][:-len(".index")])
                print(f"warning: {os.path.join(directory, 'checkpoint')} is missing or "
                      f"unreadable; resuming from {path}", flush=True)
        if path:
            try:
                self._ckpt.restore(path).assert_existing_objects_matched()
            except Exception as e:  # noqa: BLE001 - DataLossError, IndexError, ...: one answer
                raise RunFileError(
                    f"the checkpoint {path} cannot be read ({_reason(e)}); delete "
                    f"{directory} to restart the training from epoch 1, or rerun with "
                    "--overwrite to discard the run") from e
        done = int(self.epoch.numpy())
        for name, final in self.best_weights_paths.items():
            stem = final[:-len(".weights.h5")]
            for pending in glob.glob(glob.escape(stem) + ".pending-e*.weights.h5"):
                m = re.search(r"\.pending-e(\d+)\.weights\.h5$", pending)
                epoch = int(m.group(1)) if m else -1
                if epoch == done and int(self.best_epoch[name].numpy()) == epoch:
                    atomic_replace(pending, final)
                else:
                    os.remove(pending)
        if done and check_best:
            self._check_best_weights()
        return done

    def _check_best_weights(self):
        """A resumed run's best weights exist and are readable HDF5 (refused before any
        training, naming the file, rather than at export)."""
        import h5py
        for name, final in self.best_weights_paths.items():
            if int(self.best_epoch[name].numpy()) == 0:
                continue
            hint = ("delete the run's checkpoints directory to retrain from epoch 1, or rerun "
                    "with --overwrite")
            if not os.path.exists(final):
                raise RunFileError(f"{final} is missing although the checkpoint records "
                                   f"epoch {int(self.best_epoch[name].numpy())} as best; {hint}")
            try:
                with h5py.File(final, "r"):
                    pass
            except Exception as e:  # noqa: BLE001 - h5py raises OSError subclasses
                raise RunFileError(f"{final} is corrupt ({_reason(e)}); {hint}") from e

    def save(self, epochs_done):
        """The epoch's commit: the checkpoint, then the pending best weights into place."""
        self.epoch.assign(epochs_done)
        try:
            path = self._manager.save(checkpoint_number=epochs_done)
        except (tf.errors.ResourceExhaustedError, tf.errors.UnknownError, OSError) as e:
            # A full disk surfaces as ResourceExhaustedError from TensorFlow's writer.
            raise OSError(28 if isinstance(e, tf.errors.ResourceExhaustedError) else None,
                          f"cannot write the checkpoint in {self._manager.directory} "
                          f"({_reason(e)}); the previous checkpoint is intact") from None
        fault_point("checkpoint")
        for name, pending in sorted(self._pending.items()):
            atomic_replace(pending, self.best_weights_paths[name])
        self._pending = {}
        return path

    def maybe_save_best(self, name, network, robust_acc, epoch, strict=False):
        """Keeps ``network``'s best weights by robust accuracy; ties go to the later
        epoch (ST-AT saves ``ep_best.pt`` when ``robust >= best``) unless ``strict``
        (CAT saves on ``>``)."""
        best = float(self.best_robust[name].numpy())
        if robust_acc > best or (not strict and robust_acc == best):
            # Staged until ``save`` commits the epoch.
            pending = self.pending_path(name, epoch)
            atomic_save_weights(network, pending)
            self._pending[name] = pending
            self.best_robust[name].assign(robust_acc)
            self.best_epoch[name].assign(epoch)
            return True
        return False
