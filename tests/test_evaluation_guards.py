"""The evaluation refuses what would make its report wrong or lost, before any attack:
a report another evaluation is writing, an output that is a directory, a dangling link or
on a full disk, non-finite or non-logit outputs; a state file nothing uses is a warning.
Through ``tf_st.evaluation.cli.main`` in process, on a small exported model."""

import collections
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_st import models
from tf_st.evaluation import cli, report
from tf_st.saved_model import export_classifier


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    d = tmp_path_factory.mktemp("guards")
    export_classifier(models.build("small_cnn", 10), str(d / "export"), version=1)
    return str(d / "export")


def evaluate(export, out, *more):
    return cli.main(["evaluate", f"--saved_model={export}", "--dataset=cifar10_mini",
                     "--examples=8", "--attacks=clean,fgsm", f"--output={out}", *more])


def test_a_report_being_written_is_refused(export, tmp_path, capsys):
    out = str(tmp_path / "r.json")
    with report.exclusive(out):  # another evaluation holds it
        assert evaluate(export, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is being written by pid" in err
    assert not os.path.exists(out)
    assert evaluate(export, out) == 0 and json.load(open(out))["partial"] is False


def test_an_output_that_is_a_directory_or_a_dangling_link_is_refused(export, tmp_path, capsys):
    assert evaluate(export, tmp_path) == 2
    assert "is a directory" in capsys.readouterr().err
    link = tmp_path / "link.json"
    os.symlink(tmp_path / "missing" / "r.json", link)
    assert evaluate(export, link) == 2
    assert "dangling symbolic link" in capsys.readouterr().err


def test_an_output_on_a_full_disk_is_refused_before_any_attack(export, tmp_path, capsys,
                                                               monkeypatch):
    import builtins
    real_open = builtins.open

    def full(path, mode="r", *a, **k):
        if "space-probe" in str(path) and "w" in mode:
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full)
    out = tmp_path / "r.json"
    assert evaluate(export, out) == 2
    err = capsys.readouterr().err
    assert "no space left" in err and "r.json" in err and "[clean]" not in err
    assert not out.exists()


def test_a_state_file_no_attack_uses_is_a_warning(export, tmp_path, capsys):
    state = tmp_path / "aa.state"
    assert evaluate(export, tmp_path / "r.json", f"--state_file={state}") == 0
    assert "is not used" in capsys.readouterr().err and not state.exists()


class Broken:
    """A logits function whose outputs are NaN for every second example, or 1-D."""

    def __init__(self, kind):
        self.kind = kind

    def __call__(self, x):
        n = tf.shape(x)[0]
        if self.kind == "one_d":
            return tf.zeros([n])
        z = tf.zeros([n, 10]) + tf.reduce_mean(x)
        odd = (tf.range(n) % 2 == 1)[:, None]
        return tf.where(odd, tf.fill(tf.shape(z), np.float32(np.nan)), z)


def test_non_finite_logits_stop_the_evaluation_with_exit_3(tmp_path):
    x = np.random.RandomState(0).rand(4, 32, 32, 3).astype(np.float32)
    with pytest.raises(report.NonFiniteOutputError, match="non-finite logits.*2 of the "
                                                          "examples 0-3 \\(first: example 1\\)"):
        report.check_logits(Broken("nan"), x, 4)
    assert report.NonFiniteOutputError.exit_code == 3
    with pytest.raises(ValueError, match="shape \\(4,\\)"):
        report.check_logits(Broken("one_d"), x, 4)
    with pytest.raises(report.NonFiniteOutputError):
        report.evaluate_and_report(Broken("nan"), dataset="cifar10_mini", data_dir=None,
                                   split="test", attacks=["clean"], epsilon=8 / 255,
                                   step_size=2 / 255, examples=4, batch_size=4, seed=0,
                                   output=str(tmp_path / "r.json"), verbose=False)
    assert not (tmp_path / "r.json").exists()  # nothing reported


def test_the_report_lock_leaves_nothing_behind_and_can_be_taken_again(tmp_path):
    out = str(tmp_path / "r.json")
    with report.exclusive(out):
        assert os.listdir(tmp_path) == [".r.json.lock"]
        with pytest.raises(ValueError, match="being written"):
            with report.exclusive(out):
                pass
    assert os.listdir(tmp_path) == []
    with report.exclusive(out):
        pass
