"""The method and runner interfaces the method family builds on: hyperparameters
declared once, several networks with one optimizer each, step hooks around the outer
step, per-network selection/export/evaluation, and the non-finite guard."""

import dataclasses
import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import linear_ce_grad, linear_classifier
from tf_st import methods
from tf_st.attacks import losses
from tf_st.methods.base import AdversarialMethod, StepHook, batch_mean
from tf_st.methods.hparams import HParams, cli_fields, hparam
from trainers import runner, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TwoNets(AdversarialMethod):
    """Two classifiers trained side by side on clean cross-entropy (a CAT-shaped toy)."""
    key = "twonets"

    @classmethod
    def network_archs(cls, arch, hparams):
        return {"left": arch, "right": arch}

    def generate(self, x, y, init=None):
        return {}

    def training_loss(self, x, y, generated):
        zl, zr = self.left(x, training=True), self.right(x, training=True)
        loss = batch_mean(losses.cross_entropy(zl, y)) + batch_mean(losses.cross_entropy(zr, y))
        return {"loss": loss, "clean_logits": {"left": zl, "right": zr}}


class Natural(AdversarialMethod):
    key = "toy_natural"

    def generate(self, x, y, init=None):
        return {}

    def training_loss(self, x, y, generated):
        return {"loss": batch_mean(losses.cross_entropy(self.forward_train(x), y))}


def _batch(n=6, shape=(2, 2, 3), classes=3):
    rng = np.random.RandomState(1)
    return rng.uniform(0, 1, (n,) + shape), np.arange(n) % classes


def test_each_network_is_stepped_by_its_own_optimizer(float64):
    left, w, b = linear_classifier(seed=0)
    right, w2, _ = linear_classifier(seed=1)
    x, y = _batch()
    method = TwoNets({"left": left, "right": right})
    method.compile(optimizer={"left": keras.optimizers.SGD(0.5),
                              "right": keras.optimizers.SGD(0.0)})
    assert method.optimizers["left"] is not method.optimizers["right"]
    logs = method.train_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose(left.layers[-1].kernel.numpy(), w - 0.5 * linear_ce_grad(w, b, x, y),
                               rtol=1e-10)
    np.testing.assert_array_equal(right.layers[-1].kernel.numpy(), w2)
    assert {"left_accuracy", "right_accuracy", "loss"} <= set(logs)
    with pytest.raises(ValueError, match="exactly the networks"):
        TwoNets({"left": left, "right": right}).compile(optimizer={"left": "sgd"})


class ShiftKernel(StepHook):
    """Moves the kernel by ``delta`` before the outer gradient and back after the update:
    the shape of AWP's perturb/restore."""

    def __init__(self, delta):
        self.delta, self.calls = delta, []

    def before_outer_gradient(self, method, x, y, generated):
        self.calls.append("before")
        method.primary.layers[-1].kernel.assign_add(self.delta)

    def after_apply(self, method, x, y, generated):
        self.calls.append("after")
        method.primary.layers[-1].kernel.assign_sub(self.delta)


def test_step_hooks_take_the_gradient_at_the_moved_weights_and_restore(float64):
    model, w, b = linear_classifier()
    x, y = _batch()
    delta = np.full_like(w, 0.3)
    hook = ShiftKernel(tf.constant(delta))
    method = Natural(model, step_hooks=[hook])
    method.compile(optimizer=keras.optimizers.SGD(0.5))
    method.train_on_batch(x, y)
    # w <- w - lr * grad(w + delta): the update uses the moved weights, the move is undone.
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(),
                               w - 0.5 * linear_ce_grad(w + delta, b, x, y), rtol=1e-10)
    assert hook.calls == ["before", "after"]


def test_hyperparameters_are_declared_once():
    @dataclasses.dataclass(frozen=True)
    class Toy(HParams):
        beta: float = hparam(2.0, "weight", minimum=0)
        reg: str = hparam("kl", "which", choices=("kl", "js"), what="regulariser", flag="toy_reg")
        copies: int = hparam(1, "fixed", integer=True, minimum=1, cli=False)

    assert Toy.build("toy", {"beta": 3}).as_dict() == {
        "epsilon": 8 / 255, "step_size": 2 / 255, "steps": 10, "norm": "Linf", "beta": 3.0,
        "reg": "kl", "copies": 1}
    assert [name for name, _ in cli_fields(Toy)] == ["beta", "toy_reg"]
    for bad, message in [({"beta": -1}, "beta must be >= 0"),
                         ({"reg": "l1"}, "unknown regulariser 'l1'"),
                         ({"copies": 1.5}, "copies must be an integer"),
                         ({"epsilon": 8}, r"\[0, 1\]"),
                         ({"gamma": 1}, r"unknown hyperparameter\(s\) \['gamma'\]")]:
        with pytest.raises(ValueError, match=message):
            Toy.build("toy", bad)


def test_every_method_hyperparameter_has_one_flag():
    import importlib

    # Importing every alias module defines no flag twice; a method needs no alias
    # (python -m trainers.train --method=<key> trains it), but every alias names one.
    aliases = [os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "trainers", "*.py"))
               if os.path.basename(p) not in ("__init__.py", "train.py", "runner.py",
                                               "pseudo_label.py")]
    assert set(aliases) <= set(methods.METHODS), sorted(set(aliases) - set(methods.METHODS))
    for key in aliases:
        importlib.import_module(f"trainers.{key}")
    for key, cls in methods.METHODS.items():
        for flag_name, f in cli_fields(cls.HParams):
            assert train._METHOD_FLAG_OWNERS[flag_name][key] == f.name


@pytest.mark.slow  # two whole runs (runner.run)
def test_two_network_run_selects_exports_and_evaluates_each(tmp_path, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "twonets", TwoNets)
    out = tmp_path / "run"
    settings = runner.Settings(method="twonets", arch="small_cnn", epochs=2, steps_per_epoch=1,
                               batch_size=16, eval_examples=16, final_examples=16,
                               final_attacks=("clean", "fgsm"), output_dir=str(out))
    reports = runner.run(settings)
    assert set(reports) == {"left", "right"}
    for name in ("left", "right"):
        assert (out / f"best.{name}.weights.h5").exists()
        card = json.loads((out / "export" / name / "1" / "model_card.json").read_text())
        assert card["network"] == name and card["method"] == "twonets"
        rep = json.loads((out / f"evaluation.{name}.json").read_text())
        assert rep["attacks"]["fgsm"]["accuracy"] <= 1.0 and rep["num_examples"] == 16
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"left_test_pgd20_acc", "right_test_pgd20_acc", "train_left_accuracy"} <= set(header)
    # Resuming a finished run trains nothing and re-exports the same selection.
    again = runner.run(settings)
    for name in ("left", "right"):
        assert again[name]["attacks"]["clean"]["correct"] == reports[name]["attacks"]["clean"]["correct"]


@pytest.mark.slow  # a whole trainer
def test_non_finite_loss_stops_before_anything_is_saved(tmp_path, capsys):
    out = tmp_path / "run"
    code = train.run_in_process(["--method=natural", "--lr=1e30", "--arch=small_cnn",
                                 "--epochs=2", "--steps_per_epoch=3", "--batch_size=16",
                                 "--eval_examples=16", "--final_attacks=", f"--output_dir={out}"])
    assert code == 3
    err = capsys.readouterr().err
    assert "non-finite training loss at epoch 1" in err and "Traceback" not in err
    assert not (out / "best.weights.h5").exists() and not (out / "export").exists()
    assert not (out / "checkpoints" / "checkpoint").exists()
