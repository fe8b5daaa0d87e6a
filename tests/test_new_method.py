"""A new method is one new module: a copy of ``tf_st/methods/madry.py`` under another
file name, with its class names and keys changed and no other file touched, trains two
steps, exports and evaluates through ``python -m trainers.train --method=<new key>``.

The copy goes into a copy of the package (the checkout is never written to), which the
trainer then imports instead of the checkout's."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_copied_method_module_trains_exports_and_evaluates(tmp_path):
    tree = tmp_path / "tree"
    for package in ("tf_st", "trainers"):
        shutil.copytree(os.path.join(ROOT, package), tree / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    source = (tree / "tf_st" / "methods" / "madry.py").read_text()
    renamed = re.sub(r"\bMadry", "Probe", source)
    renamed = renamed.replace('key = "madry2"', 'key = "probe2"').replace(
        'key = "madry"', 'key = "probe"')
    assert renamed.count('key = "probe') == 2 and "class ProbeAT(" in renamed
    (tree / "tf_st" / "methods" / "probe.py").write_text(renamed)

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.train", "--method=probe", "--dataset=cifar10_mini",
         "--epochs=1", "--steps_per_epoch=2", "--batch_size=16", "--steps=1",
         "--eval_examples=16", "--final_examples=16", "--final_attacks=clean,pgd2",
         f"--output_dir={out}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((out / "export" / "1" / "model_card.json").read_text())
    assert card["method"] == "probe" and card["hparams"]["steps"] == 1
    # Its hyperparameters are flags (shared with madry's, which declare the same names).
    assert "--attack_bn=eval" in (out / "flags.txt").read_text()
    report = json.loads((out / "evaluation.json").read_text())
    assert report["num_examples"] == 16 and set(report["attacks"]) == {"clean", "pgd2"}
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2  # header + the one epoch
