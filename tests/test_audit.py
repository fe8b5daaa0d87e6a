"""The evaluation audit (issue 27, items 4-5): cheap checks that catch gradient masking.

The four models of item 5 share one honest core, built analytically rather than trained
(seconds instead of minutes, and its robustness is known exactly):

* data: 100 two-class 8x8x3 images ``x = 0.5 + (2y - 1) t s``, ``s`` a fixed random
  +-1 pattern and ``t`` uniform in ``[eps/4, 3 eps]`` (eps = 8/255): every image is
  ``t`` away (L-inf) from the decision boundary of the linear classifier below;
* honest model: ``z = (k/2) (-s, s) . (x - 0.5)`` (logit margin ``k d t <= 10``).  For a
  linear two-class model PGD's sign step is the optimal attack, so its PGD accuracy at
  ``eps`` is exactly the fraction with ``t > eps`` (the true robust accuracy, ~0.8) and 0
  at ``4 eps > 3 eps``: a model whose robustness is real and whose evaluation is sound;
* PGD-trained model (the issue's; slow): a ReLU MLP trained with ``madry`` (PGD-5) for
  10 epochs on 412 more images of the same distribution (~5 s; small_cnn on
  cifar10_mini would take minutes to reach informative gradients); its PGD accuracy is
  the true robust accuracy too;
* quantised: the honest model behind ``round(7 x) / 7`` (no gradient: ``tf.round``;
  the class still follows the sign of ``x - 0.5``, so it is exactly as robust);
* saturated: ``10 softmax(10^4 z)``: the softmax is one-hot in float32, so the cross
  entropy's input gradient is exactly 0; scaled by 10 so that rows sum to 10 and
  AutoAttack's probability test (rows summing to 1) misses it;
* noisy: the honest model on ``x + N(0, 0.1^2)`` drawn at every call.
"""

import json
import math
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_st.evaluation import AuditResult
from tf_st.evaluation import audit as run_audit
from tf_st.evaluation.audit import (Check, check_black_box_accuracy, check_black_box_finds,
                                    check_deterministic, check_gradients,
                                    check_large_epsilon, check_logits, check_more_steps,
                                    difference_noise, figure_path, noise_stderr,
                                    probability_rows)

EPS = 8 / 255
ALL_CHECKS = ["large_epsilon", "more_steps", "black_box_accuracy", "black_box_finds",
              "gradients", "deterministic", "logits"]


def _data(n=100, shape=(8, 8, 3), seed=0):
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    s = np.where(rng.random(d) < 0.5, -1.0, 1.0)
    y = rng.integers(0, 2, n)
    t = rng.uniform(0.25 * EPS, 3 * EPS, n)
    x = 0.5 + ((2 * y - 1) * t)[:, None] * s[None]
    return x.reshape((n,) + shape).astype(np.float32), y, s, t


