"""Squeeze Training against hand computations of the reference behaviour (§1.2-1.3)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_st import methods
from tf_st.methods import regularizers
from tf_st.methods.squeeze import select_roles
from tests.helpers import linear_classifier, small_bn_model, softmax

EPS, STEP = 8 / 255, 2 / 255


def test_select_roles_on_hand_built_logits_with_ties():
    y = np.array([0, 1, 2, 0])
    # Rows: clear order; exact tie between col and adv; all three tied; nat lowest.
    z_nat = np.array([[2.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.0, 0, 0]])
    z_col = np.array([[3.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    z_adv = np.array([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [2.0, 0, 0]])
    up, low = select_roles(*(tf.constant(z) for z in (z_nat, z_col, z_adv)), tf.constant(y))
    # up = lowest true-class probability, low = highest; first index on ties.
    np.testing.assert_array_equal(up.numpy(), [2, 0, 0, 0])
    np.testing.assert_array_equal(low.numpy(), [1, 1, 0, 2])


def test_symmetric_kl_detaches_each_target():
    za = tf.constant([[1.0, 2.0, 0.5]], tf.float64)
    zb = tf.constant([[0.3, -1.0, 2.0]], tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([za, zb])
        detached = regularizers.symmetric_kl(za, zb)
        full = regularizers.symmetric_kl(za, zb, detach_targets=False)
    pa, pb = softmax(za.numpy()), softmax(zb.numpy())
    kl = lambda p, q: np.sum(p * (np.log(p) - np.log(q)))  # noqa: E731
    assert detached.numpy()[0] == pytest.approx(0.5 * (kl(pb, pa) + kl(pa, pb)), rel=1e-12)
    assert full.numpy()[0] == pytest.approx(detached.numpy()[0], rel=1e-12)
    # Only 0.5*KL(sg(p_b)||p_a) reaches a: d/dz_a = 0.5 * (p_a - p_b).
    np.testing.assert_allclose(tape.gradient(detached, za).numpy(), 0.5 * (pa - pb), atol=1e-12)
    np.testing.assert_allclose(tape.gradient(detached, zb).numpy(), 0.5 * (pb - pa), atol=1e-12)
    assert not np.allclose(tape.gradient(full, za).numpy(), 0.5 * (pa - pb), atol=1e-6)


def numpy_inner_step(w, b, x, y, x_adv, x_col, follow_roles=False):
    """One ST-AT inner iteration for a linear classifier z = flat(x) W + b."""
    B = len(x)
    flat = lambda t: t.reshape(B, -1)  # noqa: E731
    zs = [flat(t) @ w + b for t in (x, x_col, x_adv)]
    ps = [softmax(z) for z in zs]
    py = np.stack([p[np.arange(B), y] for p in ps], axis=1)
    up, low = py.argmin(axis=1), py.argmax(axis=1)  # numpy: first index on ties
    use_nat = np.any((up == 0) | (low == 0))
    grads = [np.zeros_like(flat(x)) for _ in range(3)]
    for i in range(B):
        p_up, p_low = ps[up[i]][i], ps[low[i]][i]
        # grad of 0.5*KL(sg(p_low)||p_up) w.r.t. z_up, and symmetrically.
        grads[up[i]][i] += (0.5 * (p_up - p_low)) @ w.T
        grads[low[i]][i] += (0.5 * (p_low - p_up)) @ w.T
    xs = [flat(x), flat(x_col), flat(x_adv)]
    new_adv, new_col = np.empty_like(xs[0]), np.empty_like(xs[0])
    for i in range(B):
        g_adv, g_col = grads[up[i]][i], grads[low[i]][i]
        if use_nat or follow_roles:
            base_adv, base_col = xs[up[i]][i], xs[low[i]][i]
        else:
            base_adv, base_col = xs[2][i], xs[1][i]
        new_adv[i] = base_adv + STEP * np.sign(g_adv)
        new_col[i] = base_col + STEP * np.sign(g_col)
    proj = lambda t: np.clip(np.clip(t, flat(x) - EPS, flat(x) + EPS), 0, 1)  # noqa: E731
    return proj(new_adv).reshape(x.shape), proj(new_col).reshape(x.shape), up, low, use_nat


def _inits(w, b, x, y, swap_rows):
    """Starts with the clean point in the middle of every row's ranking, so that nat is
    never selected; rows in ``swap_rows`` have the collaborative start *below* the
    adversarial one (the quirk-Q1 configuration)."""
    B = len(x)
    p = softmax(x.reshape(B, -1) @ w + b)
    onehot = np.eye(w.shape[1])[y]
    grad_py = ((onehot - p) * p[np.arange(B), y][:, None]) @ w.T  # d p_y / d x
    d = 0.01 * np.sign(grad_py).reshape(x.shape)
    x_adv, x_col = x - d, x + d
    for i in swap_rows:
        x_adv[i], x_col[i] = x_col[i].copy(), x_adv[i].copy()
    return x_adv, x_col


@pytest.mark.parametrize("follow_roles", [False, True])
@pytest.mark.parametrize("case", ["quirk_q1", "nat_selected"])
def test_one_inner_iteration_matches_numpy(float64, case, follow_roles):
    model, w, b = linear_classifier()
    rng = np.random.RandomState(1)
    x = rng.uniform(0.2, 0.8, (4, 2, 2, 3))
    y = np.array([0, 1, 2, 1])
    x_adv, x_col = _inits(w, b, x, y, swap_rows=[1, 3])
    if case == "nat_selected":
        x_adv[2], x_col[2] = x_col[2].copy(), x_col[2].copy()  # nat becomes row 2's lowest
    exp_adv, exp_col, up, low, use_nat = numpy_inner_step(w, b, x, y, x_adv, x_col, follow_roles)
    assert use_nat == (case == "nat_selected")
    if case == "quirk_q1":
        assert up[1] == 1 and low[1] == 2  # col holds the adversarial role in row 1
    st = methods.build("st", model, epsilon=EPS, step_size=STEP, steps=1, follow_roles=follow_roles)
    out = st.generate(x, y, init={"adv": x_adv, "col": x_col})
    # rtol=0: in float64 the implementation must agree with numpy to rounding.
    np.testing.assert_allclose(out["adv"].numpy(), exp_adv, rtol=0, atol=1e-15)
    np.testing.assert_allclose(out["col"].numpy(), exp_col, rtol=0, atol=1e-15)
    other_adv, _, _, _, _ = numpy_inner_step(w, b, x, y, x_adv, x_col, not follow_roles)
    # Q1 is observable: without nat selected, the two position rules give different
    # points (row 1 starts swapped); with nat selected both rules re-assign positions.
    assert np.allclose(other_adv, exp_adv) == (case == "nat_selected")


def test_generate_stays_in_ball_and_box_and_is_reproducible():
    model, _, _ = linear_classifier(shape=(4, 4, 3), classes=5)
    x = np.random.RandomState(0).uniform(0, 1, (6, 4, 4, 3)).astype("float32")
    y = np.arange(6) % 5
    st = methods.build("st", model, steps=10)
    a, b = st.generate(x, y), st.generate(x, y)
    for k in ("adv", "col"):
        v = a[k].numpy()
        assert np.all(np.abs(v - x) <= EPS + 1e-6) and v.min() >= 0 and v.max() <= 1
        np.testing.assert_array_equal(v, b[k].numpy())


def test_bn_moving_statistics_after_one_train_step(float64):
    model = small_bn_model(bn_seed=0)
    x = np.random.RandomState(1).uniform(0, 1, (8, 4, 4, 2))
    y = np.arange(8) % 3
    st = methods.build("st", model, steps=2)
    fixed = {k: tf.constant(v) for k, v in st.generate(x, y).items()}
    st.generate = lambda x, y, init=None: fixed
    conv = keras.Model(model.input, model.get_layer("conv").output)
    mean0, var0 = model.get_layer("bn").get_weights()[2:]
    expected_mean, expected_var = mean0, var0
    for batch in (x, fixed["adv"].numpy()):  # clean, then adversarial; never x_col
        h = conv(batch).numpy().reshape(-1, 3)
        expected_mean = 0.9 * expected_mean + 0.1 * h.mean(0)
        expected_var = 0.9 * expected_var + 0.1 * h.var(0, ddof=1)  # unbiased, as PyTorch
    st.compile(optimizer=keras.optimizers.SGD(0.1))
    st.train_on_batch(x, y)
    mean1, var1 = model.get_layer("bn").get_weights()[2:]
    np.testing.assert_allclose(mean1, expected_mean, rtol=1e-10)
    np.testing.assert_allclose(var1, expected_var, rtol=1e-10)


def test_inner_loop_does_not_touch_moving_statistics():
    model = small_bn_model()
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    st = methods.build("st", model, steps=3)
    x = np.random.RandomState(0).uniform(0, 1, (8, 4, 4, 2)).astype("float32")
    st.generate(x, np.arange(8) % 3)
    for b, v in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(b, v.numpy())


def test_training_loss_gradient_matches_reference_formula(float64):
    """Parameter gradient of CE(z_nat) + beta*0.5*[KL(sg p_low||p_up) + KL(sg p_up||p_low)]
    for a linear model, computed by hand."""
    model, w, b = linear_classifier()
    rng = np.random.RandomState(3)
    x = rng.uniform(0.2, 0.8, (5, 2, 2, 3))
    y = np.array([0, 1, 2, 0, 1])
    gen = {"adv": x + rng.uniform(-EPS, EPS, x.shape), "col": x + rng.uniform(-EPS, EPS, x.shape)}
    beta = 6.0
    st = methods.build("st", model, beta=beta)
    with tf.GradientTape() as tape:
        terms = st.training_loss(tf.constant(x), tf.constant(y), {k: tf.constant(v) for k, v in gen.items()})
    gw = tape.gradient(terms["loss"], model.layers[-1].kernel).numpy()
    B = len(x)
    flats = [t.reshape(B, -1) for t in (x, gen["col"], gen["adv"])]
    ps = [softmax(f @ w + b) for f in flats]
    py = np.stack([p[np.arange(B), y] for p in ps], 1)
    up, low = py.argmin(1), py.argmax(1)
    onehot = np.eye(3)[y]
    expected = flats[0].T @ (ps[0] - onehot) / B
    for i in range(B):
        dz_up = beta * 0.5 * (ps[up[i]][i] - ps[low[i]][i]) / B
        expected += np.outer(flats[up[i]][i], dz_up) + np.outer(flats[low[i]][i], -dz_up)
    np.testing.assert_allclose(gw, expected, atol=1e-12)
    kl = lambda p, q: np.sum(p * (np.log(p) - np.log(q)))  # noqa: E731
    reg = np.mean([0.5 * (kl(ps[low[i]][i], ps[up[i]][i]) + kl(ps[up[i]][i], ps[low[i]][i]))
                   for i in range(B)])
    assert terms["reg"].numpy() == pytest.approx(reg, rel=1e-10)


@pytest.mark.parametrize("reg", ["symmetric_kl", "js", "l2"])
def test_train_step_runs_for_every_regulariser(reg):
    model = small_bn_model()
    st = methods.build("st", model, steps=2, reg=reg)
    st.compile(optimizer=keras.optimizers.SGD(0.05))
    x = np.random.RandomState(0).uniform(0, 1, (8, 4, 4, 2)).astype("float32")
    out = st.train_on_batch(x, np.arange(8) % 3, return_dict=True)
    assert {"loss", "ce", "reg", "accuracy"} <= set(out)
    assert np.isfinite(out["loss"]) and out["reg"] >= 0


def test_bad_hyperparameters_are_rejected():
    model = small_bn_model()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        methods.build("st", model, epsilon=8)
    with pytest.raises(ValueError, match="beta"):
        methods.build("st", model, beta=-1)
    with pytest.raises(ValueError, match="regulariser"):
        methods.build("st", model, reg="hinge")
    with pytest.raises(ValueError, match="unknown method"):
        methods.build("sst", model)


def test_js_and_l2_regularisers_by_hand():
    za = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    zb = np.array([[0.3, -1.0, 2.0], [900.0, 0.0, -900.0]])  # second row: underflowing probs
    pa, pb = softmax(za), softmax(zb)
    m = 0.5 * (pa + pb)
    kl = lambda p, q: np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0), 1)  # noqa: E731
    js = regularizers.js(tf.constant(za), tf.constant(zb)).numpy()
    np.testing.assert_allclose(js, 0.5 * (kl(pa, m) + kl(pb, m)), rtol=1e-6)
    assert np.all(np.isfinite(js)) and js.max() <= np.log(2) + 1e-9
    np.testing.assert_allclose(regularizers.l2(tf.constant(za), tf.constant(zb)).numpy(),
                               ((pa - pb) ** 2).sum(1), rtol=1e-6)


@pytest.mark.parametrize("order", ["nat_adv", "adv_nat"])
def test_outer_forward_order_sets_the_bn_update_order(float64, order):
    """ST-AT updates BN moving statistics with the clean then the adversarial batch,
    ST-RST adversarial then clean; the collaborative forward updates nothing."""
    model, twin = small_bn_model(bn_seed=1), small_bn_model(bn_seed=1)
    twin.set_weights(model.get_weights())
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, (6, 4, 4, 2))
    gen = {"adv": np.clip(x + 0.03 * rng.randn(*x.shape), 0, 1),
           "col": np.clip(x + 0.03 * rng.randn(*x.shape), 0, 1)}
    st = methods.build("st", model, forward_order=order)
    st.training_loss(tf.constant(x), tf.constant(np.arange(6) % 3),
                     {k: tf.constant(v) for k, v in gen.items()})
    first, second = (x, gen["adv"]) if order == "nat_adv" else (gen["adv"], x)
    twin(first, training=True)
    twin(second, training=True)
    for a, b in zip(model.non_trainable_variables, twin.non_trainable_variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   rtol=1e-12)
