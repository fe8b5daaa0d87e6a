"""Run-directory bookkeeping: resumable checkpoints, best weights, atomic files.

The latest checkpoint holds *everything* a run needs to continue exactly: classifier
weights and BN statistics, optimizer slots and iteration count (which also drives the
lr schedule and the methods' noise seeds), the number of finished epochs and the best
robust accuracy so far.  ``tf.train.CheckpointManager`` writes the index file last,
so a kill mid-write leaves the previous checkpoint usable.
"""

import json
import os

import tensorflow as tf


class RunCheckpoint:
    def __init__(self, run_dir, method, optimizer):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
        self.best_robust = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_robust")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self._ckpt = tf.train.Checkpoint(model=method, optimizer=optimizer, epoch=self.epoch,
                                         best_robust=self.best_robust, best_epoch=self.best_epoch)
        self._manager = tf.train.CheckpointManager(
            self._ckpt, os.path.join(run_dir, "checkpoints"), max_to_keep=1,
            checkpoint_name="latest")
        self.best_weights_path = os.path.join(run_dir, "best.weights.h5")

    def restore(self):
        """Restores the latest checkpoint if there is one; returns epochs done."""
        path = self._manager.latest_checkpoint
        if path:
            self._ckpt.restore(path).assert_existing_objects_matched()
        return int(self.epoch.numpy())

    def save(self, epochs_done):
        self.epoch.assign(epochs_done)
        return self._manager.save(checkpoint_number=epochs_done)

    def maybe_save_best(self, classifier, robust_acc, epoch):
        """Keeps the best classifier by robust accuracy; ties go to the later epoch
        (ST-AT saves ``ep_best.pt`` when ``robust >= best``)."""
        if robust_acc >= float(self.best_robust.numpy()):
            atomic_save_weights(classifier, self.best_weights_path)
            self.best_robust.assign(robust_acc)
            self.best_epoch.assign(epoch)
            return True
        return False


def atomic_save_weights(model, path):
    tmp = path[:-len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, path)


def atomic_write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
