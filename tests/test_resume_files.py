"""The run directory's resume files: one commit point per epoch (best weights staged
until the checkpoint is saved), and every corrupt or missing file refused by name or
recovered from, never silently discarded.  In process, on a linear model."""

import json
import os

import keras
import numpy as np
import pytest

from tests.helpers import linear_classifier
from tf_st import methods
from tf_st.training import callbacks as cb
from tf_st.training import checkpoint as ckpt_lib
from tf_st.training.rundir import RunDirectory, RunDirectoryError


def fresh(run_dir, seed=0):
    net, _, _ = linear_classifier(seed=seed)
    method = methods.build("natural", net)
    method.compile(optimizer=keras.optimizers.SGD(0.1))
    method(np.zeros((1, 2, 2, 3), np.float32))
    method.build_optimizers()
    return method, ckpt_lib.RunCheckpoint(str(run_dir), method)


def weights(path):
    net, _, _ = linear_classifier(seed=99)
    net.load_weights(path)
    return [w.numpy() for w in net.weights]


def test_best_weights_wait_for_the_checkpoint(tmp_path):
    method, ck = fresh(tmp_path)
    net = method.classifier
    assert ck.maybe_save_best("classifier", net, 0.5, 1)
    best = ck.best_weights_paths["classifier"]
    # Staged only: a kill now leaves the epoch uncommitted.
    assert not os.path.exists(best) and os.path.exists(ck.pending_path("classifier", 1))
    ck.save(1)
    assert os.path.exists(best) and not os.path.exists(ck.pending_path("classifier", 1))
    np.testing.assert_array_equal(weights(best)[0], net.weights[0].numpy())


def test_a_kill_before_the_checkpoint_discards_the_staged_epoch(tmp_path):
    method, ck = fresh(tmp_path)
    net = method.classifier
    ck.maybe_save_best("classifier", net, 0.5, 1)
    ck.save(1)
    first = weights(ck.best_weights_paths["classifier"])
    net.weights[0].assign(net.weights[0] + 1.0)
    ck.maybe_save_best("classifier", net, 0.6, 2)  # epoch 2 staged, then "killed"
    _, again = fresh(tmp_path, seed=1)
    assert again.restore() == 1
    assert not os.path.exists(again.pending_path("classifier", 2))
    np.testing.assert_array_equal(weights(again.best_weights_paths["classifier"])[0], first[0])
    assert int(again.best_epoch["classifier"].numpy()) == 1


def test_a_kill_between_checkpoint_and_rename_is_finished_by_the_resume(tmp_path, monkeypatch):
    method, ck = fresh(tmp_path)
    net = method.classifier
    ck.maybe_save_best("classifier", net, 0.5, 1)

    def killed(source, path):
        raise KeyboardInterrupt  # the process dies after the checkpoint, before the rename

    monkeypatch.setattr(ckpt_lib, "atomic_replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ck.save(1)
    monkeypatch.undo()
    best = ck.best_weights_paths["classifier"]
    assert not os.path.exists(best)
    _, again = fresh(tmp_path, seed=1)
    assert again.restore() == 1
    np.testing.assert_array_equal(weights(best)[0], net.weights[0].numpy())


@pytest.mark.parametrize("damage", ["missing", "garbled"])
def test_a_lost_checkpoint_state_file_resumes_from_the_intact_files(tmp_path, damage, capsys):
    method, ck = fresh(tmp_path)
    ck.maybe_save_best("classifier", method.classifier, 0.5, 1)
    ck.save(1)
    ck.save(2)
    state = tmp_path / "checkpoints" / "checkpoint"
    if damage == "missing":
        state.unlink()
    else:
        state.write_bytes(b"\x00\xffnot a proto {{{")
    _, again = fresh(tmp_path, seed=1)
    assert again.restore() == 2  # not a silent restart from epoch 1
    assert "resuming from" in capsys.readouterr().out


def test_a_truncated_checkpoint_is_refused_naming_it(tmp_path):
    method, ck = fresh(tmp_path)
    ck.maybe_save_best("classifier", method.classifier, 0.5, 1)
    ck.save(1)
    (data,) = [p for p in (tmp_path / "checkpoints").iterdir() if ".data-" in p.name]
    data.write_bytes(data.read_bytes()[:10])
    _, again = fresh(tmp_path, seed=1)
    with pytest.raises(ckpt_lib.RunFileError, match="latest-1.*cannot be read.*--overwrite"):
        again.restore()


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_damaged_best_weights_of_a_resumed_run_are_refused_naming_them(tmp_path, damage):
    method, ck = fresh(tmp_path)
    ck.maybe_save_best("classifier", method.classifier, 0.5, 1)
    ck.save(1)
    best = ck.best_weights_paths["classifier"]
    if damage == "missing":
        os.remove(best)
    else:
        with open(best, "r+b") as f:
            f.truncate(100)
    _, again = fresh(tmp_path, seed=1)
    with pytest.raises(ckpt_lib.RunFileError, match="best.weights.h5 is (missing|corrupt)"):
        again.restore()


@pytest.mark.parametrize("text", ["[]", '{"method": "st", "seed": 1', "\udcff"])
def test_a_corrupt_settings_json_is_refused_naming_it(tmp_path, text):
    (tmp_path / "settings.json").write_text(text, errors="surrogateescape")
    with pytest.raises(RunDirectoryError, match="settings.json is corrupt.*--overwrite"):
        with RunDirectory(str(tmp_path), {"method": "st"}):
            pass
    # --overwrite discards the run and starts afresh.
    (tmp_path / "metrics.csv").write_text("epoch\n1\n")
    with RunDirectory(str(tmp_path), {"method": "st"}, overwrite=True):
        pass
    assert json.loads((tmp_path / "settings.json").read_text()) == {"method": "st"}
    assert not (tmp_path / "metrics.csv").exists()


def test_a_garbled_metrics_csv_is_refused_naming_it(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_bytes(b"epoch,lr\n1,0.1\n\xff\xfe,garbage\n")
    with pytest.raises(ValueError, match="metrics.csv is corrupt"):
        cb.read_metrics(str(path))
    path.write_text("epoch,lr\n1,0.1\n2,0.1\n")
    assert [r["epoch"] for r in cb.read_metrics(str(path))] == ["1", "2"]


def test_a_dangling_symlink_output_dir_is_named(tmp_path):
    link = tmp_path / "run"
    os.symlink(tmp_path / "gone", link)
    with pytest.raises(RunDirectoryError, match="dangling symbolic link"):
        with RunDirectory(str(link), {"method": "st"}):
            pass


def test_a_full_disk_at_the_checkpoint_or_the_export_is_one_named_error(tmp_path, monkeypatch):
    import tensorflow as tf

    from tf_st import saved_model
    method, ck = fresh(tmp_path)

    def full(*a, **k):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(ck._manager, "save", full)
    with pytest.raises(OSError, match="cannot write the checkpoint in .*checkpoints"):
        ck.save(1)
    # keras.export.ExportArchive() is an instance of a backend subclass.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", full)
    with pytest.raises(OSError, match="cannot write the SavedModel .*export/1: no space"):
        saved_model.export_classifier(method.classifier, str(tmp_path / "export"), version=1)
    assert not (tmp_path / "export" / "1").exists()
