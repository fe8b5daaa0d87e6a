"""The diagnostics of tf_st.analysis: their numbers on an affine two-class classifier
(where the collaborative direction is the sign of the weight difference and every
quantity has a closed form), their aggregation rules, and each CLI end to end on
cifar10_mini runs (files written, numbers equal to what the runs logged)."""

import csv
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_st.analysis import angles, cli, collaborative, discrepancy, landscape, sweep
from tf_st.analysis.curves import accuracy_columns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (4, 4, 3)


def affine(seed=0):
    """``z = flatten(x) W + c`` with two classes, and its weight difference per class."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(SHAPE))
    w, c = rng.normal(0, 1, (d, 2)).astype(np.float32), np.array([0.1, -0.2], np.float32)
    inp = keras.Input(SHAPE)
    dense = keras.layers.Dense(2)
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)))
    dense.set_weights([w, c])
    return model, w.astype(np.float64), c.astype(np.float64)


def interior(n=6, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.3, 0.7, (n,) + SHAPE).astype(np.float32)
    return x, (np.arange(n) % 2).astype(np.int64)


def closed_ce(x, y, w, c):
    """Two-class CE = softplus(-(z_y - z_other)), float64."""
    z = x.reshape(len(x), -1).astype(np.float64) @ w + c
    margin = z[np.arange(len(y)), y] - z[np.arange(len(y)), 1 - y]
    return np.logaddexp(0.0, -margin)


def direction(w, y):
    """Per example, the sign of the true-minus-other weight column: CE's descent sign."""
    d = (w[:, 1] - w[:, 0])[None, :] * np.where(y == 1, 1.0, -1.0)[:, None]
    return np.sign(d).reshape((len(y),) + SHAPE)


def test_collaborative_ce_equals_the_closed_form_on_an_affine_model():
    model, w, c = affine()
    x, y = interior()
    eps = [4 / 255, 8 / 255]
    ce, examples = collaborative.measure(model, x, y, eps, steps=12, batch_size=4)
    np.testing.assert_allclose(ce["benign"], closed_ce(x, y, w, c), rtol=1e-5)
    u = direction(w, y)
    for e in eps:
        # Descent along the constant gradient sign reaches the ball's corner x + e*u.
        np.testing.assert_allclose(examples[e], x + e * u, atol=1e-6)
        np.testing.assert_allclose(ce[e], closed_ce(x + e * u, y, w, c), rtol=1e-4)
        assert np.all(ce[e] < ce["benign"])


def test_landscape_directions_and_surface_on_an_affine_model():
    model, w, c = affine()
    x, y = interior()
    u, v = landscape.directions(model, x, y, epsilon=8 / 255, steps=10, seed=0)
    np.testing.assert_array_equal(u, direction(w, y))
    uf, vf = u.reshape(len(x), -1), v.reshape(len(x), -1)
    np.testing.assert_allclose((uf * vf).sum(1), 0, atol=1e-9)  # orthogonal
    np.testing.assert_allclose(np.abs(vf).max(1), 1.0)  # same L-inf size as u
    grid = np.linspace(-8 / 255, 8 / 255, 3)
    surf = landscape.surface(model, x, y, u, v, grid, grid, batch_size=4)
    for i, a in enumerate(grid):
        for j, b in enumerate(grid):
            want = closed_ce(x + a * u + b * v, y, w, c).mean()  # no clipping in the interior
            assert surf[i, j] == pytest.approx(want, rel=1e-4)
    assert surf[-1, 1] < surf[1, 1] < surf[0, 1]  # downhill along u


def test_adversarial_and_collaborative_perturbations_are_opposite_on_an_affine_model():
    model, _, _ = affine()
    x, y = interior()
    for k in (1, 5):
        a = angles.angles(model, x, y, epsilon=8 / 255, step_size=2 / 255, steps=k)
        np.testing.assert_allclose(a, 180.0, atol=1e-3)


def test_discrepancy_and_matrices_by_hand():
    f = np.array([0, 1, 2, 2, 1])
    g = np.array([0, 2, 2, 1, 1])
    y = np.array([0, 1, 2, 1, 0])
    d, cf, cg, pair = discrepancy.discrepancy(f, g, y, 3)
    assert d == pytest.approx(2 / 5)
    assert cf.sum() == cg.sum() == 5 and cf[1, 2] == 1 and cg[1, 1] == 1
    want = np.zeros((3, 3), int)
    want[1, 2] = want[2, 1] = 1
    np.testing.assert_array_equal(pair, want)


