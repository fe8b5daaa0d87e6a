"""Training in the L2 threat model (``--norm=l2``): the inner attacks of madry, trades
and st step and project in the L2 ball, tiny runs export and report L2, the presets fill
the unset budget, and a method without L2 refuses it with one error line."""

import json

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tests.helpers import registered_method
from tf_st.experiment import config, runner
from tf_st.training import presets
from trainers import train

L2_METHODS = ("madry", "trades", "st")


def _batch(seed=0, n=6):
    rng = np.random.RandomState(seed)
    return (tf.constant(rng.uniform(0.2, 0.8, (n, 4, 4, 2)), tf.float32),
            tf.constant(rng.randint(0, 3, n), tf.int32))


def _points(key, norm, epsilon):
    # FAT: tau = steps, so that no example stops early (the early stop has its own tests).
    extra = {"tau": 3, "tau_schedule": ""} if key.startswith("fat") else {}
    _, method = registered_method(key, steps=3, epsilon=epsilon, step_size=epsilon / 2,
                                  norm=norm, **extra)
    x, y = _batch()
    out = method.generate(x, y)
    # (FAT's step counts are no points.)
    return x, [out[k] for k in sorted(out) if out[k].shape == x.shape]


# Every method with an inner attack (natural has none).
ATTACKING = ("madry", "madry2", "trades", "trades2", "st", "mart", "mart2", "alp", "cat",
             "col", "fat", "fat_trades", "fat_mart")


def test_every_method_lists_l2():
    from tf_st import methods
    assert all("L2" in cls.norms for cls in methods.METHODS.values())
    assert set(ATTACKING) | {"natural"} == set(methods.METHODS)


@pytest.mark.parametrize("key", ATTACKING)
def test_inner_attack_stays_in_the_l2_ball_and_differs_from_linf(key):
    # The L-inf ball of radius 0.3 reaches L2 lengths up to 0.3 * sqrt(32) on 4x4x2
    # inputs, so the L-inf points leave the L2 ball and the two attacks differ.
    eps = 0.3
    x, l2 = _points(key, "L2", eps)
    _, linf = _points(key, "Linf", eps)
    for a, b in zip(l2, linf):
        d = tf.reshape(a - x, [x.shape[0], -1]).numpy()
        assert np.all(np.linalg.norm(d, axis=1) <= eps + 1e-5)
        assert np.all((a.numpy() >= 0) & (a.numpy() <= 1))
        assert np.linalg.norm(d, axis=1).max() > 0.05  # it moved
        assert not np.allclose(a.numpy(), b.numpy(), atol=1e-4)
        # The L-inf points use the L-inf ball: beyond the L2 radius somewhere.
        dl = tf.reshape(b - x, [x.shape[0], -1]).numpy()
        assert np.abs(dl).max() <= eps + 1e-6 and np.linalg.norm(dl, axis=1).max() > eps


def test_st_uniform_start_is_in_the_l2_ball():
    _, method = registered_method("st", steps=0, epsilon=0.2, step_size=0.1, norm="L2",
                                  init="uniform")
    x, y = _batch()
    out = method.generate(x, y)
    for k in ("adv", "col"):
        d = tf.reshape(out[k] - x, [x.shape[0], -1]).numpy()
        assert np.all(np.linalg.norm(d, axis=1) <= 0.2 + 1e-5)
        assert np.abs(d).max() > 0


