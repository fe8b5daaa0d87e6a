"""Every registered method trains a few steps on cifar10_mini through the one trainer,
in this process, and exports a SavedModel that the evaluation accepts."""

import json
import os

import pytest

from tf_st import methods
from trainers import train

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--dataset=cifar10_mini", "--arch=small_cnn", "--epochs=1", "--steps_per_epoch=1",
         "--batch_size=16", "--steps=1", "--eval_examples=16", "--final_examples=16",
         "--final_attacks=clean,fgsm"]


@pytest.mark.parametrize("key", sorted(methods.METHODS))
def test_trainer_smoke(tmp_path, key):
    out = tmp_path / key
    assert train.run_in_process(QUICK + [f"--method={key}", f"--output_dir={out}"]) == 0
    names = list(methods.METHODS[key].network_archs("small_cnn", {}))
    for name in names:
        single = len(names) == 1
        card = json.loads((out / "export" / ("" if single else name) / "1" /
                           "model_card.json").read_text())
        assert card["method"] == key
        if key != "natural":  # natural training reports no attack hyperparameters
            assert card["hparams"]["steps"] == 1  # the flag reached the method
        rep = json.loads((out / ("evaluation.json" if single else f"evaluation.{name}.json"))
                         .read_text())
        assert rep["num_examples"] == 16 and set(rep["attacks"]) == {"clean", "fgsm"}
        assert rep["worst_case_accuracy"] <= rep["attacks"]["clean"]["accuracy"]
    flagfile = (out / "flags.txt").read_text()
    assert f"--method={key}" in flagfile and "--dataset=cifar10_mini" in flagfile