def test_confidence_intervals_use_student_t():
    m, h, n = sweep.mean_ci([0.5, 0.6, 0.7])
    assert (m, n) == (pytest.approx(0.6), 3)
    assert h == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    assert math.isnan(sweep.mean_ci([0.4])[1]) and sweep.mean_ci([])[2] == 0
    assert sweep.t975(6) == 2.447 and sweep.t975(27) == 2.060 and sweep.t975(500) == 1.96
    rows = sweep.aggregate([("4", 1, {"attacks": {"clean": {"accuracy": 0.5}}}),
                            ("4", 2, {"attacks": {"clean": {"accuracy": 0.7}}})])
    assert rows[0]["mean"] == pytest.approx(0.6) and rows[0]["runs"] == 2
    assert rows[0]["ci95"] == pytest.approx(12.706 * math.sqrt(0.02) / math.sqrt(2))


def test_accuracy_columns_of_one_and_two_network_runs():
    assert accuracy_columns(["epoch", "test_clean_acc", "test_pgd20_acc"]) == \
        [("test_clean_acc", "test_pgd20_acc", "")]
    cols = ["epoch", "a_test_clean_acc", "a_test_pgd20_acc", "b_test_clean_acc",
            "b_test_pgd20_acc"]
    assert accuracy_columns(cols) == [("a_test_clean_acc", "a_test_pgd20_acc", "a_"),
                                      ("b_test_clean_acc", "b_test_pgd20_acc", "b_")]
    # A run that selected on a holdout names its columns so.
    assert accuracy_columns(["epoch", "holdout_clean_acc", "holdout_pgd20_acc"]) == \
        [("holdout_clean_acc", "holdout_pgd20_acc", "")]
    assert accuracy_columns(["a_holdout_clean_acc", "a_holdout_pgd10_acc"]) == \
        [("a_holdout_clean_acc", "a_holdout_pgd10_acc", "a_")]


# ---- the CLIs on real (tiny) runs ----------------------------------------------------

QUICK = ["--arch=small_cnn", "--epochs=2", "--steps_per_epoch=2", "--batch_size=16",
         "--steps=2", "--eval_examples=16", "--final_examples=16", "--final_attacks=clean,pgd2"]


