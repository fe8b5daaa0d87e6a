"""Run-directory bookkeeping: resumable checkpoints and best weights per network.

The latest checkpoint holds *everything* a run needs to continue exactly: every
network's weights and BN statistics, every optimizer's slots and iteration count (which
also drives the lr schedule and the methods' noise seeds), the number of finished
epochs and each network's best robust accuracy so far.  ``tf.train.CheckpointManager``
writes the index file last, so a kill mid-write leaves the previous checkpoint usable.
"""

import os

import tensorflow as tf

from tf_st.fileio import atomic_save_weights, fault_point


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
        self._manager = tf.train.CheckpointManager(
            self._ckpt, os.path.join(run_dir, "checkpoints"), max_to_keep=1,
            checkpoint_name="latest")
        self.best_weights_paths = {
            n: os.path.join(run_dir, "best.weights.h5" if self.single else f"best.{n}.weights.h5")
            for n in names}

    def restore(self):
        """Restores the latest checkpoint if there is one; returns epochs done."""
        path = self._manager.latest_checkpoint
        if path:
            self._ckpt.restore(path).assert_existing_objects_matched()
        return int(self.epoch.numpy())

    def save(self, epochs_done):
        self.epoch.assign(epochs_done)
        path = self._manager.save(checkpoint_number=epochs_done)
        fault_point("checkpoint")
        return path

    def maybe_save_best(self, name, network, robust_acc, epoch, strict=False):
        """Keeps ``network``'s best weights by robust accuracy; ties go to the later
        epoch (ST-AT saves ``ep_best.pt`` when ``robust >= best``) unless ``strict``
        (CAT saves on ``>``)."""
        best = float(self.best_robust[name].numpy())
        if robust_acc > best or (not strict and robust_acc == best):
            atomic_save_weights(network, self.best_weights_paths[name])
            self.best_robust[name].assign(robust_acc)
            self.best_epoch[name].assign(epoch)
            return True
        return False
