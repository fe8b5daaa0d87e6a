"""One evaluation entry point (issue 25 item 3, finding 8): ``tf_st.evaluation.evaluate``
takes a keras.Model, a SavedModel or ``.keras`` path or a logits function, arrays
``x, y`` or the original ``(x, y)`` / dataset form, and every attack, AutoAttack ("aa")
included, into one result; exports carry a ``model.keras`` that Keras 3 loads; model
cards name the classes."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import linear_classifier, small_bn_model
from tf_st import data, seeds
from tf_st.attacks import autoattack, specs
from tf_st.attacks.autoattack import AttackLog, Result
from tf_st.attacks.batches import pad_rows
from tf_st.evaluation import evaluate
from tf_st.evaluation.report import evaluate_and_report
from tf_st.evaluation.robustness import make_batch_attack
from tf_st.saved_model import KERAS_FILE, KerasClassifier, export_classifier, load

EPS, STEP = 0.05, 0.02
ATTACKS = ["clean", "pgd3"]


def cheap_aa(epsilon=EPS):
    """AutoAttack with two short components: the whole-set machinery, in seconds."""
    return specs.AutoAttack(epsilon=epsilon, version="custom",
                            components=(specs.APGD(steps=3), specs.Square(steps=10)))


def _linear_data(n=13):
    model, _, _ = linear_classifier(classes=3)
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, (n, 2, 2, 3)).astype(np.float32)
    y = model(x).numpy().argmax(1)
    y[::5] = (y[::5] + 1) % 3  # some clean mistakes
    return model, x, y


def _flags(result):
    return {k: v.correct.astype(int).tolist() for k, v in result.attacks.items()}


# ----------------------------------------------------------------------------- call forms


def test_array_form_equals_the_pair_list_and_dataset_forms_and_the_seed_scheme():
    model, x, y = _linear_data()
    kw = dict(epsilon=EPS, step_size=STEP, batch_size=5, seed=3, verbose=False)
    new = evaluate(model, x, y, attacks=ATTACKS, **kw)
    pair = evaluate(model, (x, y), ATTACKS, **kw)
    dataset = evaluate(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(5), ATTACKS,
                       **kw)
    for other in (pair, dataset):
        assert _flags(other) == _flags(new)
    assert list(new.attacks) == ATTACKS and new.num_examples == 13
    # The attack does something here (else equal flags would prove nothing).
    assert sum(new.attacks["pgd3"].correct) < sum(new.attacks["clean"].correct)
    # The seed scheme is the documented one: batch b of the i-th attack draws with
    # seeds.key(seed, "evaluation", context, b, i).
    pgd = specs.parse("pgd3", epsilon=EPS, step_size=STEP)
    run = make_batch_attack(lambda t: model(t, training=False), pgd)
    manual = []
    for b, start in enumerate(range(0, 13, 5)):
        xb, yb = pad_rows(5, x[start:start + 5], y[start:start + 5])
        out = run(tf.constant(xb), tf.constant(yb, tf.int64),
                  seeds.key(3, "evaluation", 0, b, ATTACKS.index("pgd3")))
        manual.append(out.numpy()[:len(x[start:start + 5])])
    np.testing.assert_array_equal(np.concatenate(manual), new.attacks["pgd3"].correct)
    # The clean flags are the model's own predictions.
    np.testing.assert_array_equal(new.attacks["clean"].correct,
                                  model(x).numpy().argmax(1) == y)


def test_two_attacks_of_one_name_are_refused_before_any_work(tmp_path):
    """Results are keyed by attack name: ``pgd40`` and ``pgd_rst`` were both called
    ``pgd40``, so one replaced the other.  ``pgd_rst`` has its own name now, and a
    name given twice is an error before anything runs."""
    model, x, y = _linear_data()
    assert specs.parse("pgd_rst", epsilon=0.031).name == "pgd_rst"
    assert specs.EveryIteratePGD(steps=7).name == "pgd7_every_iterate"
    res = evaluate(model, x, y, attacks=["pgd2", "pgd_rst"], epsilon=1 / 255, batch_size=50,
                   verbose=False)
    assert list(res.attacks) == ["pgd2", "pgd_rst"]
    calls = []
    with pytest.raises(ValueError, match="pgd2 given twice"):
        evaluate(lambda t: calls.append(1) or model(t), x, y, attacks=["pgd2", "pgd2"],
                 verbose=False)
    with pytest.raises(ValueError, match="pgd20 given twice"):
        evaluate_and_report(lambda t: calls.append(1) or model(t), dataset="cifar10_mini",
                            data_dir=None, split="test", attacks=["pgd20", specs.PGD()],
                            epsilon=8 / 255, step_size=2 / 255, examples=4, batch_size=4,
                            seed=0, output=str(tmp_path / "r.json"), verbose=False)
    assert not calls and not (tmp_path / "r.json").exists()


def test_how_the_arguments_are_read():
    """Which form a call is in; the defaults; one attack given alone."""
    from tf_st.evaluation.robustness import _data_and_attacks
    _, x, y = _linear_data()
    aa = cheap_aa()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    assert _data_and_attacks(x, y, None)[1] == ["clean", "pgd20"]
    assert _data_and_attacks((x, y), None, None)[1] == ["clean", "pgd20"]
    assert _data_and_attacks(x, y, ["fgsm", aa])[1] == ["fgsm", aa]
    assert _data_and_attacks(x, y, "fgsm")[1] == ["fgsm"]
    assert _data_and_attacks(x, y, aa)[1] == [aa]
    assert _data_and_attacks((x, y), ("clean", "aa"), None)[1] == ["clean", "aa"]
    assert _data_and_attacks((x, y), [], None)[1] == []  # evaluate_and_report's AA-only run
    assert _data_and_attacks(ds, ["clean"], None) == (ds, ["clean"])
    data, _ = _data_and_attacks([x, y], ["clean"], None)
    assert data[0] is x and data[1] is y
    data, _ = _data_and_attacks(tf.constant(x), list(y), ["clean"])
    np.testing.assert_array_equal(data[1], y)
    # The positional form evaluate(model, x, y, attacks) is the keyword one.
    model, _, _ = linear_classifier(classes=3)
    assert _flags(evaluate(model, x, y, ["clean"], verbose=False)) == \
        _flags(evaluate(model, x, y, attacks=["clean"], verbose=False))


def test_data_mistakes_are_refused():
    model, x, y = _linear_data()
    with pytest.raises(ValueError, match="needs the labels y"):
        evaluate(model, x, attacks=["clean"], verbose=False)
    with pytest.raises(ValueError, match="labels given twice"):
        evaluate(model, (x, y), y, verbose=False)
    with pytest.raises(ValueError, match="attacks given twice"):
        evaluate(model, (x, y), ["clean"], attacks=["fgsm"], verbose=False)
    with pytest.raises(ValueError, match="x has 13 examples but y has 12"):
        evaluate(model, x, y[:12], verbose=False)
    with pytest.raises(ValueError, match="x has 13 examples but y has 12"):
        evaluate(model, (x, y[:12]), ["clean"], verbose=False)
    with pytest.raises(ValueError, match="an array x with labels y"):
        evaluate(model, "images", y, verbose=False)


# ----------------------------------------------------------------------------- AutoAttack


@pytest.mark.slow  # AutoAttack twice and three per-batch evaluations (~14 s)
def test_whole_set_attacks_run_in_evaluate_as_spec_evaluate_runs_them():
    model, x, y = _linear_data()
    aa = cheap_aa()
    seen = []
    kw = dict(epsilon=EPS, step_size=STEP, batch_size=5, seed=3, verbose=False)
    res = evaluate(model, x, y, attacks=["clean", aa, "pgd3"], on_attack=seen.append, **kw)
    alone = aa.evaluate(lambda t: model(t, training=False), x, y, seed=3, batch_size=5,
                        verbose=False, return_adversarials=False)
    assert list(res.attacks) == ["clean", "aa", "pgd3"]
    got = res.attacks["aa"]
    np.testing.assert_array_equal(got.correct, alone.robust_flags)
    assert got.name == "aa" and got.accuracy == alone.robust_accuracy
    assert got.accuracy == pytest.approx(got.correct.mean()) and got.seconds > 0
    assert res.details["aa"].clean_accuracy == alone.clean_accuracy
    assert 0 < got.correct.sum() < res.attacks["clean"].correct.sum()  # AA does bite
    # A whole-set attack takes no per-batch index: pgd3 is the 2nd per-batch attack, as
    # without AutoAttack.
    without = evaluate(model, x, y, attacks=["clean", "pgd3"], **kw)
    assert _flags(without) == {k: v for k, v in _flags(res).items() if k != "aa"}
    # The worst case takes AutoAttack's flags in.
    expected = res.attacks["clean"].correct & alone.robust_flags & res.attacks["pgd3"].correct
    np.testing.assert_array_equal(res.worst_case, expected)
    js = res.to_json()
    assert js["worst_case"]["attacks"] == ["clean", "aa", "pgd3"]
    assert js["attacks"]["aa"]["correct"] == alone.robust_flags.astype(int).tolist()
    assert [list(r.attacks) for r in seen] == [["clean"], ["clean", "aa"],
                                               ["clean", "aa", "pgd3"]]
    # The dataset form materialises the data for AutoAttack: the same flags.
    ds = evaluate(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(5), [aa], **kw)
    np.testing.assert_array_equal(ds.attacks["aa"].correct, alone.robust_flags)


def test_aa_by_name_is_the_standard_suite_with_evaluates_seed_and_batch(monkeypatch):
    """Finding 8: ``attacks=["aa"]`` raised and pointed elsewhere; now it runs AutoAttack
    standard at evaluate's epsilon, seed and batch size, and its flags are the result."""
    model, x, y = _linear_data()
    calls = []
    robust = np.arange(13) % 2 == 0

    def fake(logits_fn, ax, ay, **kw):
        calls.append(kw)
        np.testing.assert_array_equal(ax, x)
        np.testing.assert_array_equal(ay, y)
        assert ay.dtype == np.int64
        return Result(robust_flags=robust, clean_flags=np.ones(13, bool), clean_accuracy=1.0,
                      robust_accuracy=float(robust.mean()),
                      attacks=[AttackLog("apgd-ce", float(robust.mean()), 0.5, 13, 6)],
                      epsilon=kw["epsilon"], seed=kw["seed"], version=kw["version"],
                      seconds=1.25)

    monkeypatch.setattr(autoattack, "evaluate", fake)
    res = evaluate(model, x, y, attacks=["clean", "aa"], epsilon=4 / 255, batch_size=50,
                   seed=9, verbose=False)
    (kw,) = calls
    assert (kw["version"], kw["attacks"], kw["epsilon"]) == ("standard", None, 4 / 255)
    assert (kw["seed"], kw["batch_size"], kw["return_adversarials"]) == (9, 13, False)
    got = res.attacks["aa"]
    assert (got.name, got.accuracy, got.seconds) == ("aa", 7 / 13, 1.25)
    np.testing.assert_array_equal(got.correct, robust)


