"""Reports to cite (issue 25, item 1): AutoAttack's version as run, the worst case over
every attack (AutoAttack included), a provenance block in every report and model card,
binomial intervals next to every accuracy, a model of the wrong class count refused,
and files and directories written with the umask's modes."""

import json
import os
import stat
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_st import fileio, provenance
from tf_st.attacks import specs
from tf_st.attacks.autoattack import AttackLog, Result
from tf_st.evaluation import cli, report
from tf_st.saved_model import export_classifier, load


def _tiny(num_classes=10):
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=4)(inp)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(num_classes)(x))


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    d = tmp_path_factory.mktemp("reports")
    keras.utils.set_random_seed(0)
    export_classifier(_tiny(10), str(d / "export"), version=1,
                      model_card={"arch": "tiny", "flags": {"seed": 7},
                                  "provenance": {"seeds": {"training": 7}}})
    return str(d / "export")


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ----------------------------------------------------------------------------- 1. version


def test_aa_reports_the_standard_version_and_custom_only_for_a_component_list(monkeypatch):
    from tf_st.attacks import autoattack
    seen = []
    monkeypatch.setattr(autoattack, "evaluate", lambda *a, **kw: seen.append(kw))
    monkeypatch.setattr(autoattack, "check_state", lambda *a, **kw: seen.append(kw))
    aa = specs.parse("aa", epsilon=4 / 255)
    aa.evaluate(None, None, None, seed=0)
    aa.check_state(None, None, None, state_file="s", seed=0, batch_size=8)
    assert [(kw["version"], kw["attacks"]) for kw in seen] == [("standard", None)] * 2
    # The components run are the same: components_for("standard") at the spec's epsilon.
    assert specs.components_for("standard", None, epsilon=4 / 255) == aa.components
    seen.clear()
    custom = specs.AutoAttack(epsilon=4 / 255, version="custom",
                              components=(specs.APGD(steps=3),))
    custom.evaluate(None, None, None, seed=0)
    assert seen[0]["version"] == "custom" and seen[0]["attacks"] == custom.components


# ----------------------------------------------------------------------------- 2. worst case


class _StubAutoAttack:
    """A whole-set attack whose robust flags are given: the report's worst case must
    take them in."""
    name, batched = "aa", False

    def __init__(self, robust):
        self.robust = np.asarray(robust, bool)

    def evaluate(self, logits_fn, x, y, **options):
        n = len(self.robust)
        acc = float(self.robust.mean())
        return Result(robust_flags=self.robust, clean_flags=np.ones(n, bool),
                      clean_accuracy=1.0, robust_accuracy=acc,
                      attacks=[AttackLog("stub", acc, 0.0, n, int((~self.robust).sum()))],
                      epsilon=8 / 255, seed=0, version="standard", seconds=0.0)


def test_worst_case_includes_autoattack_in_the_json_and_the_table(export, tmp_path, capsys):
    model = load(export)
    out = str(tmp_path / "r.json")
    # Robust under AutoAttack: only the first two examples.
    aa = _StubAutoAttack([True, True] + [False] * 6)
    rep = report.evaluate_and_report(
        model, dataset="cifar10_mini", data_dir=None, split="test", attacks=["clean", aa],
        epsilon=8 / 255, step_size=2 / 255, examples=8, batch_size=8, seed=0, output=out,
        verbose=False)
    clean = np.asarray(rep["attacks"]["clean"]["correct"], bool)
    expected = clean & aa.robust
    saved = json.load(open(out))
    for r in (rep, saved):
        assert r["worst_case_accuracy"] == pytest.approx(expected.mean())
        assert r["worst_case"]["attacks"] == ["clean", "aa"]
        assert r["worst_case"]["accuracy"] == r["worst_case_accuracy"]
        assert r["attacks"]["clean"]["accuracy"] == pytest.approx(clean.mean())
    table = capsys.readouterr().out.strip().splitlines()
    last = table[-1]
    assert last.startswith("| worst case") and f"{100 * expected.mean():.2f}%" in last


def test_autoattack_alone_reports_the_number_of_examples_evaluated(export, tmp_path):
    """With AutoAttack the only attack no per-batch attack ran; the report said
    ``num_examples: 0`` for a run on 6 examples (the empty per-batch result overwrote it)."""
    out = str(tmp_path / "r.json")
    aa = _StubAutoAttack([True, False, True, False, False, False])
    rep = report.evaluate_and_report(
        load(export), dataset="cifar10_mini", data_dir=None, split="test", attacks=[aa],
        epsilon=8 / 255, step_size=2 / 255, examples=6, batch_size=6, seed=0, output=out,
        verbose=False)
    for r in (rep, json.load(open(out))):
        assert r["num_examples"] == 6 and r["attacks"] == {}
        assert r["worst_case_accuracy"] == pytest.approx(2 / 6)
        assert r["autoattack"]["robust_accuracy"] == pytest.approx(2 / 6)


