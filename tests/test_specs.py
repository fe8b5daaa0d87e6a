"""The attack vocabulary: every spec stays in the eps-ball and [0, 1], ``run`` re-classifies,
names parse and round-trip, bad settings fail at construction, specs reproduce the
functions they wrap bit for bit, and the evaluation CLI refuses bad input before work."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import linear_classifier
from tf_st.attacks import autoattack, parse, specs
from tf_st.attacks.pgd import pgd
from tf_st.evaluation import evaluate

EPS = 8 / 255
PER_BATCH = [specs.Clean(), specs.FGSM(), specs.PGD(steps=5), specs.PGD(steps=5, loss="cw"),
             specs.PGD(steps=5, restarts=2, start="uniform_clamped"),
             specs.PGD(steps=5, tau=1), specs.PGD(steps=5, every_iterate=True, restarts=2),
             specs.APGD(steps=5), specs.APGDT(steps=5, targets=2), specs.FABT(steps=5, targets=2),
             specs.Square(steps=20)]


def _data(n=16):
    rng = np.random.RandomState(0)
    return rng.uniform(0, 1, (n, 2, 2, 3)).astype(np.float32), np.arange(n) % 3


@pytest.mark.parametrize("spec", PER_BATCH, ids=lambda s: repr(s)[:40])
def test_run_stays_in_the_ball_and_reclassifies(spec):
    model, _, _ = linear_classifier(classes=3)
    x, y = _data()
    res = spec.run(model, tf.constant(x), tf.constant(y), seed=tf.constant([1, 2], tf.int64))
    x_adv = res.x_adv.numpy()
    assert np.abs(x_adv - x).max() <= spec.epsilon + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    wrong = model(x_adv).numpy().argmax(1) != y
    if getattr(spec, "every_iterate", False):
        assert np.all(res.fooled.numpy() >= wrong)  # any iterate counts
    else:
        np.testing.assert_array_equal(res.fooled.numpy(), wrong)
    clean_wrong = model(x).numpy().argmax(1) != y
    if isinstance(spec, specs.Clean):
        np.testing.assert_array_equal(res.fooled.numpy(), clean_wrong)


def test_pgd_spec_equals_the_pgd_function_bit_for_bit():
    model, _, _ = linear_classifier(classes=3)
    x, y = _data()
    seed = tf.constant([3, 4], tf.int64)
    a = specs.PGD(steps=7, loss="cw").perturb(model, tf.constant(x), tf.constant(y), seed=seed)
    from tf_st.attacks import losses
    b = pgd(model, tf.constant(x), tf.constant(y), epsilon=EPS, step_size=2 / 255, steps=7,
            loss_fn=losses.cw_margin, seed=seed)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_names_parse_round_trip_and_bad_ones_fail():
    for name in ("clean", "fgsm", "pgd20", "cw100", "aa", "apgd-ce", "apgd-t", "fab-t", "square"):
        assert parse(name).name == name
    rst = parse("pgd_rst", epsilon=0.031)
    assert (rst.steps, rst.step_size, rst.restarts, rst.every_iterate) == (40, 0.01, 5, True)
    assert parse("pgd7", step_size=0.01).step_size == 0.01
    for bad in ("pgd", "pgd0", "cw", "foo", "aa2"):
        with pytest.raises(ValueError, match="unknown attack"):
            parse(bad)


def test_one_list_of_attack_names():
    """ATTACK_NAMES is what parse accepts and what every message lists."""
    for name in specs.ATTACK_NAMES:
        parse(name.replace("<N>", "7"))
    assert specs.describe_names() == ("clean, fgsm, pgd<N>, cw<N>, pgd_rst, aa, apgd-ce, "
                                      "apgd-t, fab-t or square")
    with pytest.raises(ValueError) as raised:
        parse("foo")
    assert str(raised.value) == ("unknown attack 'foo': use clean, fgsm, pgd<N> (e.g. pgd20, "
                                 "pgd100), cw<N> (e.g. cw100), pgd_rst, aa, apgd-ce, apgd-t, "
                                 "fab-t or square")
    from tf_st.evaluation import cli
    assert specs.describe_names() in cli.FLAGS["attacks"].help


@pytest.mark.parametrize("make,message", [
    (lambda: specs.PGD(epsilon=8), r"\[0, 1\]"), (lambda: specs.PGD(step_size=2), r"\[0, 1\]"),
    (lambda: specs.PGD(steps=-1), "steps"), (lambda: specs.PGD(restarts=0), "restarts"),
    (lambda: specs.PGD(start="gauss"), "start"), (lambda: specs.PGD(loss="hinge"), "loss"),
    (lambda: specs.AutoAttack(version="rand"), "version"),
    (lambda: specs.AutoAttack(version="custom"), "custom"),
])
def test_bad_settings_fail_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_specs_are_frozen_and_autoattack_propagates_epsilon():
    with pytest.raises(dataclasses.FrozenInstanceError):
        specs.PGD().steps = 3
    aa = specs.AutoAttack(epsilon=4 / 255)
    assert [c.epsilon for c in aa.components] == [4 / 255] * 4
    assert [c.name for c in aa.components] == ["apgd-ce", "apgd-t", "fab-t", "square"]


def test_evaluation_by_name_equals_by_spec_and_autoattack_spec_equals_runner():
    model, _, _ = linear_classifier(classes=3)
    x, y = _data(24)
    by_name = evaluate(model, (x, y), ["clean", "fgsm", "pgd5", "cw5"], batch_size=10,
                       seed=3, verbose=False)
    by_spec = evaluate(model, (x, y), [specs.Clean(), specs.FGSM(), specs.PGD(steps=5),
                                       specs.PGD(steps=5, loss="cw")], batch_size=10, seed=3,
                       verbose=False)
    for name in ("clean", "fgsm", "pgd5", "cw5"):
        np.testing.assert_array_equal(by_name.attacks[name].correct, by_spec.attacks[name].correct)
    comps = (specs.APGD(steps=3), specs.Square(steps=10))
    a = specs.AutoAttack(version="custom", components=comps).evaluate(
        model, x, y, seed=0, batch_size=12, verbose=False)
    b = autoattack.evaluate(model, x, y, version="custom", attacks=comps, seed=0,
                            batch_size=12, verbose=False)
    np.testing.assert_array_equal(a.robust_flags, b.robust_flags)
    # evaluate runs a whole-set spec as spec.evaluate does (it refused one before).
    c = evaluate(model, (x, y), [specs.AutoAttack(version="custom", components=comps)],
                 batch_size=12, seed=0, verbose=False)
    np.testing.assert_array_equal(c.attacks["aa"].correct, a.robust_flags)


def _export_small(tmp_path, shape=(32, 32, 3)):
    import keras

    from export.saved_model import export_classifier
    inp = keras.Input(shape)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(inp)))
    return export_classifier(model, str(tmp_path / "export"), version=1)


@pytest.mark.parametrize("args,message", [
    (["--attacks=foo"], "unknown attack"),
    (["--attacks="], "--attacks is empty"),
    (["--split=valid"], "unknown --split"),
    (["--dataset=imagenet"], "unknown --dataset"),
    (["--output={tmp}/a_file/report.json"], "cannot write the report"),
])
def test_evaluation_cli_refuses_before_work(tmp_path, capsys, args, message):
    from tf_st.evaluation import cli
    path = _export_small(tmp_path)
    (tmp_path / "a_file").write_text("not a directory")
    args = [a.format(tmp=tmp_path) for a in args]
    assert cli.main(["evaluate", f"--saved_model={path}", "--examples=4"] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_evaluation_cli_refuses_a_model_of_another_image_shape(tmp_path, capsys):
    from tf_st.evaluation import cli
    path = _export_small(tmp_path, shape=(28, 28, 1))
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", f"--saved_model={path}", f"--output={out}"]) == 2
    assert "takes images of shape (28, 28, 1)" in capsys.readouterr().err
    assert not out.exists()
    path = _export_small(tmp_path / "ok")
    assert cli.main(["evaluate", f"--saved_model={path}", "--attacks=clean,pgd2",
                     "--examples=8", f"--output={out}"]) == 0
    assert out.exists()


def test_evaluation_cli_warns_about_probabilities_and_constant_outputs(tmp_path, capsys):
    import keras

    from export.saved_model import export_classifier
    from tf_st.evaluation import cli
    for name, head, message in (
            ("softmax", lambda h: keras.layers.Dense(10, activation="softmax")(h),
             "look like probabilities"),
            ("constant", lambda h: keras.layers.Dense(10, kernel_initializer="zeros")(h),
             "do not change when the input does")):
        inp = keras.Input((32, 32, 3))
        model = keras.Model(inp, head(keras.layers.Flatten()(inp)))
        path = export_classifier(model, str(tmp_path / name), version=1)
        assert cli.main(["evaluate", f"--saved_model={path}", "--attacks=clean",
                         "--examples=4", f"--output={tmp_path / name}.json"]) == 0
        assert message in capsys.readouterr().err