def _tiny(num_classes=10):
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(4, 3, strides=4)(inp)
    return keras.Model(inp, keras.layers.Dense(num_classes)(keras.layers.Flatten()(h)))


def test_evaluate_on_a_path_equals_evaluate_and_report(tmp_path):
    keras.utils.set_random_seed(0)
    export = str(tmp_path / "export")
    export_classifier(_tiny(), export, version=1)
    attacks = ["clean", "fgsm", cheap_aa(8 / 255)]
    report = evaluate_and_report(load(export), dataset="cifar10_mini", data_dir=None,
                                 split="test", attacks=attacks, epsilon=8 / 255,
                                 step_size=2 / 255, examples=8, batch_size=8, seed=2,
                                 verbose=False)
    x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=8)
    res = evaluate(export, x, y, attacks=attacks, batch_size=8, seed=2, verbose=False)
    for name in ("clean", "fgsm"):
        assert res.attacks[name].correct.astype(int).tolist() == \
            report["attacks"][name]["correct"]
    assert res.attacks["aa"].correct.tolist() == report["autoattack"]["robust_flags"]
    assert res.attacks["aa"].accuracy == report["autoattack"]["robust_accuracy"]
    assert res.to_json()["worst_case_accuracy"] == report["worst_case_accuracy"]


