"""FAT's early-stopped PGD-K-tau: counters and exit iterates against the reference
algorithm run on a shrinking batch (as earlystop.py does), hand-checked corner cases,
the tau schedules, and the methods' losses."""

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import linear_classifier, softmax
from tf_st import methods
from tf_st.attacks import losses
from tf_st.attacks.pgd import early_stopped_pgd, pgd, project
from tf_st.methods.fat import parse_tau_schedule, tau_at_epoch

EPS, STEP = 0.1, 0.02


def reference_earlystop(model, x, y, steps, tau, x0):
    """earlystop.py's loop (no noise), restated on numpy with a shrinking index set:
    returns the exit iterate of every example (in the original order) and the count."""
    control = np.full(len(y), tau)
    iter_idx = np.arange(len(y))
    x_iter = x0.copy()
    out = {}
    count = 0
    for _ in range(steps):
        xb = tf.constant(x_iter[iter_idx])
        with tf.GradientTape() as tape:
            tape.watch(xb)
            z = model(xb)
            loss = tf.reduce_mean(losses.cross_entropy(z, y[iter_idx]))
        grad = tape.gradient(loss, xb).numpy()
        pred = z.numpy().argmax(1)
        keep = []
        for j, i in enumerate(iter_idx):
            if pred[j] != y[i]:
                if control[i] == 0:
                    out[i] = x_iter[i].copy()
                    continue
                control[i] -= 1
            keep.append(j)
        if not keep:
            break
        for j in keep:
            i = iter_idx[j]
            x_iter[i] = project(tf.constant(x_iter[i] + STEP * np.sign(grad[j])),
                                tf.constant(x[i]), EPS).numpy()
        iter_idx = iter_idx[keep]
        count += len(keep)
    for i in iter_idx:
        out.setdefault(i, x_iter[i])
    return np.stack([out[i] for i in range(len(y))]), count


@pytest.mark.parametrize("tau", [0, 1, 2, 10])
def test_early_stop_equals_the_reference_loop(float64, tau):
    model, _, _ = linear_classifier(seed=2)
    rng = np.random.RandomState(0)
    x = rng.uniform(0.2, 0.8, (12, 2, 2, 3))
    y = np.argmax(model(x).numpy(), 1)  # start correct: the stops happen along the way
    y[:3] = (y[:3] + 1) % 3  # ... except three misclassified at the start
    x0 = np.clip(x + rng.uniform(-EPS, EPS, x.shape), 0, 1)
    want, count = reference_earlystop(model, x, y, 10, tau, x0)
    got, passes = early_stopped_pgd(model, tf.constant(x), tf.constant(y), epsilon=EPS,
                                    step_size=STEP, steps=10, tau=tau,
                                    loss_fn=losses.cross_entropy, x_init=tf.constant(x0))
    np.testing.assert_array_equal(got.numpy(), want)
    assert int(passes.numpy().sum()) == count
    if tau == 0:
        # misclassified at the random start: stopped at once, no step
        wrong0 = model(x0).numpy().argmax(1) != y
        assert wrong0.any()
        np.testing.assert_array_equal(got.numpy()[wrong0], x0[wrong0])
        assert np.all(passes.numpy()[wrong0] == 0)
    if tau >= 10:  # never stops: plain PGD-10
        plain = pgd(model, tf.constant(x), tf.constant(y), epsilon=EPS, step_size=STEP,
                    steps=10, x_init=tf.constant(x0))
        np.testing.assert_array_equal(got.numpy(), plain.numpy())
        assert np.all(passes.numpy() == 10)


def test_tau_schedules_are_the_scripts():
    assert [tau_at_epoch("50:0,90:1,2", 0, e) for e in (1, 50, 51, 90, 91, 120)] == \
        [0, 0, 1, 1, 2, 2]
    assert [tau_at_epoch("30:0,50:1,70:2,3", 0, e) for e in (30, 31, 51, 71)] == [0, 1, 2, 3]
    assert [tau_at_epoch("20:0,40:1,60:2,80:3,4", 0, e) for e in (20, 40, 41, 81)] == \
        [0, 1, 2, 4]
    assert tau_at_epoch("", 5, 100) == 5  # constant tau: no boolean-flag trap
    for bad in ("10:1,5:2", "x", "1,2"):
        with pytest.raises(ValueError):
            parse_tau_schedule(bad)
    with pytest.raises(ValueError, match="tau_schedule"):
        methods.build("fat", linear_classifier()[0], tau_schedule="9:1,3:0")


def test_method_tau_follows_the_epoch_and_logs_passes(float64):
    model, w, b = linear_classifier()
    method = methods.build("fat_trades", model, steps=3)
    assert int(method.current_tau.numpy()) == 0
    method.on_epoch_begin(51)
    assert int(method.current_tau.numpy()) == 2
    x = np.random.RandomState(0).uniform(0, 1, (6, 2, 2, 3))
    y = np.arange(6) % 3
    gen = method.generate(tf.constant(x), tf.constant(y))
    terms = method.training_loss(tf.constant(x), tf.constant(y), gen)
    assert 0 <= float(terms["bp"]) <= 3
    # TRADES loss of the FAT script: CE(f(x)) + 6 KL_sum(p(x) || p(x_adv)) / B
    zn = x.reshape(6, -1) @ w + b
    za = gen["adv"].numpy().reshape(6, -1) @ w + b
    pn, pa = softmax(zn), softmax(za)
    ce = -np.log(pn[np.arange(6), y]).mean()
    kl = np.sum(pn * (np.log(pn) - np.log(pa)), 1).mean()
    assert float(terms["loss"]) == pytest.approx(ce + 6 * kl, rel=1e-10)
