"""Faults that must give a clear answer and lose nothing: the CLIs' error policy, reports
that say they are partial, an AutoAttack state of another model refused before any other
attack runs, corrupt images named, and fuzzed loader inputs (image folders, SavedModels)
that end in a clear error -- never a crash, a hang or a wrong number."""

import json
import os
import random
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_st import cli, data
from tf_st.attacks import specs


# ---- the error policy shared by every CLI ------------------------------------------

def _raiser(exc):
    def main(argv):
        raise exc
    return main


def test_cli_policy_expected_errors_are_one_line_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("TF_ST_DEBUG", raising=False)
    assert cli.guarded(_raiser(ValueError("bad --epsilon")), False)(["x"]) == 2
    assert capsys.readouterr().err == "error: bad --epsilon\n"
    assert cli.guarded(_raiser(FileNotFoundError("no such file: a.json")), False)([]) == 2
    assert capsys.readouterr().err == "error: no such file: a.json\n"
    op = tf.errors.InvalidArgumentError(None, None, "Invalid JPEG data\n\t [[{{node Decode}}]]")
    assert cli.guarded(_raiser(op), False)([]) == 2
    assert capsys.readouterr().err == "error: Invalid JPEG data\n"
    assert cli.guarded(_raiser(KeyboardInterrupt("signal 15")), False)([]) == 130
    assert capsys.readouterr().err == "interrupted: signal 15\n"
    assert cli.guarded(lambda argv: 0, False)([]) == 0


def test_cli_policy_bugs_and_verbose_keep_the_traceback(monkeypatch):
    monkeypatch.delenv("TF_ST_DEBUG", raising=False)
    with pytest.raises(ZeroDivisionError):  # a bug is never hidden behind "error:"
        cli.guarded(_raiser(ZeroDivisionError("x")), False)([])
    with pytest.raises(KeyError):
        cli.guarded(_raiser(KeyError("x")), False)([])
    with pytest.raises(ValueError):
        cli.guarded(_raiser(ValueError("x")), True)([])
    monkeypatch.setenv("TF_ST_DEBUG", "1")
    with pytest.raises(ValueError):
        cli.guarded(_raiser(ValueError("x")), False)([])


# ---- reports ------------------------------------------------------------------------

def _linear(shape=(32, 32, 3), seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape)
    return keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(inp)))


@pytest.mark.slow
def test_interrupted_evaluation_leaves_a_report_marked_partial(tmp_path, monkeypatch):
    from tf_st.evaluation import report, robustness
    real = robustness.make_batch_attack

    def make(logits_fn, spec):
        if spec.name == "pgd3":
            def interrupted(*args):
                raise KeyboardInterrupt("signal 15")
            return interrupted
        return real(logits_fn, spec)
    monkeypatch.setattr(robustness, "make_batch_attack", make)
    model, out = _linear(), tmp_path / "report.json"
    with pytest.raises(KeyboardInterrupt):
        report.evaluate_and_report(
            lambda t: model(t, training=False), dataset="cifar10_mini", data_dir=None,
            split="test", attacks=["clean", "fgsm", "pgd3", "cw3"], epsilon=2 / 255,
            step_size=1 / 255, examples=8, batch_size=8, seed=0, output=str(out),
            verbose=False)
    saved = json.loads(out.read_text())
    assert saved["partial"] is True and saved["pending"] == ["pgd3", "cw3"]
    assert sorted(saved["attacks"]) == ["clean", "fgsm"]
    monkeypatch.setattr(robustness, "make_batch_attack", real)
    done = report.evaluate_and_report(
        lambda t: model(t, training=False), dataset="cifar10_mini", data_dir=None,
        split="test", attacks=["clean", "fgsm", "pgd3", "cw3"], epsilon=2 / 255,
        step_size=1 / 255, examples=8, batch_size=8, seed=0, output=str(out), verbose=False)
    saved = json.loads(out.read_text())
    assert saved["partial"] is False and saved["pending"] == []
    assert saved["attacks"]["fgsm"] == done["attacks"]["fgsm"]


