"""The L2 threat model: PGD-L2 against a NumPy reference (float64) and cleverhans,
invariants of every L2 attack, ``norm`` through specs, ``parse``, AutoAttack, the
evaluation API, the report and the CLI, and the L-inf defaults left as they were.

APGD-CE / APGD-T in L2 are pinned to the official code in
``tests/test_autoattack_official.py``.
"""

import json

import keras
import numpy as np
import pytest

from tests.helpers import linear_classifier, softmax
from tf_st.attacks import specs
from tf_st.attacks.autoattack import state as st_lib
from tf_st.attacks.pgd import fgsm, pgd, project

EPS = 0.5


def conv_model(seed=0, classes=4):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(classes)(h))


def images(n=16, seed=0, low=0.0, high=1.0, shape=(8, 8, 3), classes=4):
    rng = np.random.RandomState(seed)
    return (rng.uniform(low, high, (n, *shape)).astype("float32"),
            rng.randint(0, classes, n))


def l2(a):
    return np.sqrt((np.asarray(a, np.float64) ** 2).reshape(len(a), -1).sum(1))


def _np_project(x_adv, x, eps):
    d = x_adv - x
    n = l2(d).reshape(-1, *[1] * (x.ndim - 1))
    return np.clip(x + d / (n + 1e-12) * np.minimum(eps, n), 0.0, 1.0)


def test_pgd_l2_matches_a_numpy_reference_in_float64(float64):
    """x <- clip(P_eps(x + alpha g / ||g||_2), 0, 1) on an affine model, whose CE gradient
    is (softmax(z) - onehot(y)) W^T in closed form; the same start, 20 steps."""
    model, w, b = linear_classifier(shape=(4, 4, 3), classes=5, seed=3)
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, (12, 4, 4, 3))
    y = rng.randint(0, 5, 12)
    eps, alpha, steps = 0.7, 0.15, 20
    start = _np_project(x + rng.normal(0, 0.2, x.shape), x, eps)

    ref = start.copy()
    for _ in range(steps):
        z = ref.reshape(len(x), -1) @ w + b
        g = ((softmax(z) - np.eye(5)[y]) @ w.T).reshape(x.shape)
        ref = _np_project(ref + alpha * g / (l2(g).reshape(-1, 1, 1, 1) + 1e-12), x, eps)

    ours = pgd(model, x, y, epsilon=eps, step_size=alpha, steps=steps, x_init=start,
               norm="L2").numpy()
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    assert np.all(l2(ours - x) <= eps + 1e-12) and ours.min() >= 0 and ours.max() <= 1
    assert np.all(l2(ours - x) > 0.95 * eps)  # at the sphere, less what [0, 1] clips
    # The spec runs the same function.
    spec = specs.PGD(epsilon=eps, step_size=alpha, steps=steps, norm="L2")
    np.testing.assert_array_equal(spec.perturb(model, x, y, x_init=start).numpy(), ours)


