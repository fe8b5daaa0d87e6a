"""Whole training steps as the AWP and semisup-adv repositories train: one traced step
(``fit``) of Madry+AWP, TRADES+AWP and TRADES under robust self-training, from the same
weights, batch and start noise as the official loop's step, equal in float64 on the
updated weights *and* the BatchNorm running statistics (the forward order, the logging
forward, the train-mode attack and the eval-mode first batch only show there); the
AWP warm-up's epoch counting; pgd_rst's iterate rule; RST's batches with no
pseudo-labelled share.

The official loops are restated in ``benchmarks/crosscheck_methods.py`` with their
files' line numbers; the functions they call come from the official checkouts under
$TF_ST_REFERENCE_DIR (``AWP/``, ``semisup-adv/``) when present, else from the same
module's restatements of them (both were compared with the checkouts:
``python -m benchmarks.crosscheck_methods``).
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import crosscheck_methods as cc
from tf_st.attacks import specs
from tf_st.data import rst
from tf_st.training import presets
from trainers import runner

REF = os.environ.get("TF_ST_REFERENCE_DIR", "/tmp/ref")
REFS = {"awp": cc.reference_path(REF, "AWP"), "semisup-adv": cc.reference_path(REF, "semisup-adv")}
TOLERANCE = 1e-10


@pytest.fixture
def torch64(float64):
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(old)


def _batch(n=8):
    from tf_st import data
    x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=n)
    return x.astype(np.float64), y


# BN-updating forwards of one official step (the reference counts them in
# num_batches_tracked; Keras' BN keeps no counter, so equal running statistics after
# momentum-0.1 updates are what shows that tf_st ran the same ones in the same order).
UPDATES = {
    # 10 train-mode attack forwards + attack_pgd's restart-selection forward + the
    # training forward + the logging forward after the restore (AT_AWP/train_cifar10.py).
    "madry_awp": 13,
    # model(x_adv), model(x_natural) (KL target), model(x_natural) (CE).
    "trades_awp": 3,
    # model(x_adv), model(x_natural) (semisup-adv losses.py:trades_loss).
    "trades_rst": 2,
}


@pytest.mark.parametrize("case", cc.WHOLE_STEP_CASES)
def test_one_traced_step_equals_the_official_loop(torch64, case):
    x, y = _batch()
    rows = []
    updates, perturbed = cc.check_whole_step(torch64, case, x, y, rows, refs=REFS,
                                             awp_warmup=0 if "awp" in case else None)
    assert updates == UPDATES[case]
    assert perturbed == ["awp" in case]
    assert {r[0].split(": ")[1] for r in rows} >= {"bn.running_mean (relative)",
                                                   "bn.running_var (relative)",
                                                   "conv.weight (relative)"}
    worst = max(rows, key=lambda r: r[1])
    assert worst[1] <= TOLERANCE, worst


@pytest.mark.parametrize("case,table", [("madry_awp", "AWP_METHOD_HPARAMS"),
                                        ("trades_awp", "AWP_METHOD_HPARAMS"),
                                        ("trades_rst", "RST_METHOD_HPARAMS")])
def test_without_the_presets_the_statistics_differ(torch64, monkeypatch, case, table):
    """The plain methods' loops (TRADES' clean-adversarial-clean order, Madry's single
    eval-mode attack) leave other running statistics: the comparison above can fail."""
    monkeypatch.setattr(presets, table, {})
    x, y = _batch()
    rows = []
    cc.check_whole_step(torch64, case, x, y, rows, refs=REFS,
                        awp_warmup=0 if "awp" in case else None)
    stats = dict(rows)
    worst = max(stats[f"{case} whole step: bn.running_{k} (relative)"] for k in ("mean", "var"))
    assert worst > 1e3 * TOLERANCE


@pytest.mark.parametrize("case,warmup", [("madry_awp", 1), ("trades_awp", 2)])
def test_warmup_counts_epochs_as_the_official_loop(torch64, case, warmup):
    """Two one-batch epochs: AT-AWP counts from 0 (warm-up 1 perturbs the second epoch,
    whose first batch it attacks in eval mode after the test pass), TRADES-AWP from 1
    (warm-up 2 perturbs the second epoch)."""
    x, y = _batch()
    rows = []
    updates, perturbed = cc.check_whole_step(torch64, case, x, y, rows, refs=REFS, epochs=2,
                                             awp_warmup=warmup)
    assert perturbed == [False, True]
    # Madry: 13 updates in epoch 0, then an eval-mode attack (0) + training + logging.
    assert updates == {"madry_awp": 13 + 2, "trades_awp": 6}[case]
    worst = max(rows, key=lambda r: r[1])
    assert worst[1] <= TOLERANCE, worst


def test_awp_presets_and_their_precedence():
    def hp(method, **kw):
        return runner.resolve(runner.Settings(method=method, **kw))

    madry = hp("madry", awp=True)
    assert (madry.hparams["attack_bn"], madry.hparams["log_forward"],
            madry.hparams["eval_first_batch"], madry.awp_first_epoch) == ("train", True, True, 0)
    plain = hp("madry")
    assert (plain.hparams["attack_bn"], plain.hparams["log_forward"],
            plain.hparams["eval_first_batch"]) == ("eval", False, False)
    # A given value wins over the preset.
    assert hp("madry", awp=True, hparams={"attack_bn": "eval"}).hparams["attack_bn"] == "eval"
    assert hp("madry", awp=True, awp_first_epoch=1).awp_first_epoch == 1
    trades = hp("trades", awp=True)
    assert (trades.hparams["forward_order"], trades.awp_first_epoch) == ("adv_nat_nat", 1)
    assert hp("trades").hparams["forward_order"] == "nat_adv_nat"
    assert hp("trades", unlabeled="u.npz").hparams["forward_order"] == "adv_nat"
    assert hp("trades", unlabeled="u.npz", awp=True).hparams["forward_order"] == "adv_nat"
    # ST keeps its own loop under AWP and takes TRADES-AWP's hook settings.
    st = hp("st", awp=True)
    assert (st.awp_gamma, st.awp_warmup, st.awp_first_epoch) == (0.005, 10, 1)
    assert st.hparams["forward_order"] == "nat_adv"
    with pytest.raises(ValueError, match="awp_first_epoch"):
        hp("madry", awp=True, awp_first_epoch=2)


def test_awp_hook_first_epoch_by_hand(float64):
    """warm-up 1: counted from 0 the second step (epoch 1) is the first perturbed one;
    counted from 1 already the first."""
    import keras

    from tests.helpers import linear_classifier
    from tf_st import methods
    from tf_st.methods.awp import AWP
    x = np.random.RandomState(1).uniform(0, 1, (6, 2, 2, 3))
    y = np.arange(6) % 3
    for first_epoch, moved in ((0, [False, True]), (1, [True, True])):
        model, w, _ = linear_classifier()
        hook = AWP(0.05, warmup=1, steps_per_epoch=1, first_epoch=first_epoch)
        method = methods.build("madry", model, steps=0, step_hooks=[hook])
        method.compile(optimizer=keras.optimizers.SGD(0.0))
        seen = []
        for _ in range(2):
            before = model.layers[-1].kernel.numpy().copy()
            method.generate(tf.constant(x), tf.constant(y))
            hook.before_outer_gradient(method, tf.constant(x), tf.constant(y),
                                       {"adv": tf.constant(x)})
            seen.append(not np.array_equal(model.layers[-1].kernel.numpy(), before))
            hook.after_apply(method, tf.constant(x), tf.constant(y), {"adv": tf.constant(x)})
            method.optimizer.iterations.assign_add(1)
        assert seen == moved, first_epoch
    with pytest.raises(ValueError, match="first_epoch"):
        AWP(0.01, first_epoch=2)


def _wrong_outside_unit_interval():
    """Logits that favour the true class 0 everywhere except where some pixel lies
    outside [0, 1], where class 1 wins; and nothing else: the gradient of the CE is zero
    inside [0, 1], so PGD's iterates (always projected into [0, 1]) stay correct."""
    def logits_fn(x):
        outside = tf.reduce_any((x < 0) | (x > 1), axis=[1, 2, 3])
        one = tf.ones([tf.shape(x)[0]], x.dtype)
        z0 = tf.where(outside, -one, one)
        return tf.stack([z0, -z0], axis=1) + 0.0 * tf.reduce_sum(x, axis=[1, 2, 3])[:, None]
    return logits_fn