def _train(method, out, *extra):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    r = subprocess.run([sys.executable, "-m", "trainers.train", f"--method={method}", *QUICK,
                        *extra, f"--output_dir={out}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return str(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {m: _train(m, root / m) for m in ("trades", "st", "fat")}


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _analysis(*argv):
    return cli.main(["tf_st.analysis", *argv])


@pytest.mark.slow  # trains three runs in subprocesses
def test_cli_collaborative_and_landscape_and_angles(runs, tmp_path):
    out = str(tmp_path)
    assert _analysis("collaborative", f"--run_dir={runs['trades']},{runs['st']}",
                     "--examples=8", "--steps=4", "--epsilons=2/255,4/255", "--grid_examples=3",
                     f"--output_dir={out}") == 0
    rows = _rows(os.path.join(out, "collaborative.csv"))
    assert [(r["model"], r["epsilon_255"]) for r in rows] == \
        [("trades", "2.0"), ("trades", "4.0"), ("st", "2.0"), ("st", "4.0")]
    from tf_st import data
    from tf_st.saved_model import load
    x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=8)
    model = load(os.path.join(runs["trades"], "export"))
    benign = collaborative.cross_entropy(model, tf.constant(x), tf.constant(y)).numpy()
    assert float(rows[0]["benign_ce_mean"]) == pytest.approx(float(benign.mean()), rel=1e-5)
    for r in rows:
        assert float(r["collaborative_ce_mean"]) <= float(r["benign_ce_mean"]) + 1e-6
    for name in ("collaborative.png", "collaborative_grid.png", "collaborative_examples.csv"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    assert _analysis("landscape", f"--run_dir={runs['st']}", "--examples=4", "--steps=3",
                     "--grid=3", f"--output_dir={out}") == 0
    surf = json.load(open(os.path.join(out, "landscape.json")))
    assert np.array(surf["surfaces"]["st"]).shape == (3, 3)
    assert surf["surfaces"]["st"][1][1] == pytest.approx(
        float(collaborative.cross_entropy(load(os.path.join(runs["st"], "export")),
                                          tf.constant(x[:4]), tf.constant(y[:4])).numpy().mean()),
        rel=1e-5)  # the centre of the plane is the benign loss
    assert _analysis("angles", f"--saved_model={runs['st']}/export", "--examples=6",
                     "--steps_list=1,3", f"--output_dir={out}") == 0
    summary = _rows(os.path.join(out, "angles_summary.csv"))
    assert [int(r["steps"]) for r in summary] == [1, 3]
    assert all(0 <= float(r["mean_deg"]) <= 180 for r in summary)
    assert os.path.getsize(os.path.join(out, "angles.png")) > 0


@pytest.mark.slow  # trains three runs in subprocesses
def test_cli_curves_fat_cost_and_discrepancy(runs, tmp_path):
    out = str(tmp_path)
    assert _analysis("curves", f"--run_dir={runs['trades']},{runs['st']}",
                     f"--output_dir={out}") == 0
    logged = _rows(os.path.join(runs["trades"], "metrics.csv"))
    plotted = [r for r in _rows(os.path.join(out, "curves.csv")) if r["run"] == "trades"]
    assert [float(r["test_pgd20_acc"]) for r in plotted] == \
        [float(r["test_pgd20_acc"]) for r in logged]
    assert _analysis("curves", f"--run_dir={runs['trades']}", "--metrics=train_col_ratio",
                     "--name=ratio", f"--output_dir={out}") == 0
    ratios = [float(r["train_col_ratio"]) for r in _rows(os.path.join(out, "ratio.csv"))]
    assert len(ratios) == 2 and all(0 <= r <= 1 for r in ratios)
    assert _analysis("curves", f"--run_dir={runs['st']}", "--name=roles",
                     "--metrics=train_ce,train_ce_upper,train_ce_lower",
                     f"--output_dir={out}") == 0
    for r in _rows(os.path.join(out, "roles.csv")):  # up-role CE >= low-role CE by role
        assert float(r["train_ce_upper"]) >= float(r["train_ce_lower"])
    assert _analysis("curves", f"--run_dir={runs['st']}", "--metrics=nope",
                     f"--output_dir={out}") == 2
    assert _analysis("fat_cost", f"--run_dir={runs['fat']},{runs['trades']},{runs['st']}",
                     f"--output_dir={out}") == 0
    cost = _rows(os.path.join(out, "fat_cost.csv"))
    fat_logged = [float(r["train_bp"]) for r in _rows(os.path.join(runs["fat"], "metrics.csv"))]
    assert [float(r["steps_per_example"]) for r in cost if r["run"] == "fat"] == fat_logged
    assert {float(r["steps_per_example"]) for r in cost if r["run"] == "trades"} == {2.0}
    assert {float(r["steps_per_example"]) for r in cost if r["run"] == "st"} == {4.0}
    assert all(0 <= v <= 2 for v in fat_logged)  # early stopping never exceeds K
    export = os.path.join(runs["st"], "export")
    assert _analysis("discrepancy", f"--saved_model={export},{export}", "--examples=20",
                     f"--output_dir={out}") == 0
    res = json.load(open(os.path.join(out, "discrepancy.json")))
    assert res["discrepancy"] == 0.0 and np.sum(res["disagreement"]) == 0
    assert _analysis("discrepancy", f"--run_dir={runs['trades']},{runs['st']}",
                     "--attack=pgd2", "--examples=20", f"--output_dir={out}") == 0
    res = json.load(open(os.path.join(out, "discrepancy.json")))
    assert res["examples"] == 20 and np.sum(res["disagreement"]) == round(20 * res["discrepancy"])


@pytest.mark.slow  # a sweep of whole training runs
def test_cli_sweep_runs_resumes_and_aggregates(tmp_path, capsys):
    out = str(tmp_path / "sweep")
    argv = ["sweep", "--method=trades", "--beta=1,6", "--seeds=1,2", "--parallel=2",
            f"--output_dir={out}", "--train_flags=" + " ".join(QUICK + ["--epochs=1"])]
    assert _analysis(*argv) == 0
    rows = _rows(os.path.join(out, "sweep.csv"))
    assert {(r["beta"], r["attack"]) for r in rows} == \
        {(b, a) for b in ("1", "6") for a in ("clean", "pgd2")}
    per_run = _rows(os.path.join(out, "sweep_runs.csv"))
    for r in rows:
        vals = [float(p[r["attack"]]) for p in per_run if p["beta"] == r["beta"]]
        m, h, n = sweep.mean_ci(vals)
        assert float(r["mean"]) == pytest.approx(m) and int(r["runs"]) == n == 2
        assert (math.isnan(h) and r["ci95"] == "nan") or float(r["ci95"]) == pytest.approx(h)
    assert os.path.getsize(os.path.join(out, "sweep.png")) > 0
    capsys.readouterr()
    assert _analysis(*argv) == 0  # a rerun trains nothing
    assert "4 of 4 runs already finished" in capsys.readouterr().out


def test_cli_refuses_bad_input_with_one_line(tmp_path, capsys):
    assert _analysis("nope") == 2
    assert "unknown analysis 'nope'" in capsys.readouterr().err
    assert _analysis("collaborative", f"--run_dir={tmp_path}/missing",
                     f"--output_dir={tmp_path}/o") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a trainer run directory" in err
    assert _analysis("sweep", "--method=trades", f"--output_dir={tmp_path}/s") == 2
    assert "--beta" in capsys.readouterr().err
    assert _analysis("sweep", "--method=trades", "--beta=1", "--train_flags=--seed=3",
                     f"--output_dir={tmp_path}/s") == 2
    assert "may not set --seed" in capsys.readouterr().err
