"""Kill -9 an AutoAttack evaluation (python -m tf_st.evaluation --attacks=aa --state_file)
at random points, rerun the same command until it finishes: the per-example robust flags
equal an uninterrupted run's."""

import pytest
import json
import subprocess
import sys
import time

from tests.reliability.relaunch import ENV, ROOT, kill_then_rerun

pytestmark = pytest.mark.slow


def _export(tmp_path):
    import keras

    from export.saved_model import export_classifier
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
    return export_classifier(model, str(tmp_path / "export"), version=1)


def _cmd(model, report, state=None):
    cmd = [sys.executable, "-m", "tf_st.evaluation", f"--saved_model={model}", "--attacks=aa",
           "--examples=48", "--batch_size=16", f"--output={report}", "--epsilon=0.002"]
    return cmd + ([f"--state_file={state}"] if state else [])


def test_autoattack_killed_and_resumed_equals_uninterrupted(tmp_path):
    model = _export(tmp_path)
    started = time.time()
    subprocess.run(_cmd(model, tmp_path / "straight.json"), cwd=ROOT, env=ENV, check=True,
                   capture_output=True, timeout=900)
    full = time.time() - started
    kills = kill_then_rerun(_cmd(model, tmp_path / "killed.json", tmp_path / "state.json"),
                            full=full, seed=1, fraction=(0.3, 0.7), killed_runs=3, timeout=900)
    assert kills >= 1
    a = json.loads((tmp_path / "straight.json").read_text())["autoattack"]
    b = json.loads((tmp_path / "killed.json").read_text())["autoattack"]
    assert a["robust_flags"] == b["robust_flags"] and a["clean_flags"] == b["clean_flags"]