def test_pgd_rst_records_iterates_after_each_step_only():
    """semisup-adv attack_pgd.py records correctness after each of its steps, never at
    the (unclamped) random start: a model wrong only at the start counts robust."""
    x = np.full((8, 4, 4, 3), 0.999, np.float32)
    x[:, 0, 0, 0] = 0.001  # some start noise leaves [0, 1] on either side, in every row
    y = np.zeros(8, np.int64)
    logits_fn = _wrong_outside_unit_interval()
    start = specs.PGD(epsilon=0.031, step_size=0.01, steps=3, every_iterate=True)._start(
        tf.constant(x), tf.constant([5, 6], tf.int64))
    assert bool(tf.reduce_all(tf.argmax(logits_fn(start), 1) == 1))  # wrong at the start
    official = specs.PGD(epsilon=0.031, step_size=0.01, steps=3, restarts=2, every_iterate=True)
    result = official.run(logits_fn, x, y, seed=(5, 6))
    assert not result.fooled.numpy().any()
    strict = specs.PGD(epsilon=0.031, step_size=0.01, steps=3, restarts=2, every_iterate=True,
                       every_iterate_from_start=True)
    assert strict.run(logits_fn, x, y, seed=(5, 6)).fooled.numpy().all()
    # The parsed attack follows the official rule.
    assert not specs.parse("pgd_rst", epsilon=0.031).every_iterate_from_start