def test_each_attack_records_the_settings_it_ran_with(export, tmp_path):
    """The report's top-level step_size is the flag; pgd_rst steps 0.01 (semisup-adv's
    PGD_Ours) whatever it says, and its entry now records that."""
    rep = report.evaluate_and_report(
        load(export), dataset="cifar10_mini", data_dir=None, split="test",
        attacks=["clean", "pgd2", "pgd_rst"], epsilon=8 / 255, step_size=1 / 255,
        examples=4, batch_size=4, seed=0, output=str(tmp_path / "r.json"), verbose=False)
    for r in (rep, json.load(open(tmp_path / "r.json"))):
        assert r["step_size"] == pytest.approx(1 / 255)
        assert r["attacks"]["pgd2"]["settings"]["step_size"] == pytest.approx(1 / 255)
        assert r["attacks"]["pgd2"]["settings"]["steps"] == 2
        rst = r["attacks"]["pgd_rst"]["settings"]
        assert (rst["step_size"], rst["steps"], rst["restarts"]) == (0.01, 40, 5)
        assert r["attacks"]["clean"]["settings"] == {"epsilon": 0.0}


def test_worst_case_row_and_intervals_in_the_per_batch_table():
    from tf_st.evaluation import evaluate
    rng = np.random.RandomState(0)
    x, y = rng.rand(6, 32, 32, 3).astype(np.float32), np.arange(6) % 10
    res = evaluate(_tiny(10), (x, y), ["clean", "fgsm"], batch_size=6, verbose=False)
    js = res.to_json()
    for name in ("clean", "fgsm"):
        a = js["attacks"][name]
        se, ci = provenance.accuracy_interval(sum(a["correct"]), 6)
        assert a["stderr"] == pytest.approx(se) and a["ci95"] == pytest.approx(ci)
    assert js["worst_case"]["attacks"] == ["clean", "fgsm"]
    assert res.table().splitlines()[-1].startswith("worst-case")


# ----------------------------------------------------------------------------- 3. provenance


def test_every_report_and_the_model_card_carry_provenance(export, tmp_path):
    """The run layer's card has a ``provenance`` block, which ``export_classifier``
    completes (a card without one is written as given: ``tests/test_export.py``)."""
    out = str(tmp_path / "r.json")
    assert cli.main(["evaluate", f"--saved_model={export}", "--dataset=cifar10_mini",
                     "--examples=8", "--attacks=clean,fgsm", "--seed=3",
                     f"--output={out}"]) == 0
    r = json.load(open(out))
    p = r["provenance"]
    version_dir = os.path.join(export, "1")
    checksum = str(tf.saved_model.experimental.read_fingerprint(version_dir)
                   .saved_model_checksum)
    assert p["saved_model"] == os.path.abspath(version_dir)
    assert p["fingerprint"] == {"saved_model_checksum": checksum}
    import tf_st
    assert p["tf_st_version"] == tf_st.__version__
    assert p["tensorflow_version"] == tf.__version__
    assert p["keras_version"] == keras.__version__
    assert p["created"].endswith("Z") and p["created"][:4].isdigit()
    assert p["command_line"] == sys.argv
    assert (p["dataset"], p["split"], p["norm"]) == ("cifar10_mini", "test", "linf")
    assert p["epsilon"] == pytest.approx(8 / 255)
    assert p["seeds"] == {"evaluation": 3, "training": 7}
    from tf_st import data
    _, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=8)
    assert p["examples"]["count"] == 8 and p["examples"]["indices"] == [0, 8]
    assert p["examples"]["indices_labels_sha256"] == provenance.examples_hash(np.arange(8), y)
    # The existing keys are all still there.
    for key in ("dataset", "split", "data_note", "num_examples", "epsilon", "step_size",
                "seed", "attacks", "worst_case_accuracy", "seconds", "partial", "pending"):
        assert key in r
    card = json.load(open(os.path.join(version_dir, "model_card.json")))
    assert card["arch"] == "tiny" and card["flags"] == {"seed": 7}
    cp = card["provenance"]
    assert cp["seeds"] == {"training": 7}  # the caller's part of the block is kept
    assert cp["fingerprint"] == {"saved_model_checksum": checksum}
    assert cp["saved_model"] == os.path.abspath(version_dir)
    for key in ("tf_st_version", "tensorflow_version", "keras_version", "created",
                "command_line"):
        assert key in cp


def test_fingerprint_falls_back_to_a_hash_of_the_files(tmp_path):
    (tmp_path / "a").write_text("x")
    fp = provenance.saved_model_fingerprint(str(tmp_path))
    assert set(fp) == {"files_sha256"}
    (tmp_path / "a").write_text("y")
    assert provenance.saved_model_fingerprint(str(tmp_path)) != fp


# ----------------------------------------------------------------------------- 4. intervals


def test_binomial_intervals_are_wilson():
    se, (lo, hi) = provenance.accuracy_interval(5, 10)
    assert se == pytest.approx(0.158113883)
    assert (lo, hi) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    se, (lo, hi) = provenance.accuracy_interval(0, 20)
    assert se == 0 and lo == 0 and hi == pytest.approx(0.161125, abs=1e-6)
    assert provenance.accuracy_interval(0, 0) == (None, None)