def _honest(s, shape=(8, 8, 3), margin=10.0):
    k = margin / (len(s) * 3 * EPS)
    inp = keras.Input(shape)
    h = keras.layers.Rescaling(1.0, offset=-0.5)(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    model.layers[-1].set_weights([np.stack([-k / 2 * s, k / 2 * s], 1), np.zeros(2)])
    return model


X, Y, S, T = _data()
_CACHE = {}


def _audited(name):
    """The audit of one of the four models (computed once per session)."""
    if name not in _CACHE:
        base = _honest(S)
        models = {
            "honest": base,
            "quantised": lambda x: base(tf.round(x * 7) / 7),
            "saturated": lambda x: 10.0 * tf.nn.softmax(1e4 * base(x)),
            "noisy": lambda x: base(x + tf.random.normal(tf.shape(x), stddev=0.1)),
        }
        keras.utils.set_random_seed(0)  # the noisy model's own draws
        _CACHE[name] = run_audit(models[name], X, Y, epsilon=EPS, seed=0)
    return _CACHE[name]


# ----------------------------------------------------------------- the four models


def test_the_honest_model_passes_every_check():
    """The data make the true robust accuracy at eps the fraction with t > eps; PGD
    finds exactly that, and nothing at 4 eps."""
    r = _audited("honest")
    assert r.failed == [], r.table()
    assert not r.suspicious
    assert r.curves["steps"]["accuracy"][-1] == pytest.approx(np.mean(T > EPS))
    assert r.curves["epsilon"]["accuracy"][-1] == 0.0
    assert [c.name for c in r.checks] == ALL_CHECKS


def test_the_large_radius_check_names_the_multiple_reached():
    """At eps 0.3 an L-inf sweep's 4x radius is capped at 1: the check says 3.33x, not 4x."""
    r = run_audit(_honest(S), X, Y, epsilon=0.3, seed=0)
    (check,) = [c for c in r.checks if c.name == "large_epsilon"]
    assert "(3.33x the threat model's)" in check.explanation
    assert "4x" not in check.explanation


# The honest model's boundary is the hyperplane s . (x - 0.5) = 0: an image at t (L-inf)
# is t sqrt(d) from it in L2, so at this L2 radius the robust set is the same.
L2_EPS = EPS * np.sqrt(X[0].size)


def test_the_audit_in_l2():
    base = _honest(S)
    honest = run_audit(base, X, Y, epsilon=L2_EPS, step_size=L2_EPS / 4, seed=0, norm="L2")
    assert honest.failed == [], honest.table()
    assert honest.norm == "L2" and honest.to_json()["norm"] == "L2"
    # L2 PGD walks straight to the boundary: exactly the images farther than the radius.
    assert honest.curves["steps"]["accuracy"][-1] == pytest.approx(np.mean(T > EPS))
    assert honest.curves["epsilon"]["multiples"][-1] == 8.0
    assert honest.curves["epsilon"]["epsilon"][-1] == pytest.approx(8 * L2_EPS)  # no cap at 1
    assert "L2 eps=" in honest.checks[0].explanation
    quantised = run_audit(lambda x: base(tf.round(x * 7) / 7), X, Y, epsilon=L2_EPS,
                          step_size=L2_EPS / 4, seed=0, norm="L2")
    assert "gradients" in quantised.failed and "large_epsilon" in quantised.failed
    with pytest.raises(ValueError, match="unknown norm"):
        run_audit(base, X, Y, norm="L1")


@pytest.mark.slow  # ~5 s of training and ~20 s of audit
def test_a_pgd_trained_model_passes_every_check():
    """A real adversarially trained network (Madry's PGD training, 5 steps of 2/255)."""
    from tf_st import methods
    from tf_st.training.optim import TorchSGD
    keras.utils.set_random_seed(0)
    x, y, _, t = _data(n=512, seed=0)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Flatten()(keras.layers.Rescaling(1.0, offset=-0.5)(inp))
    net = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(16, activation="relu")(h)))
    method = methods.build("madry", net, steps=5, step_size=2 / 255, epsilon=EPS)
    method.compile(optimizer=TorchSGD(0.05, momentum=0.9))
    method.fit(tf.data.Dataset.from_tensor_slices((x[100:], y[100:])).shuffle(412, seed=0)
               .batch(32), epochs=10, verbose=0)
    r = run_audit(net, x[:100], y[:100], epsilon=EPS, seed=0)
    assert r.failed == [], r.table()
    assert r.curves["clean"] > 0.95
    # PGD finds the true robust accuracy (the images at least eps from the boundary).
    assert r.curves["steps"]["accuracy"][-1] == pytest.approx(np.mean(t[:100] > EPS),
                                                               abs=0.03)


