"""Attacks from parts: FAT's early-stopped PGD and RST's every-iterate PGD as specs of
their own (``EarlyStoppedPGD``, ``EveryIteratePGD``) equal the old ``PGD(tau=...)`` /
``PGD(every_iterate=True)`` paths bit for bit; one seed type (an int or a pair) works for
every spec; AutoAttack components take ``target_rank=``."""

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import linear_classifier
from tf_st.attacks import losses, parse, specs, starts
from tf_st.attacks.apgd import apgd, target_by_rank
from tf_st.attacks.pgd import early_stopped_pgd, pgd

EPS, STEP = 8 / 255, 2 / 255


def _data(n=12, dtype=np.float64):
    rng = np.random.RandomState(0)
    return rng.uniform(0.2, 0.8, (n, 2, 2, 3)).astype(dtype), np.arange(n) % 3


@pytest.mark.parametrize("tau", [0, 1, 3])
def test_early_stopped_spec_equals_the_old_pgd_tau_path(float64, tau):
    model, _, _ = linear_classifier(seed=2)
    x, y = _data()
    x, y = tf.constant(x), tf.constant(y)
    seed = tf.constant([3, 4], tf.int64)
    new = specs.EarlyStoppedPGD(epsilon=EPS, step_size=STEP, steps=10, tau=tau,
                                start="uniform_clamped")
    old = specs.PGD(epsilon=EPS, step_size=STEP, steps=10, tau=tau, start="uniform_clamped")
    assert old.as_spec() == new
    # perturb from the spec's own (evaluation) start == the function from that start
    x0 = starts.random_start(x, "uniform_clamped", epsilon=EPS, seed=seed)
    want, passes = early_stopped_pgd(model, x, y, epsilon=EPS, step_size=STEP, steps=10,
                                     tau=tau, loss_fn=losses.cross_entropy, x_init=x0)
    got, details = new.perturb_details(model, x, y, seed=seed)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(details["passes"].numpy(), passes.numpy())
    np.testing.assert_array_equal(old.perturb(model, x, y, seed=seed).numpy(), want.numpy())
    # FAT's form: x_init, a tensor tau and per-step noise; the old entry agrees
    noise = tf.constant(np.random.RandomState(1).randn(10, *x.shape) * 0.001)
    tau_t = tf.constant(tau, tf.int32)
    a, pa = old.perturb_early_stopped(model, x, y, x_init=x0, tau=tau_t, step_noise=noise)
    b, db = new.perturb_details(model, x, y, x_init=x0, tau=tau_t, step_noise=noise)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(pa.numpy(), db["passes"].numpy())
    assert new.perturb(model, x, y, x_init=x0, tau=tau_t, step_noise=noise).numpy().tolist() \
        == a.numpy().tolist()
    # run: same points, fooled and passes as the PGD(tau=...) spec
    for s in (seed, 7, (3, 4)):
        r_old, r_new = old.run(model, x, y, seed=s), new.run(model, x, y, seed=s)
        np.testing.assert_array_equal(r_old.x_adv.numpy(), r_new.x_adv.numpy())
        np.testing.assert_array_equal(r_old.fooled.numpy(), r_new.fooled.numpy())
        np.testing.assert_array_equal(r_old.details["passes"].numpy(),
                                      r_new.details["passes"].numpy())


def test_every_iterate_spec_equals_the_old_pgd_every_iterate_path(float64):
    model, _, _ = linear_classifier(seed=1)
    x, y = _data()
    x, y = tf.constant(x), tf.constant(y)
    for from_start in (False, True):
        old = specs.PGD(epsilon=EPS, step_size=STEP, steps=6, restarts=3, every_iterate=True,
                        every_iterate_from_start=from_start)
        new = specs.EveryIteratePGD(epsilon=EPS, step_size=STEP, steps=6, restarts=3,
                                    every_iterate_from_start=from_start)
        assert old.as_spec() == new and new.every_iterate
        r_old, r_new = old.run(model, x, y, seed=(5, 6)), new.run(model, x, y, seed=(5, 6))
        np.testing.assert_array_equal(r_old.x_adv.numpy(), r_new.x_adv.numpy())
        np.testing.assert_array_equal(r_old.fooled.numpy(), r_new.fooled.numpy())
        # restart r draws with (a, 7919 b + r): the last restart by hand
        x0 = starts.random_start(x, "uniform", epsilon=EPS,
                                 seed=tf.constant([5, 6 * 7919 + 2], tf.int64))
        want, fooled_any = pgd(model, x, y, epsilon=EPS, step_size=STEP, steps=6, x_init=x0,
                               track_iterates=True, track_start=from_start)
        np.testing.assert_array_equal(r_new.details["fooled_any"].numpy(), fooled_any.numpy())
        got, det = new.perturb_details(model, x, y, x_init=x0)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        np.testing.assert_array_equal(det["fooled_any"].numpy(), fooled_any.numpy())
    rst = parse("pgd_rst", epsilon=0.031)
    assert isinstance(rst, specs.EveryIteratePGD)
    assert (rst.steps, rst.step_size, rst.restarts, rst.every_iterate) == (40, 0.01, 5, True)


