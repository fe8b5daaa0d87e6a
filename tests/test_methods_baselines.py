"""Baseline methods (natural, Madry AT, TRADES, MART, collaborative-only, and the
two-neighbour variants) against independent numpy computations of the reference
formulas (reference-implementations.md §4.1-4.2, ST paper Eq. 4-5 and Appendix C)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_st import methods
from tests.helpers import (linear_classifier, numeric_grad, registered_method, small_bn_model,
                           softmax)

EPS, STEP = 8 / 255, 2 / 255
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINES = ["natural", "madry", "trades", "mart", "col", "madry2", "trades2", "mart2"]


# ----------------------------------------------------------------- numpy references

def np_ce(z, y):
    return -np.log(softmax(z)[np.arange(len(y)), y])


def np_kl(p, q):
    """KL(p || q) per row, zero-target terms 0."""
    return np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0), axis=1)


NP_REGS = {
    "kl": lambda pn, pa: np_kl(pn, pa),
    "symmetric_kl": lambda pn, pa: 0.5 * (np_kl(pn, pa) + np_kl(pa, pn)),
    # The JS divergence: 0.5 * [KL(p' || m) + KL(p'' || m)] (see regularizers.py).
    "js": lambda pn, pa: 0.5 * (np_kl(pn, 0.5 * (pn + pa)) + np_kl(pa, 0.5 * (pn + pa))),
    "l2": lambda pn, pa: np.sum((pn - pa) ** 2, axis=1),
}


def np_mart(z_nat, z_adv, y):
    """MART @ 2d83e17 mart.py, written out: returns (L_adv, L_rob)."""
    B = len(y)
    p_adv, p_nat = softmax(z_adv), softmax(z_nat)
    order = np.argsort(p_adv, axis=1, kind="stable")[:, -2:]
    y2 = np.where(order[:, -1] == y, order[:, -2], order[:, -1])
    bce = np.mean(np_ce(z_adv, y)) + np.mean(-np.log(1.0001 - p_adv[np.arange(B), y2] + 1e-12))
    kl = np.sum(p_nat * (np.log(p_nat) - np.log(p_adv + 1e-12)), axis=1)
    rob = np.sum(kl * (1.0000001 - p_nat[np.arange(B), y])) / B
    return bce, rob


def np_loss(key, zs, y, beta, reg="kl"):
    """Reference loss of each method from its logits ``zs`` ('x' and generated names)."""
    if key == "natural":
        return np.mean(np_ce(zs["x"], y))
    names = ["adv", "adv2"] if key.endswith("2") else ["adv"]
    if key.startswith("madry"):
        return np.mean([np.mean(np_ce(zs[n], y)) for n in names])
    if key.startswith("trades"):
        pn = softmax(zs["x"])
        reg_v = np.mean([np.mean(NP_REGS[reg](pn, softmax(zs[n]))) for n in names])
        return np.mean(np_ce(zs["x"], y)) + beta * reg_v
    if key.startswith("mart"):
        return np.mean([sum(t * w for t, w in zip(np_mart(zs["x"], zs[n], y), (1.0, beta)))
                        for n in names])
    if key == "col":
        # KL(p_nat || p_col): Eq. 5 in the paper's notation (second argument = target)
        kl = np_kl(softmax(zs["x"]), softmax(zs["col"]))
        return np.mean(np_ce(zs["x"], y)) + beta * np.mean(kl)
    raise KeyError(key)


def generated_names(key):
    default = ["adv", "adv2"] if key.endswith("2") else ["adv"]
    return {"natural": [], "col": ["col"]}.get(key, default)


# ----------------------------------------------------------------------- models


def _fixed_batch(B=5, shape=(2, 2, 3), seed=3):
    rng = np.random.RandomState(seed)
    x = rng.uniform(0.2, 0.8, (B,) + shape)
    y = np.arange(B) % 3
    gen = {n: np.clip(x + rng.uniform(-EPS, EPS, x.shape), 0, 1) for n in ("adv", "adv2", "col")}
    return x, y, gen


# ------------------------------------------------------------ loss values + gradients
LOSS_CASES = [(k, "kl") for k in BASELINES] + [
    ("trades", r) for r in ("js", "l2", "symmetric_kl")] + [("trades2", "symmetric_kl")]


@pytest.mark.parametrize("key,reg", LOSS_CASES)
def test_loss_and_parameter_gradient_match_numpy(float64, key, reg):
    """Loss value and d loss / d kernel against the reference formula with nothing
    detached (central finite differences of the numpy loss)."""
    model, w, b = linear_classifier()
    x, y, gen = _fixed_batch()
    beta = 5.0 if key.startswith("mart") else 6.0
    kwargs = {"reg": reg} if key.startswith("trades") else {}
    if key != "natural":
        kwargs["beta"] = beta
    if key.startswith("madry"):
        kwargs.pop("beta")
    method = methods.build(key, model, **kwargs)
    names = generated_names(key)
    with tf.GradientTape() as tape:
        terms = method.training_loss(tf.constant(x), tf.constant(y),
                                     {n: tf.constant(gen[n]) for n in names})
    grad = tape.gradient(terms["loss"], model.layers[-1].kernel).numpy()
    B = len(x)
    flat = lambda t: t.reshape(B, -1)  # noqa: E731

    def loss_at(w_):
        zs = {n: flat(gen[n]) @ w_ + b for n in names}
        zs["x"] = flat(x) @ w_ + b
        return np_loss(key, zs, y, beta, reg)

    assert terms["loss"].numpy() == pytest.approx(loss_at(w), rel=1e-10)
    np.testing.assert_allclose(grad, numeric_grad(loss_at, w), atol=1e-7)
    assert set(method.term_names) <= set(terms)


def _trades_detached_loss(w, b, x, y, gen, beta):
    """TRADES with the KL target frozen at the current weights (what a detach would do)."""
    B = len(x)
    pn_frozen = softmax(x.reshape(B, -1) @ w + b)

    def f(w_):
        zn = x.reshape(B, -1) @ w_ + b
        za = gen["adv"].reshape(B, -1) @ w_ + b
        return np.mean(np_ce(zn, y)) + beta * np.mean(np_kl(pn_frozen, softmax(za)))
    return f


def test_trades_gradient_flows_through_the_kl_target(float64):
    """The reference's KL target f(x) is not detached: the weight gradient equals the
    full derivative of CE + beta KL(p(x) || p(x_adv)) and differs from the detached one."""
    model, w, b = linear_classifier()
    x, y, gen = _fixed_batch()
    method = methods.build("trades", model, beta=6.0)
    with tf.GradientTape() as tape:
        terms = method.training_loss(tf.constant(x), tf.constant(y),
                                     {"adv": tf.constant(gen["adv"])})
    grad = tape.gradient(terms["loss"], model.layers[-1].kernel).numpy()
    B = len(x)

    def full(w_):
        zn = x.reshape(B, -1) @ w_ + b
        za = gen["adv"].reshape(B, -1) @ w_ + b
        return np.mean(np_ce(zn, y)) + 6.0 * np.mean(np_kl(softmax(zn), softmax(za)))
    np.testing.assert_allclose(grad, numeric_grad(full, w), atol=1e-6)
    detached = numeric_grad(_trades_detached_loss(w, b, x, y, gen, 6.0), w)
    assert not np.allclose(grad, detached, atol=1e-5)


def test_mart_weight_and_kl_target_receive_gradient(float64):
    """MART's (1.0000001 - p_nat,y) weight and KL target are not detached: the
    gradient of L_rob w.r.t. the clean logits equals the full numpy derivative."""
    y = np.array([0, 1, 2, 1])
    rng = np.random.RandomState(0)
    zn, za = rng.randn(4, 3), rng.randn(4, 3)
    from tf_st.methods.mart import mart_terms
    zn_t = tf.constant(zn)
    with tf.GradientTape() as tape:
        tape.watch(zn_t)
        _, rob = mart_terms(zn_t, tf.constant(za), tf.constant(y))
        rob = tf.reduce_mean(rob)
    g = tape.gradient(rob, zn_t).numpy()
    full = numeric_grad(lambda z: np_mart(z, za, y)[1], zn)
    np.testing.assert_allclose(g, full, atol=1e-8)

    def weight_frozen(z):
        pn, pa = softmax(z), softmax(za)
        kl = np.sum(pn * (np.log(pn) - np.log(pa + 1e-12)), axis=1)
        return np.mean(kl * (1.0000001 - softmax(zn)[np.arange(4), y]))
    assert not np.allclose(g, numeric_grad(weight_frozen, zn), atol=1e-4)


def test_mart_other_class_first_index_on_ties(float64):
    from tf_st.methods.mart import mart_terms
    y = np.array([0, 1])
    # Row 0: classes 1 and 2 tie for the top other class; row 1: the true class is top.
    za = np.array([[0.0, 1.0, 1.0, -1.0], [0.0, 3.0, 2.0, 2.0]])
    zn = np.zeros((2, 4))
    bce, _ = mart_terms(tf.constant(zn), tf.constant(za), tf.constant(y))
    pa = softmax(za)
    expected = np_ce(za, y) - np.log(1.0001 - pa[[0, 1], [1, 2]] + 1e-12)
    np.testing.assert_allclose(bce.numpy(), expected, rtol=1e-12)


# --------------------------------------------------------------------- attacks
def _np_pgd(w, b, x, y, x0, steps, grad_fn, sign=1.0):
    B = len(x)
    xa = x0.reshape(B, -1).copy()
    xf = x.reshape(B, -1)
    for _ in range(steps):
        g = grad_fn(xa @ w + b) @ w.T
        xa = np.clip(np.clip(xa + sign * STEP * np.sign(g), xf - EPS, xf + EPS), 0, 1)
    return xa.reshape(x.shape)


@pytest.mark.parametrize("key", ["madry", "trades", "mart", "col", "madry2", "trades2", "mart2"])
def test_attack_matches_numpy_pgd(float64, key):
    model, w, b = linear_classifier()
    x, y, _ = _fixed_batch(B=6)
    rng = np.random.RandomState(7)
    onehot = np.eye(3)[y]
    pn = softmax(x.reshape(len(x), -1) @ w + b)
    if key.startswith("trades"):
        grad_fn, sign = (lambda z: softmax(z) - pn), 1.0  # d KL(p_nat || p_adv) / d z_adv
    elif key == "col":
        grad_fn, sign = (lambda z: softmax(z) - onehot), -1.0  # descending CE (Eq. 4)
    else:
        grad_fn, sign = (lambda z: softmax(z) - onehot), 1.0
    names = generated_names(key)
    inits = {n: x + 0.001 * rng.randn(*x.shape) for n in names}
    method = methods.build(key, model, steps=3)
    out = method.generate(x, y, init=inits)
    assert set(out) == set(names)
    for n in names:
        expected = _np_pgd(w, b, x, y, inits[n], 3, grad_fn, sign)
        np.testing.assert_allclose(out[n].numpy(), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("key", sorted(methods.METHODS))
def test_generate_in_ball_reproducible_and_eval_bn_untouched(key):
    nets, method = registered_method(key, steps=2)
    variables = [v for net in nets.values() for v in net.non_trainable_variables]
    before = [v.numpy().copy() for v in variables]
    x = np.random.RandomState(0).uniform(0, 1, (8, 4, 4, 2)).astype("float32")
    y = np.arange(8) % 3
    a, b = method.generate(x, y), method.generate(x, y)
    for n, v in a.items():
        v = v.numpy()
        assert v.dtype == np.float32
        if v.shape != x.shape:  # bookkeeping (FAT's per-example passes), not an image
            assert v.shape == (len(x),)
            np.testing.assert_array_equal(v, b[n].numpy())
            continue
        assert np.all(np.abs(v - x) <= EPS + 1e-6) and v.min() >= 0 and v.max() <= 1
        np.testing.assert_array_equal(v, b[n].numpy())
    if key.endswith("2"):
        assert not np.allclose(a["adv"].numpy(), a["adv2"].numpy())
    assert a or key == "natural"  # every adversarial method generates something
    for b0, v in zip(before, variables):  # the attack leaves the BN moving statistics alone
        np.testing.assert_array_equal(b0, v.numpy())


def test_madry_start_is_clamped_uniform(float64):
    model, _, _ = linear_classifier()
    x = np.concatenate([np.zeros((2, 2, 2, 3)), np.ones((2, 2, 2, 3))])
    y = np.array([0, 1, 2, 0])
    clamped = methods.build("madry", model, steps=0).generate(x, y)["adv"].numpy()
    raw = methods.build("madry", model, steps=0, clamp_start=False).generate(x, y)["adv"].numpy()
    assert clamped.min() >= 0 and clamped.max() <= 1
    assert raw.min() < 0 and raw.max() > 1 and np.abs(raw - x).max() <= EPS
    np.testing.assert_allclose(clamped, np.clip(raw, 0, 1))


# ------------------------------------------------------------- BN bookkeeping
BN_ORDER = {
    "natural": ["x"], "madry": ["adv"], "madry2": ["adv", "adv2"],
    "trades": ["x", "adv", "x"], "trades2": ["x", "adv", "adv2", "x"],
    "mart": ["x", "adv"], "mart2": ["x", "adv", "adv2"], "col": ["x", "col"],
}


@pytest.mark.parametrize("key", BASELINES)
def test_bn_moving_statistics_follow_reference_order(float64, key):
    model = small_bn_model(bn_seed=0)
    x = np.random.RandomState(1).uniform(0, 1, (8, 4, 4, 2))
    y = np.arange(8) % 3
    method = methods.build(key, model, steps=2)
    fixed = {k: tf.constant(v) for k, v in method.generate(x, y).items()}
    method.generate = lambda x, y, init=None: fixed
    conv = keras.Model(model.input, model.get_layer("conv").output)
    mean, var = model.get_layer("bn").get_weights()[2:]
    batches = {"x": x, **{k: v.numpy() for k, v in fixed.items()}}
    for name in BN_ORDER[key]:
        h = conv(batches[name]).numpy().reshape(-1, 3)
        mean = 0.9 * mean + 0.1 * h.mean(0)
        var = 0.9 * var + 0.1 * h.var(0, ddof=1)
    method.compile(optimizer=keras.optimizers.SGD(0.1))
    method.train_on_batch(x, y)
    mean1, var1 = model.get_layer("bn").get_weights()[2:]
    np.testing.assert_allclose(mean1, mean, rtol=1e-10)
    np.testing.assert_allclose(var1, var, rtol=1e-10)


# --------------------------------------------------------------- one train step
@pytest.mark.parametrize("key", sorted(methods.METHODS))
def test_one_train_step_decreases_own_loss(key):
    """Every registered method (every network it trains): one step on a fixed batch."""
    x = np.random.RandomState(0).uniform(0, 1, (8, 4, 4, 2)).astype("float32")
    y = np.arange(8) % 3
    _, method = registered_method(key, steps=2)
    fixed = {k: tf.constant(v) for k, v in method.generate(x, y).items()}
    method.generate = lambda x, y, init=None: fixed
    before = float(method.training_loss(tf.constant(x), tf.constant(y), fixed)["loss"])
    method.compile(optimizer=keras.optimizers.SGD(0.05))
    logs = method.train_on_batch(x, y, return_dict=True)
    after = float(method.training_loss(tf.constant(x), tf.constant(y), fixed)["loss"])
    assert set(method.term_names) <= set(logs)
    assert np.isfinite(before) and after < before


def test_bad_hyperparameters_are_rejected():
    model = small_bn_model()
    with pytest.raises(ValueError, match="regulariser"):
        methods.build("trades", model, reg="hinge")
    with pytest.raises(ValueError, match="beta"):
        methods.build("mart", model, beta=-1)
    with pytest.raises(ValueError, match="attack_bn"):
        methods.build("madry", model, attack_bn="test")
    with pytest.raises(ValueError, match="init"):
        methods.build("col", model, init="zeros")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        methods.build("trades2", model, epsilon=8)


def test_registry_keys_match_class_keys():
    for key, cls in methods.METHODS.items():
        assert cls.key == key


# ------------------------------------------------------- MirroredStrategy parity
MIRRORED_SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
keras.config.set_floatx("float64")
from tf_st import methods
from tf_st.methods.awp import AWP
from tf_st.models.layers import TorchBatchNorm

CASES = json.loads(sys.argv[1])
rng = np.random.RandomState(0)
x = rng.uniform(0, 1, (8, 4, 4, 2))
y = np.arange(8) % 3


def network(bn):
    inp = keras.Input((4, 4, 2))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="tanh")(inp)
    if bn:  # a BatchNorm model, statistics over the global batch or per replica
        h = TorchBatchNorm(synchronized=bn == "sync", name="bn")(h)
    out = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    return keras.Model(inp, out)


def weights_after_step(strategy, key, kwargs):
    with strategy.scope():
        keras.utils.set_random_seed(1)
        kwargs = dict(kwargs)
        bn = kwargs.pop("bn", None)
        awp = kwargs.pop("awp", None)
        eval_now = kwargs.pop("eval_now", False)
        # One network per name the method trains (CAT: one per member), drawn in order
        # from the same seed on both strategies.
        names = list(methods.METHODS[key].network_archs("tiny", kwargs))
        nets = {name: network(bn) for name in names}
        hooks = [AWP(awp, proxy_lr=0.1)] if awp else []
        method = methods.build(key, nets if len(nets) > 1 else nets[names[0]], steps=3,
                               step_hooks=hooks, **kwargs)
        method.compile(optimizer=keras.optimizers.SGD(0.5))
        if eval_now:  # this step is the first of an epoch after an evaluation
            method.eval_attack_step.assign(0)
    before = {n: [v.numpy().copy() for v in net.trainable_variables] for n, net in nets.items()}
    # fit, not train_on_batch: under MirroredStrategy Keras 3's train_on_batch hands the
    # whole batch to every replica instead of splitting it.
    method.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=1, verbose=0)
    # How far the step moved the network that moved least (every network must train).
    moved = min(max(float(np.abs(v.numpy() - b).max())
                    for v, b in zip(net.trainable_variables, before[n])) for n, net in nets.items())
    return before, moved, [v.numpy() for net in nets.values() for v in net.weights]


one = tf.distribute.OneDeviceStrategy("/cpu:0")
two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert two.num_replicas_in_sync == 2
result = {}
for name, (key, kwargs) in CASES.items():
    b1, moved, w1 = weights_after_step(one, key, kwargs)
    b2, _, w2 = weights_after_step(two, key, kwargs)
    assert b1.keys() == b2.keys() and len(w1) == len(w2)
    assert all(np.array_equal(a, b) for n in b1 for a, b in zip(b1[n], b2[n]))
    result[name] = {"diff": max(float(np.abs(a - b).max()) for a, b in zip(w1, w2)),
                    "moved": moved, "networks": len(b1)}
print("RESULT" + json.dumps(result))
"""