def test_input_quantisation_is_flagged_by_the_gradient_check():
    """Zero gradients (intended: ``gradients``).  Also, as they follow from them: PGD
    stays at its random start, so accuracy at 4 eps stays ~1 (``large_epsilon``) and
    Square fools the images with t < eps that PGD missed (``black_box_accuracy``,
    ``black_box_finds``).  Deterministic, logits, and PGD is flat in the steps."""
    r = _audited("quantised")
    assert set(r.failed) == {"gradients", "large_epsilon", "black_box_accuracy",
                             "black_box_finds"}, r.table()
    by = {c.name: c for c in r.checks}
    assert by["gradients"].value == 0.0
    assert by["large_epsilon"].value > 0.9
    assert by["black_box_finds"].value > 0.1


def test_a_saturated_softmax_is_flagged_by_the_gradient_and_logits_checks():
    """Vanishing cross-entropy gradients (intended: ``gradients``); the outputs are
    scaled probabilities (``logits``: non-negative rows with one common sum); and PGD
    cannot move, so ``large_epsilon`` fails too.  Square's margin loss is flat as well
    (+-10 until the class flips), so the black-box checks pass: this masking fools
    gradient-free search too, and the other checks are what catch it."""
    r = _audited("saturated")
    assert set(r.failed) == {"gradients", "logits", "large_epsilon"}, r.table()
    by = {c.name: c for c in r.checks}
    assert by["gradients"].value == 0.0
    assert by["logits"].value == 1.0


def test_random_input_noise_is_flagged_by_the_determinism_check():
    """Intended: ``deterministic``.  Noise does not change a linear model's gradient
    direction, so every attack check passes: determinism is what catches it."""
    r = _audited("noisy")
    assert r.failed == ["deterministic"], r.table()
    assert {c.name: c for c in r.checks}["deterministic"].value > 0.01


def test_the_json_block_and_the_table():
    r = _audited("honest")
    out = json.loads(json.dumps(r.to_json(), allow_nan=False))
    assert out["suspicious"] is False and out["failed"] == [] and out["examples"] == 100
    assert [c["name"] for c in out["checks"]] == ALL_CHECKS
    for c in out["checks"]:
        assert set(c) == {"name", "passed", "value", "threshold", "explanation"}
        assert isinstance(c["passed"], bool) and isinstance(c["threshold"], float)
    assert out["curves"]["epsilon"]["epsilon"] == pytest.approx([0, EPS / 2, EPS, 2 * EPS,
                                                                 4 * EPS])
    assert out["curves"]["steps"]["labels"] == ["pgd1", "pgd5", "pgd10", "pgd20", "pgd50",
                                                "pgd50x3"]
    assert "Wilson" in out["noise"]
    lines = r.table().splitlines()
    assert lines[0].split("|")[1:5] == [" check              ", " passed ", "     value ",
                                        " threshold "]
    assert len(lines) == 2 + len(ALL_CHECKS)
    quantised = _audited("quantised").to_json()
    assert quantised["suspicious"] is True
    failing = {c["name"]: c for c in quantised["checks"] if not c["passed"]}
    assert "BPDA" in failing["gradients"]["explanation"]
    assert "Next:" in failing["large_epsilon"]["explanation"]


def test_the_figure_is_written(tmp_path):
    r = _audited("honest")
    path = str(tmp_path / "a" / "audit.png")
    from tf_st.evaluation.audit import write_figure
    assert write_figure(r, path) == path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert figure_path("runs/x/evaluation.json") == "runs/x/evaluation_audit.png"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="epsilon > 0"):
        run_audit(lambda x: x, X, Y, epsilon=0.0)
    with pytest.raises(ValueError, match="8/255"):
        run_audit(lambda x: x, X, Y, epsilon=8)
    with pytest.raises(ValueError, match="increasing"):
        run_audit(lambda x: x, X, Y, steps=(5, 5))
    with pytest.raises(ValueError, match="labels"):
        run_audit(lambda x: x, X, Y[:3], examples=None)


# ------------------------------------------------------- the rules, on hand-made numbers