def test_l2_presets_fill_the_unset_budget_and_given_values_win():
    s = runner.resolve(config.Settings(method="madry", dataset="cifar10", norm="l2"))
    assert s.hparams["norm"] == "L2"
    for k, v in presets.L2_HPARAMS.items():
        assert s.hparams[k] == pytest.approx(v)
    assert s.eval_step_size == pytest.approx(2.5 * 0.5 / 20)
    # The FAT/SVHN cells' L-inf values do not leak into L2; given ones (> 1 too) win.
    s = runner.resolve(config.Settings(method="st", dataset="svhn", norm="l2",
                                       hparams={"epsilon": 1.5, "steps": 3},
                                       eval_step_size=0.2))
    assert (s.hparams["epsilon"], s.hparams["step_size"], s.hparams["steps"]) == (1.5, 0.1, 3)
    assert s.eval_step_size == 0.2
    # L-inf: as before (the ST paper's budget), and epsilon > 1 still refused.
    s = runner.resolve(config.Settings(method="st", dataset="cifar10"))
    assert s.hparams["norm"] == "Linf" and s.hparams["epsilon"] == pytest.approx(8 / 255)
    assert s.eval_step_size == pytest.approx(2 / 255)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        runner.resolve(config.Settings(method="st", dataset="cifar10",
                                       hparams={"epsilon": 1.5}))


@pytest.mark.parametrize("key", ["fat", "cat", "st"])
def test_method_without_l2_refuses_it_with_one_line_exit_2(tmp_path, capsys, monkeypatch,
                                                           key):
    # Every registered method implements L2 now; one that lists only L-inf (as a new
    # method may) is refused before any work.
    from tf_st import methods
    monkeypatch.setattr(methods.METHODS[key], "norms", ("Linf",))
    out = tmp_path / "run"
    assert train.run_in_process([f"--method={key}", "--norm=l2", f"--output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not train in the L2 threat model" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_l2_epsilon_above_one_passes_the_flag_check(tmp_path):
    # Under l2 --epsilon=2 passes parsing (the run then stops at --epochs=0, another flag's
    # bound); under linf it is the [0, 1] error.
    out = tmp_path / "run"
    with pytest.raises(flags.Error, match="epochs"):
        train.run_in_process(["--method=trades", "--norm=l2", "--epsilon=2", "--epochs=0",
                              f"--output_dir={out}"])
    with pytest.raises(flags.Error, match=r"\[0, 1\]"):
        train.run_in_process(["--method=trades", "--epsilon=2", f"--output_dir={out}"])
    s = runner.resolve(config.Settings(method="trades", dataset="cifar10_mini", norm="l2",
                                       hparams={"epsilon": 2.0}))
    assert s.hparams["epsilon"] == 2.0


@pytest.mark.slow  # a whole tiny trainer each (about 10-20 s on 2 cores)
@pytest.mark.parametrize("key", L2_METHODS + ("fat",))
def test_tiny_l2_run_exports_and_reports_l2(tmp_path, key):
    out = tmp_path / "run"
    assert train.run_in_process([
        f"--method={key}", "--norm=l2", "--arch=small_cnn", "--epochs=1",
        "--steps_per_epoch=2", "--batch_size=8", "--eval_examples=16", "--final_examples=16",
        "--final_attacks=clean,pgd3", "--dataset=cifar10_mini", f"--output_dir={out}"]) == 0
    card = json.loads(next((out / "export").glob("*/model_card.json")).read_text())
    assert card["norm"] == "l2" and card["provenance"]["norm"] == "l2"
    assert card["hparams"]["norm"] == "L2" and card["epsilon"] == 0.5
    report = json.loads((out / "evaluation.json").read_text())
    assert report["norm"] in ("L2", "l2")
    assert "--norm=l2" in (out / "flags.txt").read_text()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["norm"] == "l2" and settings["hparams"]["norm"] == "L2"


def test_runs_recorded_before_norm_existed_resume_as_linf():
    from tf_st.training.rundir import differences
    old = {"seed": 1, "hparams": {"epsilon": 0.03}}
    new = {"seed": 1, "norm": "linf", "hparams": {"epsilon": 0.03, "norm": "Linf"}}
    assert differences(old, new) == []
    l2 = {"seed": 1, "norm": "l2", "hparams": {"epsilon": 0.03, "norm": "L2"}}
    assert [d[0] for d in differences(old, l2)] == ["hparams.norm", "norm"]