# ----------------------------------------------------------------------------- model kinds


def test_every_kind_of_model_gives_the_same_result_and_bad_ones_one_clear_error(tmp_path):
    keras.utils.set_random_seed(1)
    twin = small_bn_model(bn_seed=1)  # the same weights, for train mode (which updates BN)
    keras.utils.set_random_seed(1)
    model = small_bn_model(bn_seed=1)
    x = np.random.RandomState(4).uniform(0, 1, (10, 4, 4, 2)).astype(np.float32)
    inference = model(x, training=False).numpy().argmax(1)
    assert (twin(x, training=True).numpy().argmax(1) != inference).sum() >= 4  # BN mode shows
    y = inference.copy()
    y[:3] = (y[:3] + 1) % 3
    export = str(tmp_path / "export")
    version_dir = export_classifier(model, export, version=1)
    kw = dict(attacks=["clean", "fgsm"], epsilon=EPS, batch_size=4, seed=0, verbose=False)
    moving = [w.numpy().copy() for w in model.get_layer("bn").weights]
    results = {"model": evaluate(model, x, y, **kw),
               "function": evaluate(lambda t: model(t, training=False), x, y, **kw),
               "export dir": evaluate(export, x, y, **kw),
               "version dir": evaluate(version_dir, x, y, **kw),
               "pathlike": evaluate(pathlib.Path(version_dir), x, y, **kw),
               "keras file": evaluate(os.path.join(version_dir, KERAS_FILE), x, y, **kw)}
    # A keras.Model is called in inference mode and its BN statistics stay as they were.
    np.testing.assert_array_equal(results["model"].attacks["clean"].correct, inference == y)
    for w, before in zip(model.get_layer("bn").weights, moving):
        np.testing.assert_array_equal(w.numpy(), before)
    for name, res in results.items():
        assert _flags(res) == _flags(results["model"]), name
    accepted = "keras.Model.*SavedModel.*\\.keras file.*logits function"
    for bad in (str(tmp_path / "missing"), 3, None, str(tmp_path)):
        with pytest.raises(ValueError, match=accepted):
            evaluate(bad, x, y, **kw)
    with pytest.raises(ValueError, match="cannot load the SavedModel"):
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "saved_model.pb").write_text("not a protobuf")
        evaluate(str(broken), x, y, **kw)


