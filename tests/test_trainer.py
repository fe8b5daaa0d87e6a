"""Whole-trainer tests: flag validation before any work, resume after a kill, the run
directory contract, evaluation of the export through ``export.evaluate``.

Everything runs in this process (``trainers.train.run_in_process``) except the killed
run, where the process boundary is the point."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from absl import flags

from trainers import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_module(args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout, **kw)


@pytest.mark.parametrize("flag,message", [
    ("--epsilon=8", "[0, 1]"),
    ("--dataset=imagenet21k", "dataset"),
    ("--arch=vgg99", "arch"),
    ("--beta=-1", "--beta must be >= 0"),
    ("--final_attacks=clean,pgd", "unknown attack"),
    ("--lr_milestones=abc", "--lr_milestones"),
])
def test_bad_flags_fail_before_any_work(tmp_path, flag, message):
    out = tmp_path / "run"
    with pytest.raises(flags.Error, match=".*" + message.replace("[", r"\[").replace("]", r"\]")):
        train.run_in_process(["--method=st", flag, f"--output_dir={out}"])
    assert not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["--method=natural", "--beta=3"], "--beta does not apply to method 'natural'"),
    (["--method=st", "--trades_reg=js"], "--trades_reg does not apply to method 'st'"),
    (["--method=st", "--init=none"], "init must be one of"),
    ([], "--method is required"),
])
def test_method_flag_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert train.run_in_process(argv + [f"--output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_alias_refuses_another_method(tmp_path, capsys):
    assert train.run_in_process(["--method=trades", f"--output_dir={tmp_path}/r"],
                                default_method="st") == 2
    assert "given to the st trainer" in capsys.readouterr().err


QUICK = ["--dataset=cifar10_mini", "--arch=small_cnn", "--epochs=3", "--steps_per_epoch=2",
         "--batch_size=32", "--steps=2", "--eval_examples=64", "--final_examples=64",
         "--final_attacks=clean,fgsm,pgd5"]


def _rows(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # a kill/resume loop
def test_trainer_resumes_after_kill_and_matches_an_uninterrupted_run(tmp_path, capsys):
    straight = tmp_path / "straight"
    assert train.run_in_process(["--method=st"] + QUICK + [f"--output_dir={straight}"]) == 0
    for name in ("flags.txt", "metrics.csv", "best.weights.h5", "evaluation.json",
                 "export/1/saved_model.pb", "export/1/model_card.json"):
        assert (straight / name).exists(), name
    assert "| pgd5" in capsys.readouterr().out

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "trainers.st"] + QUICK + [f"--output_dir={killed}"],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / "checkpoints" / "checkpoint").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoints" / "checkpoint").exists()
    assert not (killed / "evaluation.json").exists()
    assert train.run_in_process(QUICK + [f"--output_dir={killed}"], default_method="st") == 0
    assert "resumed after epoch" in capsys.readouterr().out
    a, b = _rows(straight), _rows(killed)
    assert [row["epoch"] for row in b] == ["1", "2", "3"]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "test_clean_acc", "test_pgd20_acc"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-4, abs=1e-5), key

    # The flags file re-runs the same configuration.
    flagfile = (straight / "flags.txt").read_text()
    assert "--beta=6.0" in flagfile and "--dataset=cifar10_mini" in flagfile
    assert "--method=st" in flagfile
    # ... and rerunning it on the finished run trains nothing and evaluates the same export.
    assert train.run_in_process([f"--flagfile={straight / 'flags.txt'}"], default_method="st") == 0
    assert "resumed after epoch 3" in capsys.readouterr().out
    assert [row["epoch"] for row in _rows(straight)] == ["1", "2", "3"]

    # export.evaluate reads the SavedModel and writes the JSON report.
    report = tmp_path / "eval.json"
    r = run_module(["export.evaluate", f"--saved_model={straight / 'export'}",
                    "--dataset=cifar10_mini", "--attacks=clean,pgd5", "--examples=64",
                    f"--output={report}"])
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(report.read_text())
    assert rep["num_examples"] == 64
    assert rep["attacks"]["pgd5"]["accuracy"] <= rep["attacks"]["clean"]["accuracy"]
    card = json.loads((straight / "export" / "1" / "model_card.json").read_text())
    assert card["method"] == "st" and card["arch"] == "small_cnn"


def test_missing_tfds_dataset_fails_with_instructions_and_writes_nothing(tmp_path, capsys,
                                                                         monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "empty_tfds"))
    assert train.run_in_process(["--method=st", "--dataset=svhn", f"--output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "svhn_cropped" in err and "--data_dir" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow  # subprocesses
def test_export_evaluate_rejects_missing_model_bad_epsilon_and_split_cpu_across_hosts(tmp_path):
    r = run_module(["export.evaluate", f"--saved_model={tmp_path / 'nope'}"], timeout=120)
    assert r.returncode != 0 and "no SavedModel" in r.stderr
    r = run_module(["export.evaluate", f"--saved_model={tmp_path}", "--epsilon=8"], timeout=120)
    assert r.returncode != 0 and "[0, 1]" in r.stderr
    r = run_module(["export.evaluate", f"--saved_model={tmp_path}", "--strategy=multi_worker",
                    "--cpu_devices=2"], timeout=120)
    assert r.returncode == 2 and "--cpu_devices splits one host's CPU" in r.stderr


SMALL = ["--method=madry", "--arch=small_cnn", "--epochs=1", "--steps_per_epoch=1",
         "--batch_size=16", "--steps=1", "--eval_examples=16", "--final_attacks="]


@pytest.mark.slow  # whole trainers
def test_run_directory_is_owned_by_one_run_with_one_set_of_settings(tmp_path, capsys):
    from tf_st.training.rundir import RunDirectory

    out = tmp_path / "run"
    assert train.run_in_process(SMALL + [f"--output_dir={out}"]) == 0
    flags_before = (out / "flags.txt").read_text()
    metrics_before = (out / "metrics.csv").read_text()
    capsys.readouterr()
    # Another trainer holds the directory: refused, nothing touched.
    with RunDirectory(str(out), json.loads((out / "settings.json").read_text())):
        assert train.run_in_process(SMALL + [f"--output_dir={out}"]) == 2
    assert "is in use by pid" in capsys.readouterr().err
    # Other settings: refused with the differing settings listed, nothing touched.
    assert train.run_in_process(SMALL + ["--clamp_start=false", "--lr=0.01",
                                         f"--output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "hparams.clamp_start: True -> False" in err and "lr: 0.05 -> 0.01" in err
    assert (out / "flags.txt").read_text() == flags_before
    assert (out / "metrics.csv").read_text() == metrics_before
    # Report-only settings may change; --overwrite starts the other run afresh.
    assert train.run_in_process(SMALL + ["--final_attacks=clean", f"--output_dir={out}"]) == 0
    assert "resumed after epoch 1" in capsys.readouterr().out
    assert train.run_in_process(SMALL + ["--lr=0.01", "--overwrite", f"--output_dir={out}"]) == 0
    assert "--lr=0.01" in (out / "flags.txt").read_text()
    assert "resumed" not in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert train.run_in_process(SMALL + [f"--output_dir={tmp_path / 'file'}"]) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.slow  # a whole trainer
def test_holdout_selection_is_balanced_disjoint_and_recorded(tmp_path, capsys):
    import numpy as np

    from tf_st import data
    from tf_st.data import rst
    from trainers import runner

    full = data.load("cifar10_mini", "train")
    train_part, held = runner.holdout(full, 105)
    xh, yh = rst.split_arrays(held)
    xt, _ = rst.split_arrays(train_part)
    assert np.bincount(yh, minlength=10).tolist() == [11] * 5 + [10] * 5
    assert train_part.num_examples == 3000 - 105
    seen = {x.tobytes() for x in xt}
    assert not any(x.tobytes() in seen for x in xh)  # never trained on
    out = tmp_path / "run"
    assert train.run_in_process(SMALL + ["--selection_split=holdout", "--holdout_examples=50",
                                         f"--output_dir={out}"]) == 0
    card = json.loads((out / "export" / "1" / "model_card.json").read_text())
    assert "class-balanced holdout of 50 training examples" in card["selection"]
    # The per-epoch numbers are the holdout's and say so (they were labelled "test").
    assert card["selection_split"] == "holdout"
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"holdout_clean_acc", "holdout_pgd20_acc"} <= set(header)
    assert not [c for c in header if c.startswith("test_")]
    row = dict(zip(header, (out / "metrics.csv").read_text().splitlines()[
        card["best_epoch"]].split(",")))
    assert card["clean_acc"] == pytest.approx(float(row["holdout_clean_acc"]))
    assert "| holdout clean" in capsys.readouterr().out


def test_degenerate_attack_settings_warn(tmp_path, capsys):
    from trainers import runner
    runner.resolve(runner.Settings(method="trades", hparams={"steps": 0},
                                   output_dir=str(tmp_path)))
    assert "will train without adversarial perturbation" in capsys.readouterr().err
    runner.resolve(runner.Settings(method="natural", hparams={"steps": 0},
                                   output_dir=str(tmp_path)))
    assert "warning" not in capsys.readouterr().err


@pytest.mark.slow  # subprocesses
def test_deterministic_runs_are_bit_identical(tmp_path):
    import numpy as np

    weights = []
    for name in ("a", "b"):
        out = tmp_path / name
        r = run_module(["trainers.madry", "--deterministic", "--arch=small_cnn", "--epochs=2",
                        "--steps_per_epoch=2", "--batch_size=32", "--steps=2",
                        "--eval_examples=32", "--final_attacks=", f"--output_dir={out}"])
        assert r.returncode == 0, r.stderr[-2000:]
        assert "warning" not in r.stdout + r.stderr
        import h5py
        with h5py.File(out / "best.weights.h5") as f:
            arrays = []
            f.visititems(lambda k, v: arrays.append(v[()]) if hasattr(v, "shape") else None)
        weights.append(arrays)
    assert all(np.array_equal(a, b) for a, b in zip(*weights)) and len(weights[0]) > 2


@pytest.mark.slow  # a subprocess
def test_two_cpu_devices_run_mirrored(tmp_path):
    """--cpu_devices=2 trains under MirroredStrategy with the global batch split in two.
    (Equality with one device is tested per method on BN-free models in
    test_methods_baselines; with BatchNorm each replica normalises with its own half
    batch's statistics, so the runs differ by design.)"""
    out = tmp_path / "d2"
    r = run_module(["trainers.trades", "--cpu_devices=2", "--arch=small_cnn", "--epochs=1",
                    "--steps_per_epoch=2", "--batch_size=32", "--steps=2", "--eval_examples=32",
                    "--final_attacks=", f"--output_dir={out}"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "MirroredStrategy, 2 replica(s)" in r.stdout
    assert float(_rows(out)[0]["train_loss"]) > 0
