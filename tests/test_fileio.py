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