# ----------------------------------------------------------------------------- .keras


def test_export_writes_model_keras_that_keras_loads_with_the_savedmodels_logits(tmp_path):
    from tf_st import models
    keras.utils.set_random_seed(1)
    net = models.build("small_cnn", 10, input_shape=(8, 8, 3))
    export = str(tmp_path / "export")
    card = {"arch": "small_cnn", "provenance": {"seeds": {"training": 1}}}
    version_dir = export_classifier(net, export, version=1, model_card=card)
    assert sorted(os.listdir(export)) == ["1"]  # nothing else beside the version
    assert KERAS_FILE in os.listdir(version_dir)
    written = json.load(open(os.path.join(version_dir, "model_card.json")))
    assert written["keras_file"] == "model.keras"
    assert "keras_file" not in card  # the caller's card is not modified
    x = np.random.RandomState(0).uniform(0, 1, (5, 8, 8, 3)).astype(np.float32)
    saved = load(version_dir)(x).numpy()
    restored = keras.models.load_model(os.path.join(version_dir, KERAS_FILE))
    assert isinstance(restored, keras.Model)
    np.testing.assert_allclose(restored(x, training=False).numpy(), saved, atol=1e-5)
    np.testing.assert_array_equal(restored(x, training=False).numpy(),
                                  net(x, training=False).numpy())
    clf = load(os.path.join(version_dir, KERAS_FILE))
    assert isinstance(clf, KerasClassifier) and clf.image_shape == (8, 8, 3)
    assert clf.model_card == written
    np.testing.assert_allclose(clf(x).numpy(), saved, atol=1e-5)
    # A .keras file is fingerprinted by its bytes in reports.
    from tf_st import provenance
    fp = provenance.saved_model_fingerprint(clf.path)
    assert set(fp) == {"file_sha256"} and len(fp["file_sha256"]) == 64
    # A card without a provenance block is written as given.
    plain = export_classifier(net, export, version=2, model_card={"arch": "x"})
    assert json.load(open(os.path.join(plain, "model_card.json"))) == {"arch": "x"}


