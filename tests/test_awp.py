"""AWP as a step hook: the direction by hand (norms per layer, only kernels), BN
buffers untouched by the proxy pass, the gradient taken at the perturbed weights, the
exact restore, the warm-up, and the runner flag."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import linear_ce_grad, linear_classifier, small_bn_model, softmax
from tf_st import methods
from tf_st.methods.awp import AWP, perturbable
from trainers import train


def _batch(n=6, shape=(2, 2, 3)):
    rng = np.random.RandomState(1)
    return rng.uniform(0, 1, (n,) + shape), np.arange(n) % 3


def test_direction_and_outer_step_by_hand(float64):
    """Madry with steps=0 trains on CE(f(x0)) at the (fixed) start; with a linear model
    everything is closed form."""
    model, w, b = linear_classifier()
    x, y = _batch()
    gamma, lr = 0.02, 0.5
    hook = AWP(gamma, proxy_lr=0.01)
    method = methods.build("madry", model, steps=0, step_hooks=[hook])
    method.compile(optimizer=keras.optimizers.SGD(lr))
    x_adv = method.generate(tf.constant(x), tf.constant(y))["adv"].numpy()
    g = linear_ce_grad(w, b, x_adv, y)
    diff = (w + 0.01 * g) - w
    d = np.linalg.norm(w) / (np.linalg.norm(diff) + 1e-20) * diff
    np.testing.assert_allclose(np.linalg.norm(gamma * d), gamma * np.linalg.norm(w), rtol=1e-12)
    # train_on_batch redraws the same start: the step's noise is keyed by the step count.
    method.train_on_batch(x, y)
    expected = (w + gamma * d - lr * linear_ce_grad(w + gamma * d, b, x_adv, y)) - gamma * d
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(), expected, rtol=1e-10)
    # The bias is not perturbed: its update is the plain gradient at the moved kernel.
    flat = x_adv.reshape(len(x), -1)
    p = softmax(flat @ (w + gamma * d) + b)
    p[np.arange(len(y)), y] -= 1
    np.testing.assert_allclose(model.layers[-1].bias.numpy(), b - lr * p.mean(0), rtol=1e-10)


def test_only_kernels_move_and_bn_buffers_survive_the_proxy_pass(float64):
    model = small_bn_model(bn_seed=0)
    x = np.random.RandomState(0).uniform(0, 1, (8, 4, 4, 2))
    y = np.arange(8) % 3
    method = methods.build("trades", model, steps=1)
    method.compile(optimizer=keras.optimizers.SGD(0.1))
    assert [v.path for v in perturbable(method)] == ["conv/kernel", "fc/kernel"]
    buffers = [v.numpy().copy() for v in model.non_trainable_variables]
    gen = method.generate(tf.constant(x), tf.constant(y))
    d = AWP(0.01).directions(method, tf.constant(x), tf.constant(y), gen)
    for v, before in zip(model.non_trainable_variables, buffers):
        np.testing.assert_array_equal(v.numpy(), before)
    for w, dw in zip(perturbable(method), d):
        assert np.linalg.norm(dw.numpy()) == pytest.approx(np.linalg.norm(w.numpy()), rel=1e-10)


def test_restore_is_exact_and_warmup_skips(float64):
    model, w, b = linear_classifier()
    x, y = _batch()
    method = methods.build("madry", model, steps=1,
                           step_hooks=[AWP(0.05, warmup=2, steps_per_epoch=1)])
    method.compile(optimizer=keras.optimizers.SGD(0.0))
    method.train_on_batch(x, y)  # epoch 1: before the warm-up ends, nothing moves
    np.testing.assert_array_equal(model.layers[-1].kernel.numpy(), w)
    method.train_on_batch(x, y)  # epoch 2: perturbed, zero-lr step, restored
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(), w, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        AWP(0.01, warmup=3)


@pytest.mark.slow  # a whole trainer
def test_awp_flag_reaches_the_model_card(tmp_path):
    out = tmp_path / "run"
    assert train.run_in_process(["--method=trades", "--awp", "--awp_warmup=0", "--arch=small_cnn",
                                 "--epochs=1", "--steps_per_epoch=1", "--batch_size=16",
                                 "--steps=1", "--eval_examples=16", "--final_attacks=",
                                 f"--output_dir={out}"]) == 0
    card = json.loads((out / "export" / "1" / "model_card.json").read_text())
    assert card["awp"] == {"gamma": 0.005, "warmup": 0, "proxy_lr": 0.1, "first_epoch": 1}
    assert "--awp" in (out / "flags.txt").read_text().split()


@pytest.fixture
def mixed_float16():
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy(old)


def test_mixed_precision_perturbs_float32_weights_and_restores(mixed_float16):
    inp = keras.Input((2, 2, 3))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
    x, y = _batch()
    w0 = model.layers[-1].kernel.numpy().copy()
    hook = AWP(0.05, proxy_lr=0.1)
    method = methods.build("madry", model, steps=1, step_hooks=[hook])
    method.compile(optimizer=keras.optimizers.SGD(0.0))
    assert isinstance(method.optimizer, keras.optimizers.LossScaleOptimizer)
    d = hook.directions(method, tf.constant(x, tf.float32), tf.constant(y),
                        method.generate(tf.constant(x, tf.float32), tf.constant(y)))
    assert np.linalg.norm(d[0].numpy()) == pytest.approx(np.linalg.norm(w0), rel=1e-5)
    method.train_on_batch(x.astype("float32"), y)
    assert model.layers[-1].kernel.dtype == "float32"
    np.testing.assert_allclose(model.layers[-1].kernel.numpy(), w0, atol=1e-6)