# Every registered method, at its defaults except where it needs a setting to be
# testable here (FAT's tau), so a method registered later is compared too.
MIRRORED_OVERRIDES = {"fat": {"tau": 1}}
MIRRORED_CASES = {k: (k, dict(MIRRORED_OVERRIDES.get(k, {}))) for k in sorted(methods.METHODS)}
MIRRORED_CASES.update({"st_follow_roles": ("st", {"follow_roles": True}),
                       "trades_js": ("trades", {"reg": "js"}),
                       "madry_awp": ("madry", {"awp": 0.01}),
                       "trades_awp": ("trades", {"awp": 0.005}),
                       "st_awp": ("st", {"awp": 0.005})})
# --sync_batchnorm: BatchNorm statistics over the global batch, so weights *and* moving
# statistics (of every network the method trains) equal one device's, for every method.
MIRRORED_CASES.update({f"{k}_sync_bn": (k, {"bn": "sync", **MIRRORED_OVERRIDES.get(k, {})})
                       for k in sorted(methods.METHODS)})
MIRRORED_CASES["trades_replica_bn"] = ("trades", {"bn": "replica"})
# The --awp presets' loops (AT-AWP's train-mode attack inside a tf.cond with its
# eval-mode first batch, the logging forward; TRADES-AWP's and RST's forward orders).
MIRRORED_CASES.update({
    "madry_awp_loop_sync_bn": ("madry", {"awp": 0.01, "attack_bn": "train", "log_forward": True,
                                         "eval_first_batch": True, "bn": "sync"}),
    "trades_awp_loop_sync_bn": ("trades", {"awp": 0.005, "forward_order": "adv_nat_nat",
                                           "bn": "sync"}),
    "trades_rst_sync_bn": ("trades", {"forward_order": "adv_nat", "bn": "sync"}),
    # The eval-mode first batch: tf.cond on one device, both attacks and a selection
    # under synchronized BN on two (no collective may sit in a cond branch).
    "madry_awp_eval_batch_sync_bn": ("madry", {"awp": 0.01, "attack_bn": "train",
                                               "log_forward": True, "eval_first_batch": True,
                                               "eval_now": True, "bn": "sync"})})