def test_foreign_autoattack_state_is_refused_before_the_other_attacks(tmp_path, monkeypatch):
    from tf_st.evaluation import report
    short = specs.AutoAttack(epsilon=2 / 255, version="custom",
                             components=(specs.APGD(steps=2),))
    state, out = tmp_path / "aa_state.json", tmp_path / "report.json"
    a, b = _linear(seed=0), _linear(seed=1)
    kwargs = dict(dataset="cifar10_mini", data_dir=None, split="test", epsilon=2 / 255,
                  step_size=1 / 255, examples=8, batch_size=8, seed=0, verbose=False,
                  state_file=str(state))
    report.evaluate_and_report(lambda t: a(t, training=False), attacks=[short],
                               output=str(tmp_path / "a.json"), **kwargs)
    assert json.loads(state.read_text())["finished"]
    ran = []
    monkeypatch.setattr(report, "evaluate", lambda *args, **kw: ran.append(1))
    with pytest.raises(ValueError, match="aa_state.json.*another run.*model"):
        report.evaluate_and_report(lambda t: b(t, training=False),
                                   attacks=["clean", "pgd20", short], output=str(out), **kwargs)
    assert ran == [] and not out.exists()
    # Same model, same data: accepted (the check does not refuse its own state).
    monkeypatch.undo()
    res = report.evaluate_and_report(lambda t: a(t, training=False),
                                     attacks=["clean", short], output=str(out), **kwargs)
    assert res["partial"] is False


# ---- image folders --------------------------------------------------------------------

def _jpeg_folder(root, n_per_class=3):
    rng = np.random.default_rng(0)
    paths = []
    for split in ("train", "test"):
        for c in ("a", "b"):
            os.makedirs(os.path.join(root, split, c))
            for i in range(n_per_class):
                img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                p = os.path.join(root, split, c, f"{i}.jpg")
                with open(p, "wb") as f:
                    f.write(tf.io.encode_jpeg(img).numpy())
                paths.append(p)
    return paths


def _read_all(root):
    with data.naming_bad_images("image_folder", root):
        split = data.load("image_folder", "train", data_dir=root)
        return data.as_numpy(split)