def _wilson_s(k, n, z=1.959963984540054):
    p = k / n
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (hi - lo) / (2 * z)


def test_the_noise_level():
    # Close to the binomial stderr at p = 0.5 (0.05), positive at p = 0.
    assert noise_stderr(0.5, 100) == pytest.approx(0.049067, abs=1e-5)
    assert noise_stderr(0.0, 100) == pytest.approx(0.009438, abs=1e-5)
    assert noise_stderr(0.3, 100) == pytest.approx(_wilson_s(30, 100))
    assert difference_noise(0.5, 0.4, 100) == pytest.approx(
        2 * math.hypot(_wilson_s(50, 100), _wilson_s(40, 100)))
    assert noise_stderr(0.5, 0) == 0.0


def test_large_epsilon_rule():
    # 0.05 + 2 s: s(0) = 0.00944 -> 0.0689; s(0.10) = 0.0304 -> 0.1108; s(0.12) -> 0.1154.
    assert check_large_epsilon(0.0, 100, 4 * EPS).threshold == pytest.approx(0.06888, abs=1e-4)
    ten = check_large_epsilon(0.10, 100, 4 * EPS)
    assert ten.passed and ten.threshold == pytest.approx(0.1108, abs=1e-4)
    twelve = check_large_epsilon(0.12, 100, 4 * EPS)
    assert not twelve.passed and twelve.threshold == pytest.approx(0.1154, abs=1e-4)
    assert "BPDA" in twelve.explanation and "BPDA" not in ten.explanation


def test_more_steps_rule():
    # 45% -> 60% over 100 examples: rise 0.15 > 2 sqrt(s(.6)^2 + s(.45)^2) = 0.1371.
    c = check_more_steps([("pgd1", 0.5), ("pgd5", 0.45), ("pgd10", 0.6)], 100)
    assert not c.passed
    assert c.value == pytest.approx(0.15) and c.threshold == pytest.approx(0.1371, abs=1e-4)
    assert "pgd10 over pgd5" in c.explanation
    # 50% -> 60%: rise 0.10 <= 0.1374.
    c = check_more_steps([("pgd1", 0.5), ("pgd5", 0.6)], 100)
    assert c.passed and c.threshold == pytest.approx(0.1374, abs=1e-4)
    # Falling accuracy: the largest "rise" is <= 0.
    c = check_more_steps([("pgd1", 0.9), ("pgd5", 0.6), ("pgd50x3", 0.5)], 100)
    assert c.passed and c.value <= 0
    assert check_more_steps([("pgd1", 0.5)], 100).passed


def _flags(correct, n=100):
    f = np.zeros(n, bool)
    f[:correct] = True
    return f


def test_black_box_rules():
    # White box 50%, Square 30%: gap 0.2 > 2 sqrt(s(.5)^2 + s(.3)^2) = 0.1333.
    c = check_black_box_accuracy(_flags(50), _flags(30))
    assert not c.passed and c.value == pytest.approx(0.2)
    assert c.threshold == pytest.approx(0.1333, abs=1e-4)
    # Square 40%: gap 0.1 <= 0.1374; Square stronger the other way round is fine.
    assert check_black_box_accuracy(_flags(50), _flags(40)).passed
    assert check_black_box_accuracy(_flags(30), _flags(50)).passed
    # Square fools 5 of 100 that PGD missed: 0.05 > 2 s(0.05) = 0.0460; 4: 0.04 <= 0.0422.
    c = check_black_box_finds(_flags(100), _flags(95))
    assert not c.passed and c.threshold == pytest.approx(0.0460, abs=1e-4)
    c = check_black_box_finds(_flags(100), _flags(96))
    assert c.passed and c.threshold == pytest.approx(0.0422, abs=1e-4)
    # Points Square fools that PGD had fooled too are not "found".
    assert check_black_box_finds(_flags(50), _flags(40)).value == pytest.approx(0.1)
    assert check_black_box_finds(_flags(40), _flags(50)).value == 0.0