def test_keras_file_can_be_left_out_and_an_unserializable_model_is_refused(tmp_path):
    model, _, _ = linear_classifier()
    d = str(tmp_path / "export")
    version_dir = export_classifier(model, d, version=1, keras_file=False,
                                    model_card={"provenance": {}})
    assert KERAS_FILE not in os.listdir(version_dir)
    assert json.load(open(os.path.join(version_dir, "model_card.json")))["keras_file"] is None

    class Holding(keras.layers.Layer):
        """A layer built from an object Keras cannot serialize (no get_config)."""

        def __init__(self, table, **kwargs):
            super().__init__(**kwargs)
            self.table = table

        def call(self, x):
            return x

    inp = keras.Input((2, 2, 3))
    out = keras.layers.Dense(3)(keras.layers.Flatten()(Holding(object())(inp)))
    with pytest.raises(ValueError, match="cannot serialize.*keras_file=False"):
        export_classifier(keras.Model(inp, out), d, version=2)
    assert sorted(os.listdir(d)) == ["1"]  # refused before anything was written
    with pytest.raises(ValueError, match="cannot load the Keras file"):
        (tmp_path / "bad.keras").write_text("not a zip")
        load(str(tmp_path / "bad.keras"))
    with pytest.raises(FileNotFoundError, match="no Keras file"):
        load(str(tmp_path / "absent.keras"))


def _arch_families():
    from tf_st.models.wideresnet import wide_resnet
    return {"resnet18": lambda: __import__("tf_st.models", fromlist=["build"]).build(
                "resnet18", 10),
            "preact_resnet18": lambda: __import__("tf_st.models", fromlist=["build"]).build(
                "preact_resnet18", 10),
            # The registry's WRNs (wrn34_10, ...) with the same code at depth 10, width 1.
            "wide_resnet": lambda: wide_resnet(depth=10, widen_factor=1, num_classes=10)}


@pytest.mark.slow  # three 32x32 networks exported (ResNet-18: 45 MB each format)
@pytest.mark.parametrize("family", ["resnet18", "preact_resnet18", "wide_resnet"])
def test_every_architecture_family_round_trips_through_model_keras(tmp_path, family):
    from tf_st.models import set_batchnorm
    keras.utils.set_random_seed(2)
    net = _arch_families()[family]()
    # BN statistics away from their initial values, so that a lost one shows.
    rng = np.random.RandomState(0)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.randn(n) * 0.1,
                               rng.randn(n) * 0.1, rng.uniform(0.5, 2, n)])
    set_batchnorm(net, fused=True)
    version_dir = export_classifier(net, str(tmp_path / "export"), version=1)
    x = np.random.RandomState(1).uniform(0, 1, (3, 32, 32, 3)).astype(np.float32)
    restored = keras.models.load_model(os.path.join(version_dir, KERAS_FILE))
    np.testing.assert_allclose(restored(x, training=False).numpy(), load(version_dir)(x).numpy(),
                               atol=1e-4)
    np.testing.assert_array_equal(restored(x, training=False).numpy(),
                                  net(x, training=False).numpy())


@pytest.mark.slow  # a fresh interpreter (TensorFlow's import)
def test_a_fresh_process_loads_model_keras_after_importing_tf_st_models(tmp_path):
    from tf_st import models
    keras.utils.set_random_seed(3)
    net = models.build("small_cnn", 10, input_shape=(8, 8, 3))
    version_dir = export_classifier(net, str(tmp_path / "export"), version=1)
    x = np.random.RandomState(0).uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, keras, tf_st.models\n"
            "m = keras.models.load_model(sys.argv[1])\n"
            "np.save(sys.argv[3], m(np.load(sys.argv[2]), training=False).numpy())\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code, os.path.join(version_dir, KERAS_FILE),
                    str(tmp_path / "x.npy"), str(tmp_path / "z.npy")], check=True, cwd=root,
                   env={**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"})
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), net(x, training=False).numpy())