def test_truncated_and_undecodable_jpegs_are_named(tmp_path):
    root = str(tmp_path)
    paths = _jpeg_folder(root)
    victim = [p for p in paths if "/train/" in p][1]
    good = open(victim, "rb").read()
    with open(victim, "wb") as f:
        f.write(good[: len(good) // 2])
    with pytest.raises(data.DatasetNotFoundError, match=f"{victim} is truncated"):
        data.load("image_folder", "train", data_dir=root)
    # Complete-looking (start and end markers) but undecodable: found at decode time.
    with open(victim, "wb") as f:
        f.write(good[: len(good) // 2] + b"\xff\xd9")
    split = data.load("image_folder", "train", data_dir=root)
    with pytest.raises(tf.errors.InvalidArgumentError):
        data.as_numpy(split)  # TF's own error does not say which file
    with pytest.raises(data.DatasetNotFoundError, match=f"{victim} cannot be decoded"):
        _read_all(root)


def test_trainer_names_an_undecodable_image_and_exits_2(tmp_path, capsys):
    from trainers import train
    root = str(tmp_path / "data")
    paths = _jpeg_folder(root)
    victim = [p for p in paths if "/train/" in p][-1]
    good = open(victim, "rb").read()
    with open(victim, "wb") as f:
        f.write(good[: len(good) // 2] + b"\xff\xd9")
    out = tmp_path / "run"
    status = train.run_in_process(["--method=natural", "--dataset=image_folder",
                                   f"--data_dir={root}", "--arch=small_cnn", "--epochs=1",
                                   "--batch_size=2", "--eval_examples=2", f"--output_dir={out}"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert f"{victim} cannot be decoded" in err and "Traceback" not in err
    assert not (out / "export").exists()


def test_fuzzed_image_folders_load_or_fail_naming_the_file(tmp_path):
    """Random damage to one file of a small JPEG folder (truncation at any byte, runs of
    overwritten bytes, an empty file, text or another format under a .jpg name, another
    image size, stray non-image files): every load either succeeds with the right
    number of images or raises DatasetNotFoundError naming the damaged file."""
    rng = random.Random(0)
    started = time.time()
    outcomes = {"ok": 0, "named": 0}
    for trial in range(40):
        root = str(tmp_path / f"t{trial}")
        paths = [p for p in _jpeg_folder(root, 2) if "/train/" in p]
        victim = rng.choice(paths)
        good = open(victim, "rb").read()
        kind = trial % 8
        if kind == 0:
            bad = good[: rng.randrange(0, len(good))]
        elif kind == 1:
            at = rng.randrange(0, len(good) - 16)
            bad = good[:at] + bytes(rng.randrange(256) for _ in range(16)) + good[at + 16:]
        elif kind == 2:
            bad = b""
        elif kind == 3:
            bad = b"this is not an image\n" * 5
        elif kind == 4:
            bad = tf.io.encode_png(tf.zeros((8, 8, 3), tf.uint8)).numpy()  # PNG named .jpg
        elif kind == 5:
            bad = tf.io.encode_jpeg(tf.zeros((9, 8, 3), tf.uint8)).numpy()  # another size
        elif kind == 6:
            bad = good[: rng.randrange(2, len(good) - 2)] + b"\xff\xd9"
        else:
            bad = good
            with open(os.path.join(os.path.dirname(victim), "notes.txt"), "w") as f:
                f.write("not an image")
            os.makedirs(os.path.join(root, "train", ".hidden"))
        with open(victim, "wb") as f:
            f.write(bad)
        try:
            x, y = _read_all(root)
        except data.DatasetNotFoundError as e:
            assert victim in str(e), (kind, str(e))
            outcomes["named"] += 1
        except tf.errors.InvalidArgumentError as e:  # the size check names the file itself
            assert kind == 5 and victim in str(e), (kind, str(e))
            outcomes["named"] += 1
        else:
            assert len(x) == 4 and x.shape[1:] == (8, 8, 3) and sorted(y) == [0, 0, 1, 1]
            outcomes["ok"] += 1
    assert outcomes["named"] >= 15 and time.time() - started < 300, outcomes


# ---- the SavedModel loader -------------------------------------------------------------

def test_fuzzed_savedmodels_fail_with_the_path_named(tmp_path, capsys):
    from export.saved_model import export_classifier
    from tf_st.evaluation import cli as eval_cli
    from tf_st.saved_model import load
    good = export_classifier(_linear(), str(tmp_path / "good"))
    load(good)
    cases = {}
    rng = random.Random(1)
    for name in ("truncated_pb", "garbage_pb", "no_variables", "bad_card", "empty_dir"):
        d = str(tmp_path / name)
        if name == "empty_dir":
            os.makedirs(d)
        else:
            import shutil
            shutil.copytree(good, d)
        pb = os.path.join(d, "saved_model.pb")
        if name == "truncated_pb":
            blob = open(pb, "rb").read()
            open(pb, "wb").write(blob[: rng.randrange(1, len(blob) // 2)])
        elif name == "garbage_pb":
            open(pb, "wb").write(bytes(rng.randrange(256) for _ in range(4096)))
        elif name == "no_variables":
            import shutil
            shutil.rmtree(os.path.join(d, "variables"))
        elif name == "bad_card":
            open(os.path.join(d, "model_card.json"), "w").write("{")
        cases[name] = d
    for name, d in cases.items():
        with pytest.raises((ValueError, FileNotFoundError)) as info:
            load(d)
        assert d in str(info.value), (name, str(info.value))
        status = eval_cli.main(["evaluate", f"--saved_model={d}", "--examples=4"])
        err = capsys.readouterr().err
        assert status == 2 and err.startswith("error: ") and "Traceback" not in err, (name, err)
        assert d in err
