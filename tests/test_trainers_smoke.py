"""Every registered method's trainer runs a few steps on cifar10_mini and exports a
SavedModel that the evaluation accepts."""

import json
import os
import subprocess
import sys

import pytest

from tf_st import methods

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.mark.parametrize("key", sorted(methods.METHODS))
def test_trainer_smoke(tmp_path, key):
    assert os.path.exists(os.path.join(ROOT, "trainers", f"{key}.py")), f"no CLI for {key}"
    out = tmp_path / key
    r = subprocess.run(
        [sys.executable, "-m", f"trainers.{key}", "--dataset=cifar10_mini", "--arch=small_cnn",
         "--epochs=1", "--steps_per_epoch=1", "--batch_size=16", "--steps=1",
         "--eval_examples=16", "--final_attacks=", f"--output_dir={out}"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((out / "export" / "1" / "model_card.json").read_text())
    assert card["method"] == key
    report = tmp_path / "eval.json"
    r = subprocess.run(
        [sys.executable, "-m", "export.evaluate", f"--saved_model={out / 'export'}",
         "--dataset=cifar10_mini", "--attacks=clean,fgsm", "--examples=16", f"--output={report}"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(report.read_text())
    assert rep["num_examples"] == 16 and set(rep["attacks"]) == {"clean", "fgsm"}