def test_pgd_l2_agrees_with_cleverhans():
    """cleverhans 4's TF2 ``projected_gradient_descent(norm=2)`` from the same start (x
    itself).  It clips to [0, 1] before its L2 projection, we after (as the official
    APGD): on images away from the box edges the two orders coincide."""
    chpgd = pytest.importorskip("cleverhans.tf2.attacks.projected_gradient_descent",
                                reason="cleverhans (test-only dependency) not installed")
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    model = conv_model(seed=2)
    x, y = images(seed=2, low=0.3, high=0.7)
    ours = fgsm(model, x, y, EPS, norm="L2").numpy()
    theirs = fast_gradient_method(model, x, EPS, 2, clip_min=0.0, clip_max=1.0, y=y,
                                  sanity_checks=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    ours = pgd(model, x, y, epsilon=EPS, step_size=0.1, steps=10, random_start=False,
               norm="L2").numpy()
    theirs = chpgd.projected_gradient_descent(
        model, x, EPS, 0.1, 10, 2, clip_min=0.0, clip_max=1.0, y=y, rand_init=False,
        sanity_checks=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert np.abs(ours - x).max() > 0.01  # it moved


@pytest.mark.parametrize("spec", [
    specs.PGD(epsilon=EPS, step_size=0.2, steps=5, norm="L2"),
    specs.PGD(epsilon=EPS, step_size=0.2, steps=5, loss="cw", norm="L2", restarts=2),
    specs.EveryIteratePGD(epsilon=EPS, step_size=0.2, steps=5, norm="L2"),
    specs.EarlyStoppedPGD(epsilon=EPS, step_size=0.2, steps=5, tau=1, norm="L2"),
    specs.FGSM(epsilon=EPS, norm="L2"),
    specs.APGD(epsilon=EPS, steps=5, norm="L2"),
    specs.APGDT(epsilon=EPS, steps=5, norm="L2"),
], ids=lambda s: type(s).__name__)
def test_l2_attacks_stay_in_the_l2_ball_and_the_box(spec):
    model = conv_model()
    x, y = images()
    res = spec.run(model, x, y, seed=3)
    adv = res.x_adv.numpy()
    dist = l2(adv - x)
    assert np.all(dist <= EPS + 1e-5), dist.max()
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert dist.max() > EPS / 2  # it moved, far beyond an L-inf 8/255 box's L2 reach?
    # ... and further than the L-inf ball would allow per pixel (not an L-inf attack).
    assert np.abs(adv - x).max() > 8 / 255
    np.testing.assert_array_equal(
        res.fooled.numpy(), np.argmax(model(adv).numpy(), 1) != y)


def test_l2_random_start_is_uniform_in_the_ball_and_seeded():
    x = np.full((64, 8, 8, 3), 0.5, np.float32)
    spec = specs.PGD(epsilon=EPS, step_size=0.1, steps=0, norm="L2")
    a = spec.perturb(conv_model(), x, np.zeros(64, int), seed=7).numpy()
    b = spec.perturb(conv_model(), x, np.zeros(64, int), seed=7).numpy()
    np.testing.assert_array_equal(a, b)
    r = l2(a - x)
    assert np.all(r <= EPS + 1e-6) and np.all(r > 0.9 * EPS)  # d = 192: near the sphere
    assert np.abs(a - x).max() > 0  # not the L-inf start
    np.testing.assert_allclose(project(a + 1.0, x, EPS, "L2").numpy(), np.clip(
        _np_project(a.astype(np.float64) + 1.0, x, EPS), 0, 1), atol=1e-6)


def test_norm_validation_and_budgets():
    assert specs.PGD().norm == "Linf" and specs.APGD().norm == "Linf"
    assert specs.PGD(norm="l2").norm == "L2"  # canonical spelling
    specs.PGD(epsilon=2.0, step_size=1.5, norm="L2")  # L2 budgets may exceed 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        specs.PGD(epsilon=2.0)  # ... L-inf ones may not
    with pytest.raises(ValueError, match=">= 0"):
        specs.PGD(epsilon=-0.1, norm="L2")
    with pytest.raises(ValueError, match="unknown norm"):
        specs.PGD(norm="L1")
    for cls in (specs.FABT, specs.Square):
        assert cls(epsilon=EPS, norm="L2").norm == "L2"
        assert specs.parse(cls.name, epsilon=EPS, norm="L2") == cls(epsilon=EPS, norm="L2")
    # AutoAttack standard in L2: every component in L2 at the radius.
    aa = specs.parse("aa", epsilon=EPS, norm="L2")
    assert aa == specs.AutoAttack(epsilon=EPS, norm="L2")
    from tf_st.attacks.specs import components_for
    parts = components_for("standard", epsilon=EPS, norm="L2")
    assert [(a.name, a.norm, a.epsilon) for a in parts] == [
        (n, "L2", EPS) for n in ("apgd-ce", "apgd-t", "fab-t", "square")]

    # A component that implements L-inf only is refused in L2, by name.
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class LinfOnly(specs.Component):
        epsilon: float = 8 / 255
        norm: str = "Linf"
        norms = ("Linf",)
        name = "linf-only"

    with pytest.raises(ValueError, match="linf-only has no L2 version"):
        LinfOnly(norm="L2")
    with pytest.raises(ValueError, match="linf-only in L2"):
        components_for("custom", [LinfOnly()], norm="L2")


def test_parse_builds_l2_specs_and_refuses_l_inf_only_factories():
    assert specs.parse("pgd20", epsilon=EPS, step_size=0.1, norm="L2") == specs.PGD(
        epsilon=EPS, step_size=0.1, steps=20, norm="L2")
    assert specs.parse("cw10", epsilon=EPS, step_size=0.1, norm="L2").norm == "L2"
    assert specs.parse("fgsm", epsilon=EPS, norm="L2").norm == "L2"
    assert specs.parse("apgd-t", epsilon=EPS, norm="L2") == specs.APGDT(epsilon=EPS, norm="L2")
    assert specs.parse("pgd_rst", epsilon=EPS, norm="L2").norm == "L2"
    assert specs.parse("clean", norm="L2").name == "clean"
    assert specs.parse("pgd20") == specs.PGD(steps=20)  # L-inf, as before
    name = "l2_test_linf_only"
    specs.register_attack(name, lambda epsilon, step_size: specs.FGSM(epsilon=epsilon))
    try:
        assert specs.parse(name).norm == "Linf"
        with pytest.raises(ValueError, match="has no L2 version"):
            specs.parse(name, epsilon=EPS, norm="L2")
    finally:
        specs._ATTACKS.pop(name)


def test_l_inf_state_fingerprints_are_unchanged():
    """State files written before components had a ``norm`` still resume: an L-inf
    component's settings read as they did; an L2 one's name its norm."""
    assert st_lib._settings(specs.APGD()) == (
        "APGD(epsilon=0.03137254901960784, steps=100, restarts=1, rho=0.75, loss='ce')")
    assert st_lib._settings(specs.Square()) == (
        "Square(epsilon=0.03137254901960784, steps=5000, restarts=1, p_init=0.8)")
    assert "norm='L2'" in st_lib._settings(specs.APGD(epsilon=EPS, norm="L2"))


def test_autoattack_custom_l2_records_the_threat_model(tmp_path):
    from tf_st.attacks import autoattack
    model = conv_model()
    x, y = images(n=24)
    y = np.argmax(model(x).numpy(), 1)  # every point attacked
    comps = [specs.APGD(steps=10), specs.APGDT(steps=10, targets=2)]
    spec = specs.AutoAttack(epsilon=EPS, version="custom", components=comps, norm="L2")
    assert all(c.norm == "L2" and c.epsilon == EPS for c in spec.components)
    state = tmp_path / "aa.json"
    res = spec.evaluate(model, x, y, seed=1, batch_size=8, verbose=False, state_file=str(state))
    assert res.norm == "L2"
    out = res.to_json()
    assert out["norm"] == "L2"
    assert res.model_info["threat_model"] == "L2" and res.model_info["eps"] == "0.5"
    assert 0 < res.robust_accuracy < 1
    assert np.all(l2(res.x_adv - x) <= EPS + 1e-5)
    # Linf and L2 state files are not interchangeable.
    with pytest.raises(ValueError, match="setting 'attacks'"):
        autoattack.check_state(model, x, y, state_file=str(state), epsilon=EPS,
                               version="custom", attacks=comps, seed=1, batch_size=8)
    autoattack.check_state(model, x, y, state_file=str(state), epsilon=EPS, version="custom",
                           attacks=comps, seed=1, batch_size=8, norm="L2")  # its own: fine
    # The L-inf default still says so.
    lin = autoattack.evaluate(model, x, y, epsilon=8 / 255, version="custom",
                              attacks=[specs.APGD(steps=2)], seed=1, batch_size=8,
                              verbose=False)
    assert lin.norm == "Linf" and lin.model_info["threat_model"] == "Linf"
    assert lin.model_info["eps"] == "8/255"


def test_evaluation_api_and_report_take_the_norm(tmp_path):
    from tf_st.evaluation import evaluate
    model = conv_model()
    x, y = images(n=20)
    res = evaluate(model, x, y, attacks=["clean", "pgd5", "apgd-ce"], epsilon=EPS,
                   step_size=0.1, norm="L2", batch_size=10, verbose=False)
    assert res.norm == "L2" and res.to_json()["norm"] == "L2"
    assert res.attacks["pgd5"].accuracy <= res.attacks["clean"].accuracy
    # An L2 epsilon above 1 is legal, and L-inf's is refused with the same message.
    evaluate(model, x, y, attacks=["fgsm"], epsilon=1.5, norm="L2", verbose=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate(model, x, y, attacks=["fgsm"], epsilon=1.5, verbose=False)
    # AutoAttack standard in L2 bounds every attack above it (it includes APGD-CE).
    res = evaluate(model, x, y, attacks=["clean", "apgd-ce", "aa"], epsilon=EPS, norm="L2",
                   batch_size=10, verbose=False)
    assert res.attacks["aa"].accuracy <= res.attacks["apgd-ce"].accuracy
    assert evaluate(model, x, y, attacks=["clean"], verbose=False).norm == "Linf"


def test_report_records_the_norm(tmp_path):
    from tf_st.evaluation import report
    # cifar10_mini is 32x32x3.
    inp = keras.Input((32, 32, 3))
    net = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(
        keras.layers.AveragePooling2D(4)(inp))))
    out = tmp_path / "r.json"
    rep = report.evaluate_and_report(
        net, dataset="cifar10_mini", data_dir=None, split="test",
        attacks=["clean", "pgd3", specs.AutoAttack(
            epsilon=EPS, version="custom", components=[specs.APGD(steps=3)], norm="L2")],
        epsilon=EPS, step_size=0.1, examples=20, batch_size=10, seed=0, output=str(out),
        verbose=False, norm="L2")
    saved = json.loads(out.read_text())
    assert saved["norm"] == "L2" and saved["provenance"]["norm"] == "l2"
    assert saved["model_info"]["threat_model"] == "L2"
    assert saved["autoattack"]["norm"] == "L2"
    assert rep["norm"] == "L2"


def test_evaluation_cli_takes_norm_l2(tmp_path, capsys):
    """``python -m tf_st.evaluation --norm=l2``: an L2 epsilon above 1 passes the flag
    checks (L-inf's does not), the report records the threat model, and ``aa`` in L2 is
    refused before any attack, naming the missing components."""
    from tf_st import models
    from tf_st.evaluation import cli as evaluation_cli
    from tf_st.saved_model import export_classifier
    export = tmp_path / "export"
    export_classifier(models.build("small_cnn", 10), str(export), version=1)
    out = tmp_path / "r.json"
    base = ["evaluate", f"--saved_model={export}", "--examples=4", "--batch_size=4",
            f"--output={out}"]
    assert evaluation_cli.main(base + ["--norm=l2", "--epsilon=1.5", "--step_size=0.5",
                                       "--attacks=clean,pgd2,apgd-ce"]) == 0
    saved = json.loads(out.read_text())
    assert saved["norm"] == "L2" and saved["provenance"]["norm"] == "l2"
    assert saved["epsilon"] == 1.5
    capsys.readouterr()
    assert evaluation_cli.main(base + ["--epsilon=1.5", "--attacks=clean"]) == 2
    assert "--epsilon must be in [0, 1]" in capsys.readouterr().err
    assert evaluation_cli.main(base + ["--norm=l2", "--epsilon=0.5", "--attacks=aa"]) == 0
    saved = json.loads(out.read_text())
    assert saved["autoattack"]["version"] == "standard" and saved["norm"] == "L2"
    assert saved["autoattack"]["model_info"]["threat_model"] == "L2"


def test_the_report_carries_an_l2_audit(tmp_path):
    from tf_st.evaluation.report import evaluate_and_report
    out = tmp_path / "r.json"
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    net = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(
        keras.layers.AveragePooling2D(4)(inp))))
    rep = evaluate_and_report(net, dataset="cifar10_mini", data_dir=None, split="test",
                              attacks=["clean"], epsilon=0.5, step_size=0.1, norm="L2",
                              examples=8, batch_size=8, seed=0, output=str(out),
                              audit_examples=8)
    saved = json.loads(out.read_text())
    assert saved["audit"]["norm"] == "L2" and rep["audit"]["epsilon"] == 0.5
    assert saved["audit"]["curves"]["epsilon"]["epsilon"][-1] == pytest.approx(4.0)