# ----------------------------------------------------------------------------- class names


def _write_folder(root, classes=("cat", "dog", "zebra"), per_class=4, size=8):
    """``root/{train,test}/<class>/NNN.png``, each image a flat grey by class."""
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            os.makedirs(os.path.join(root, split, name))
            for i in range(per_class):
                img = np.full((size, size, 3), 40 * label + 3 * i, np.uint8)
                tf.io.write_file(os.path.join(root, split, name, f"{i:03d}.png"),
                                 tf.io.encode_png(img))
    return root


def test_every_source_names_its_classes(tmp_path, monkeypatch):
    from tf_st.experiment.runner import _class_names
    folder = data.load("image_folder", "train", data_dir=_write_folder(str(tmp_path / "f")))
    assert _class_names(folder) == ["cat", "dog", "zebra"]
    assert _class_names(data.load("cifar10_mini", "test")) == [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
        "truck"]
    assert _class_names(data.from_arrays(np.zeros((2, 2, 2, 3), np.uint8), [0, 1])) is None
    # TFDS: the label feature's names (tfds.load stubbed: no dataset is prepared here).
    tfds = pytest.importorskip("tensorflow_datasets")
    names = [f"kind{i}" for i in range(10)]

    class Info:
        features = {"label": tfds.features.ClassLabel(names=names)}
        splits = {}

    raw = tf.data.Dataset.from_tensor_slices((np.zeros((2, 4, 4, 3), np.uint8), [3, 7]))
    monkeypatch.setattr(tfds, "load", lambda *a, **kw: (raw, Info()))
    split = data.load("cifar10", "train", data_dir=str(tmp_path / "tfds"))
    assert split.num_classes == 10 and _class_names(split) == names


@pytest.mark.slow  # a whole (one-step) run
def test_an_image_folder_runs_model_card_has_the_folder_names(tmp_path):
    """Finding 8: the card of an image-folder run had ``num_classes: 3`` but no names."""
    from tf_st.experiment import runner
    root = _write_folder(str(tmp_path / "images"))
    out = tmp_path / "run"
    settings = runner.Settings(method="madry", dataset="image_folder", data_dir=root,
                               arch="small_cnn", epochs=1, steps_per_epoch=1, batch_size=4,
                               eval_examples=4, final_attacks=(), output_dir=str(out))
    runner.run(settings)
    version_dir = out / "export" / "1"
    card = json.loads((version_dir / "model_card.json").read_text())
    assert card["num_classes"] == 3 and card["class_names"] == ["cat", "dog", "zebra"]
    assert card["keras_file"] == "model.keras"
    restored = keras.models.load_model(str(version_dir / "model.keras"))
    x = np.random.RandomState(0).uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(restored(x, training=False).numpy(),
                               load(str(version_dir))(x).numpy(), atol=1e-5)


def test_the_earlier_keyword_names_still_work():
    """``logits_fn=`` and ``data=`` (the names before the model/x/y form) give the same
    result as the positional forms; giving one thing twice is refused."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 4, 4, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])

    def fn(t):
        return tf.reshape(t, (-1, 48))[:, :3]

    a = evaluate(fn, x, y, attacks=["clean", "fgsm"], verbose=False)
    b = evaluate(logits_fn=fn, data=(x, y), attacks=["clean", "fgsm"], verbose=False)
    for name in ("clean", "fgsm"):
        np.testing.assert_array_equal(a.attacks[name].correct, b.attacks[name].correct)
    with pytest.raises(ValueError, match="once"):
        evaluate(fn, x, y, logits_fn=fn, verbose=False)
    with pytest.raises(ValueError, match="once"):
        evaluate(fn, x, y, data=(x, y), verbose=False)