def _all_specs():
    return [specs.Clean(), specs.FGSM(), specs.PGD(steps=3), specs.PGD(steps=3, restarts=2),
            specs.PGD(steps=3, tau=1), specs.EarlyStoppedPGD(steps=3, tau=1, restarts=2),
            specs.EveryIteratePGD(steps=3, restarts=2), specs.APGD(steps=3),
            specs.APGDT(steps=3, targets=2), specs.FABT(steps=3, targets=2),
            specs.Square(steps=10)]


def _timed(spec):
    # The AutoAttack components trace for several seconds each: the slow tier.
    slow = isinstance(spec, (specs.APGDT, specs.FABT, specs.Square))
    return pytest.param(spec, marks=pytest.mark.slow) if slow else spec


@pytest.mark.parametrize("spec", [_timed(s) for s in _all_specs()], ids=lambda s: repr(s)[:48])
def test_one_seed_type_everywhere(spec):
    """run and perturb take an int or a pair; an int n is the pair (n, 0); each is
    deterministic."""
    model, _, _ = linear_classifier(classes=3)
    x, y = _data(dtype=np.float32)
    x, y = tf.constant(x), tf.constant(y)
    results = {}
    for seed in (0, (1, 2), [1, 2], np.array([1, 2]), tf.constant([1, 2], tf.int32),
                 (0, 0), tf.constant(0, tf.int64)):
        res = spec.run(model, x, y, seed=seed)
        again = spec.run(model, x, y, seed=seed)
        np.testing.assert_array_equal(res.x_adv.numpy(), again.x_adv.numpy())
        np.testing.assert_array_equal(res.fooled.numpy(), again.fooled.numpy())
        point = spec.perturb(model, x, y, seed=seed).numpy()
        np.testing.assert_array_equal(point, spec.perturb(model, x, y, seed=seed).numpy())
        results[repr(np.asarray(seed).tolist())] = res.x_adv.numpy()
    np.testing.assert_array_equal(results["0"], results["[0, 0]"])

    @tf.function
    def traced(seed):
        return spec.run(model, x, y, seed=seed).x_adv

    # traced with a scalar and with a pair (graph rounding may differ from eager in float32)
    for seed in (tf.constant(0, tf.int64), tf.constant([1, 2], tf.int64)):
        np.testing.assert_array_equal(traced(seed).numpy(), traced(seed).numpy())


def test_bad_seeds_fail():
    model, _, _ = linear_classifier(classes=3)
    x, y = _data(dtype=np.float32)
    with pytest.raises(ValueError, match="pair"):
        specs.PGD(steps=1).run(model, x, y, seed=(1, 2, 3))
    with pytest.raises(TypeError, match="pair"):
        specs.PGD(steps=1).run(model, x, y, seed=0.5)


def test_target_rank_is_uniform_and_rank_still_works():
    model, _, _ = linear_classifier(classes=3)
    x, y = _data(dtype=np.float32)
    x, y = tf.constant(x), tf.constant(y)
    seed = (1, 2)
    for spec in (specs.APGDT(steps=3, targets=2), specs.FABT(steps=3, targets=2)):
        default = spec.perturb(model, x, y, seed=seed).numpy()
        np.testing.assert_array_equal(spec.perturb(model, x, y, seed=seed, target_rank=2),
                                      default)
        third = spec.perturb(model, x, y, seed=seed, target_rank=3).numpy()
        np.testing.assert_array_equal(spec.perturb(model, x, y, seed=seed, rank=3), third)
        np.testing.assert_array_equal(
            spec.stage(model, x, y, specs.as_seed(seed), 3, 0)[0].numpy(), third)
        with pytest.raises(ValueError, match="target_rank"):
            spec.perturb(model, x, y, seed=seed, target_rank=2, rank=3)
    for spec in (specs.APGD(steps=3), specs.Square(steps=10)):
        spec.perturb(model, x, y, seed=seed, target_rank=None)
        with pytest.raises(ValueError, match="untargeted"):
            spec.perturb(model, x, y, seed=seed, target_rank=2)
    # APGD-T now starts from x_init when given (it used to ignore it)
    x0 = tf.clip_by_value(x + 0.01, 0, 1)
    a = specs.APGDT(steps=3).perturb(model, x, y, seed=seed, x_init=x0, target_rank=3)
    want = apgd(model, x, y, epsilon=EPS, n_iter=3, loss="dlr-targeted",
                y_target=target_by_rank(model(x), 3), x_init=x0)[0]
    np.testing.assert_array_equal(a.numpy(), want.numpy())
    for spec in (specs.FABT(steps=3), specs.Square(steps=10)):
        with pytest.raises(ValueError, match="x_init"):
            spec.perturb(model, x, y, seed=seed, x_init=x0)


def test_pgd_refuses_mixed_algorithms():
    with pytest.raises(ValueError, match="tau"):
        specs.PGD(tau=1, every_iterate=True)
    with pytest.raises(ValueError, match="every_iterate_from_start"):
        specs.PGD(every_iterate_from_start=True)
    with pytest.raises(ValueError, match="tau"):
        specs.EarlyStoppedPGD(tau=-1)
    assert specs.PGD(steps=3).as_spec() == specs.PGD(steps=3)