def test_pgd_rst_counts_a_wrong_iterate_after_a_step():
    """An iterate misclassified after step 1 and correct again after steps 2 and 3 is
    fooled; the same run's last iterate alone would count it robust."""
    from tf_st.attacks.pgd import pgd
    x = np.full((2, 1, 1, 1), 0.5, np.float32)
    y = np.zeros(2, np.int64)

    def logits_fn(v):
        # The CE grows with the pixel value everywhere, so each step adds 0.01; class 1
        # wins only in the window (0.505, 0.515), which step 1 lands in.
        s = tf.reshape(v, [-1])
        bump = tf.where((s > 0.505) & (s < 0.515), 10.0, 0.0)
        return tf.stack([2.0 - s, s + bump], axis=1)

    x_adv, fooled = pgd(logits_fn, tf.constant(x), y, epsilon=0.1, step_size=0.01, steps=3,
                        x_init=tf.constant(x), track_iterates=True)
    np.testing.assert_allclose(x_adv.numpy().ravel(), [0.53, 0.53], atol=1e-6)
    assert fooled.numpy().all()
    assert (tf.argmax(logits_fn(x_adv), 1).numpy() == 0).all()


def test_zero_unlabelled_fraction_gives_the_official_epoch():
    """semisup-adv's sampler fills a batch with pseudo-labelled examples only while the
    labelled share is smaller than the batch: with fraction 0 the chunk that ends the
    permutation is a short batch of labelled examples only."""
    plan = rst.batch_plan(52, 100, 16, 0.0, rst.batches_per_epoch(52, 16),
                          np.random.RandomState(0))
    sizes = [(int((np.asarray(b) < 52).sum()), int((np.asarray(b) >= 52).sum())) for b in plan]
    assert sizes == [(16, 0), (16, 0), (16, 0), (4, 0)]
    assert sorted(np.concatenate(plan).tolist()) == list(range(52))
    # A fraction whose unlabelled share rounds to 0 behaves the same (int(16 * 0.05) = 0).
    plan = rst.batch_plan(52, 100, 16, 0.05, 4, np.random.RandomState(0))
    assert [len(b) for b in plan] == [16, 16, 16, 4]
    # And the training data yields that short batch.
    images = np.zeros((52, 2, 2, 3), np.uint8)
    ds = rst.rst_epochs((images, np.arange(52) % 3), (images[:5], np.zeros(5, np.int64)), 16,
                        0.0, "none", 1, 0, 1, 4)
    assert [int(b[1].shape[0]) for b in ds] == [16, 16, 16, 4]
