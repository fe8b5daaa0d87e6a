"""Atomic writes: whole or nothing, no temporaries left, stale ones cleaned on export."""

import json
import os

import numpy as np
import pytest

from tf_st import fileio


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    fileio.atomic_write_json(str(path), {"a": np.float32(1.5), "b": (1, 2)})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [1, 2]}
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [1, 2]}
    assert sorted(os.listdir(tmp_path)) == ["report.json"]


def test_directory_replace_and_npz(tmp_path):
    target = tmp_path / "export" / "1"
    for content in ("old", "new"):
        with fileio.atomic_path(str(target), directory=True) as tmp:
            (open(os.path.join(tmp, "file"), "w")).write(content)
    assert (target / "file").read_text() == "new"
    assert os.listdir(tmp_path / "export") == ["1"]
    fileio.atomic_write_npz(str(tmp_path / "a.npz"), x=np.arange(3))
    assert np.load(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]


def test_export_removes_stale_temporaries(tmp_path):
    import keras

    from export.saved_model import export_classifier, load
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    stale = tmp_path / ".tmp-1-abc"
    stale.mkdir(parents=True)
    (stale / "saved_model.pb").write_text("half-written")
    export_classifier(model, str(tmp_path), version=1, model_card={"method": "x"})
    assert sorted(os.listdir(tmp_path)) == ["1"]
    assert load(str(tmp_path)).model_card == {"method": "x"}


def test_replacing_a_directory_never_leaves_the_name_empty(tmp_path, monkeypatch):
    """The rerun of a finished run exports over export/1: the old version stays in place
    until the new one is, and both swap methods leave only the new one behind."""
    from tf_st import fileio
    target = tmp_path / "1"
    target.mkdir()
    (target / "old.txt").write_text("old")
    seen = []
    real_rmtree = fileio.shutil.rmtree

    def watching_rmtree(p, *a, **k):
        seen.append(((target / "new.txt").exists(), os.path.isdir(target)))
        return real_rmtree(p, *a, **k)

    monkeypatch.setattr(fileio.shutil, "rmtree", watching_rmtree)
    for exchange in (True, False):
        if not exchange:
            monkeypatch.setattr(fileio, "_exchange", lambda a, b: False)
        with fileio.atomic_path(str(target), directory=True) as tmp:
            # While the new version is written, the old one is still served.
            assert (target / ("old.txt" if exchange else "new.txt")).exists()
            with open(os.path.join(tmp, "new.txt"), "w") as f:
                f.write("new")
        assert sorted(os.listdir(target)) == ["new.txt"]
        assert [n for n in os.listdir(tmp_path) if n != "1"] == []
    # The old version was deleted only once the new one was in place.
    assert seen and all(new and present for new, present in seen)


def test_a_full_disk_is_named_before_hdf5_can_crash(tmp_path, monkeypatch):
    import collections

    import keras

    from tf_st import fileio
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: usage(10, 10, 100))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = str(tmp_path / "best.weights.h5")
    with pytest.raises(OSError, match="cannot write .*best.weights.h5: 100 bytes free"):
        fileio.atomic_save_weights(model, path)
    assert os.listdir(tmp_path) == []


def test_os_errors_of_an_atomic_write_name_the_file(tmp_path):
    import errno

    from tf_st import fileio
    path = str(tmp_path / "report.json")
    with pytest.raises(OSError, match="cannot write .*report.json: No space left") as raised:
        with fileio.atomic_path(path):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert raised.value.errno == errno.ENOSPC and os.listdir(tmp_path) == []
