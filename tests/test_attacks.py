"""FGSM / PGD / CW-inf: invariants, closed-form answers, cleverhans cross-check."""

import keras
import numpy as np
import pytest

from tf_st.attacks import fgsm, losses, pgd
from tf_st.attacks.pgd import cw_inf
from tf_st.evaluation import evaluate

EPS = 8 / 255


def conv_model(seed=0, classes=4):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(classes)(h))


def data(n=16, seed=0, classes=4):
    rng = np.random.RandomState(seed)
    return rng.uniform(0, 1, (n, 8, 8, 3)).astype("float32"), rng.randint(0, classes, n)


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "cw"])
def test_attacks_stay_in_ball_and_box(attack):
    model, (x, y) = conv_model(), data()
    if attack == "fgsm":
        adv = fgsm(model, x, y, EPS)
    elif attack == "pgd":
        adv = pgd(model, x, y, epsilon=EPS, step_size=2 / 255, steps=5, seed=[1, 2])
    else:
        adv = cw_inf(model, x, y, epsilon=EPS, step_size=2 / 255, steps=5, seed=[1, 2])
    adv = adv.numpy()
    assert np.max(np.abs(adv - x)) <= EPS + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.max(np.abs(adv - x)) > EPS / 2  # it moved


def test_pgd_increases_its_loss_and_is_seeded():
    model, (x, y) = conv_model(), data()
    a = pgd(model, x, y, epsilon=EPS, step_size=2 / 255, steps=10, seed=[3, 4]).numpy()
    b = pgd(model, x, y, epsilon=EPS, step_size=2 / 255, steps=10, seed=[3, 4]).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.mean(losses.cross_entropy(model(a), y)) > np.mean(losses.cross_entropy(model(x), y))


def test_pgd_zero_steps_returns_start_and_explicit_start_is_used():
    model, (x, y) = conv_model(), data()
    start = np.clip(x + 0.01, 0, 1)
    np.testing.assert_array_equal(pgd(model, x, y, epsilon=EPS, step_size=0.01, steps=0,
                                      x_init=start).numpy(), start)


def _cleverhans():
    return pytest.importorskip("cleverhans.tf2.attacks.projected_gradient_descent",
                               reason="cleverhans (test-only dependency) not installed")


def test_fgsm_and_pgd_agree_with_cleverhans():
    chpgd = _cleverhans()
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    model, (x, y) = conv_model(seed=2), data(seed=2)
    ours = fgsm(model, x, y, EPS).numpy()
    theirs = fast_gradient_method(model, x, EPS, np.inf, clip_min=0.0, clip_max=1.0, y=y,
                                  sanity_checks=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    # Same start (x itself): cleverhans PGD without random init.
    ours = pgd(model, x, y, epsilon=EPS, step_size=2 / 255, steps=10, random_start=False).numpy()
    theirs = chpgd.projected_gradient_descent(
        model, x, EPS, 2 / 255, 10, np.inf, clip_min=0.0, clip_max=1.0, y=y, rand_init=False,
        sanity_checks=False).numpy()
    # Sign gradients can flip where the gradient is ~0 under float32 rounding.
    assert np.mean(np.abs(ours - theirs) < 1e-6) > 0.995


def linear_two_class(d=12, seed=0):
    rng = np.random.RandomState(seed)
    w = rng.randn(d, 2)
    b = rng.randn(2) * 0.1
    inp = keras.Input((2, 2, 3))
    out = keras.layers.Dense(2)(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    model.layers[-1].set_weights([w, b])
    return model, w, b


def test_linear_classifier_robust_accuracy_equals_closed_form():
    """For a 2-class affine classifier the L-inf robust accuracy is known exactly:
    an example is robust iff (z_y - z_o) / ||w_y - w_o||_1 > eps (box not binding);
    FGSM, PGD and CW-inf all reach the optimum."""
    model, w, b = linear_two_class()
    rng = np.random.RandomState(1)
    x = rng.uniform(0.3, 0.7, (400, 2, 2, 3)).astype("float32")  # eps never hits the box
    z = x.reshape(400, -1) @ w + b
    y = rng.randint(0, 2, 400)
    margin = (z[np.arange(400), y] - z[np.arange(400), 1 - y]) / np.abs(w[:, 0] - w[:, 1]).sum()
    keep = np.abs(margin - EPS) > 0.01 * EPS  # no example within 1% of the threshold
    x, y, margin = x[keep], y[keep], margin[keep]
    expected = np.mean(margin > EPS)
    assert 0.05 < expected < np.mean(margin > 0)  # a non-trivial case
    res = evaluate(model, (x, y), ["clean", "fgsm", "pgd20", "cw20"], epsilon=EPS,
                   batch_size=64, verbose=False)
    assert res.attacks["clean"].accuracy == pytest.approx(np.mean(margin > 0))
    for name in ("fgsm", "pgd20", "cw20"):
        np.testing.assert_array_equal(res.attacks[name].correct, margin > EPS, err_msg=name)


def test_evaluation_pads_batches_and_robust_never_exceeds_clean():
    model, (x, y) = conv_model(), data(n=37)
    res = evaluate(model, (x, y), ["clean", "fgsm", "pgd10"], batch_size=16, verbose=False)
    assert len(res.attacks["clean"].correct) == 37
    clean = res.attacks["clean"].correct
    assert res.attacks["clean"].accuracy == pytest.approx(
        np.mean(np.argmax(model(x).numpy(), 1) == y))
    assert res.worst_case.sum() <= min(r.correct.sum() for r in res.attacks.values())
    assert res.attacks["pgd10"].accuracy <= res.attacks["clean"].accuracy
    assert not np.any(res.worst_case & ~clean)


def test_unknown_attack_and_bad_epsilon_are_rejected():
    model, (x, y) = conv_model(), data(n=4)
    with pytest.raises(ValueError, match="unknown attack"):
        evaluate(model, (x, y), ["pgd"], verbose=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate(model, (x, y), ["clean"], epsilon=8.0, verbose=False)