def test_gradient_determinism_and_logits_rules():
    assert check_gradients(_flags(90)).passed
    assert not check_gradients(_flags(89)).passed
    # Relative to max(1, largest |output|).
    c = check_deterministic([[1.0, 2.0]], [[1.0, 2.00005]])
    assert c.passed and c.value == pytest.approx(2.5e-5)
    c = check_deterministic([[100.0, 0.0]], [[100.02, 0.0]])
    assert not c.passed and c.value == pytest.approx(2e-4)
    c = check_deterministic([[np.nan, 0.0]], [[np.nan, 0.0]])
    assert not c.passed and c.to_json()["value"] is None
    p = np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    assert probability_rows(p).all() and probability_rows(10 * p).all()
    assert not check_logits(p).passed and not check_logits(10 * p).passed
    assert check_logits(np.log(p + 1e-3)).passed  # log-probabilities are logits
    # Non-negative logits with different sums: only the row at the median sum counts.
    c = check_logits([[0.2, 0.8], [3.0, 1.0], [0.0, 7.0]])
    assert c.passed and c.value == pytest.approx(1 / 3)
    assert isinstance(check_logits(p), Check)


# ---------------------------------------------------------------------------- the CLI


def _tiny_export(path):
    from tf_st.saved_model import export_classifier
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=4)(inp))
    export_classifier(keras.Model(inp, keras.layers.Dense(10)(h)), path, version=1)
    return path


@pytest.mark.slow  # a SavedModel export and a full audit: ~15 s
def test_the_cli_writes_the_audit_block_and_the_figure(tmp_path, capsys):
    from tf_st.evaluation import cli
    export = _tiny_export(str(tmp_path / "export"))
    out = str(tmp_path / "r.json")
    assert cli.main(["evaluate", f"--saved_model={export}", "--dataset=cifar10_mini",
                     "--examples=8", "--batch_size=8", "--attacks=clean,pgd5", "--audit",
                     "--audit_examples=6", f"--output={out}"]) == 0
    r = json.load(open(out))
    assert r["partial"] is False and r["pending"] == []
    assert r["audit"]["examples"] == 6
    assert [c["name"] for c in r["audit"]["checks"]] == ALL_CHECKS
    assert r["audit"]["suspicious"] == (not all(c["passed"] for c in r["audit"]["checks"]))
    assert r["audit"]["figure"] == str(tmp_path / "r_audit.png")
    assert os.path.getsize(tmp_path / "r_audit.png") > 1000
    captured = capsys.readouterr()
    assert "| gradients " in captured.out and "audit figure" in captured.out
    assert ("warning: the audit flags" in captured.err) == r["audit"]["suspicious"]


def test_an_interrupted_audit_leaves_a_partial_report(tmp_path, monkeypatch, capsys):
    from tf_st.evaluation import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["tf_st.evaluation.audit"], "audit", interrupted)
    export = _tiny_export(str(tmp_path / "export"))
    out = str(tmp_path / "r.json")
    assert cli.main(["evaluate", f"--saved_model={export}", "--dataset=cifar10_mini",
                     "--examples=4", "--batch_size=4", "--attacks=clean", "--audit",
                     f"--output={out}"]) == 130
    r = json.load(open(out))
    assert r["partial"] is True and r["pending"] == ["audit"] and "audit" not in r
    assert "clean" in r["attacks"]


def test_the_help_page_has_an_audit_group(capsys):
    from tf_st.evaluation import cli
    assert cli.main(["evaluate", "--help"]) == 0
    out = capsys.readouterr().out
    assert " audit: --[no]audit " in " ".join(out.split())
    assert "--audit_examples" in out


def test_an_audit_result_without_checks_is_not_suspicious():
    assert not AuditResult([], 0, EPS, 2 / 255, 0, {}).suspicious