def test_format_table_has_a_stderr_column():
    t = report.format_table([("clean", 0.5, 1.0, 0.05), ("worst case", 0.25, None, 0.01)])
    assert "± stderr" in t.splitlines()[0]
    assert "± 5.00" in t and t.splitlines()[-1].startswith("| worst case")
    assert "clean" in report.format_table([("clean", 0.5, 1.0)])  # 3-tuples still work


# ----------------------------------------------------------------------------- 5. class count


def test_a_model_of_another_class_count_is_refused_before_any_attack(tmp_path, capsys):
    d = tmp_path / "export3"
    export_classifier(_tiny(3), str(d), version=1)
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", f"--saved_model={d}", "--dataset=cifar10_mini",
                     "--examples=8", "--attacks=clean,fgsm", f"--output={out}"]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "3 classes" in errors[0] and "has 10" in errors[0]
    assert "clean" not in captured.out and not out.exists()
    with pytest.raises(ValueError, match="outputs 3 classes"):
        report.check_logits(_tiny(3), np.zeros((2, 32, 32, 3), np.float32), 2, num_classes=10)


# ----------------------------------------------------------------------------- 6. modes


def test_atomic_writes_follow_the_umask(tmp_path, umask022):
    fileio.atomic_write_json(str(tmp_path / "r.json"), {"a": 1})
    fileio.atomic_write_text(str(tmp_path / "t.txt"), "x")
    with fileio.atomic_path(str(tmp_path / "d"), directory=True) as tmp:
        os.makedirs(os.path.join(tmp, "sub"))
        with open(os.path.join(tmp, "sub", "f"), "w") as f:
            f.write("x")
    assert _mode(tmp_path / "r.json") == 0o644 and _mode(tmp_path / "t.txt") == 0o644
    assert _mode(tmp_path / "d") == 0o755 and _mode(tmp_path / "d" / "sub") == 0o755
    assert _mode(tmp_path / "d" / "sub" / "f") == 0o644
    os.umask(0o077)
    fileio.atomic_write_json(str(tmp_path / "private.json"), {"a": 1})
    assert _mode(tmp_path / "private.json") == 0o600
    assert fileio.current_umask() == 0o077


def test_the_savedmodel_export_follows_the_umask(tmp_path, umask022):
    final = export_classifier(_tiny(10), str(tmp_path / "export"), version=1,
                              model_card={"arch": "tiny"})
    assert _mode(final) == 0o755
    for root, dirs, files in os.walk(final):
        assert _mode(root) == 0o755, root
        for name in files:
            assert _mode(os.path.join(root, name)) == 0o644, name


@pytest.mark.slow
def test_the_standard_suite_end_to_end(export, tmp_path, capsys):
    """The issue's command: ``aa`` says ``standard``; the worst case covers it."""
    out = str(tmp_path / "r.json")
    assert cli.main(["evaluate", f"--saved_model={export}", "--dataset=cifar10_mini",
                     "--examples=4", "--batch_size=4", "--attacks=clean,fgsm,pgd20,cw20,aa",
                     f"--output={out}"]) == 0
    r = json.load(open(out))
    assert r["autoattack"]["version"] == "standard"
    flags = np.ones(4, bool)
    for name in ("clean", "fgsm", "pgd20", "cw20"):
        flags &= np.asarray(r["attacks"][name]["correct"], bool)
    flags &= np.asarray(r["autoattack"]["robust_flags"], bool)
    assert r["worst_case_accuracy"] == pytest.approx(flags.mean())
    assert r["worst_case"]["attacks"] == ["clean", "fgsm", "pgd20", "cw20", "aa"]
    assert {"robust_stderr", "robust_ci95"} <= set(r["autoattack"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert table[-1].startswith("| worst case")


@pytest.mark.slow  # a whole (tiny) trainer run
def test_a_training_runs_card_and_report_carry_provenance(tmp_path, umask022):
    from trainers import train
    out = tmp_path / "run"
    assert train.run_in_process([
        "--dataset=cifar10_mini", "--arch=small_cnn", "--epochs=1", "--steps_per_epoch=1",
        "--batch_size=16", "--steps=1", "--eval_examples=16", "--final_examples=16",
        "--final_attacks=clean,fgsm", "--method=madry", "--seed=5",
        f"--output_dir={out}"]) == 0
    version_dir = out / "export" / "1"
    card = json.loads((version_dir / "model_card.json").read_text())
    cp = card["provenance"]
    assert (cp["dataset"], cp["split"], cp["norm"]) == ("cifar10_mini", "train", "linf")
    assert cp["seeds"] == {"training": 5} and cp["epsilon"] == pytest.approx(8 / 255)
    checksum = str(tf.saved_model.experimental.read_fingerprint(str(version_dir))
                   .saved_model_checksum)
    assert cp["fingerprint"] == {"saved_model_checksum": checksum}
    rp = json.loads((out / "evaluation.json").read_text())["provenance"]
    assert rp["fingerprint"] == cp["fingerprint"]
    assert rp["seeds"] == {"evaluation": 5, "training": 5}
    assert _mode(version_dir) == 0o755 and _mode(version_dir / "model_card.json") == 0o644
    assert _mode(out / "evaluation.json") == 0o644