@pytest.fixture(scope="module")
def mirrored_results():
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(MIRRORED_CASES)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


@pytest.mark.slow  # a subprocess
@pytest.mark.parametrize("name", sorted(set(MIRRORED_CASES) - {"trades_replica_bn"}))
def test_two_replicas_match_one_device(mirrored_results, name):
    r = mirrored_results[name]
    key, kwargs = MIRRORED_CASES[name]
    hparams = {k: v for k, v in kwargs.items() if k not in ("bn", "awp", "eval_now")}
    assert r["networks"] == len(methods.METHODS[key].network_archs("tiny", hparams))
    assert r["moved"] > 1e-6  # the step did something
    assert r["diff"] < 1e-10, r


@pytest.mark.slow  # a subprocess
def test_per_replica_batchnorm_differs_from_one_device(mirrored_results):
    """Without --sync_batchnorm each replica normalises with its own half batch (as
    PyTorch DataParallel): the step is not the one-device step, by design."""
    assert mirrored_results["trades_replica_bn"]["diff"] > 1e-6


def test_col_kl_direction_option(float64):
    model, w, b = linear_classifier()
    x, y, gen = _fixed_batch()
    zc, zn = gen["col"].reshape(len(x), -1) @ w + b, x.reshape(len(x), -1) @ w + b
    for direction, (p, q) in {"nat_col": (zn, zc), "col_nat": (zc, zn)}.items():
        method = methods.build("col", model, kl_direction=direction)
        terms = method.training_loss(tf.constant(x), tf.constant(y), {"col": tf.constant(gen["col"])})
        assert float(terms["reg"]) == pytest.approx(np_kl(softmax(p), softmax(q)).mean(), rel=1e-10)
