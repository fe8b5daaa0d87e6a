"""Whole-trainer tests: flag validation before any work, resume after a kill, the run
directory contract, and evaluation of the export through ``export.evaluate``."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_module(args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout, **kw)


@pytest.mark.parametrize("flag,message", [
    ("--epsilon=8", "[0, 1]"),
    ("--dataset=imagenet21k", "unknown --dataset"),
    ("--arch=vgg99", "unknown --arch"),
    ("--beta=-1", "--beta must be >= 0"),
    ("--final_attacks=clean,pgd", "unknown attack"),
])
def test_bad_flags_fail_before_any_work(tmp_path, flag, message):
    out = tmp_path / "run"
    r = run_module(["trainers.st", flag, f"--output_dir={out}"], timeout=120)
    assert r.returncode != 0
    assert message in r.stderr + r.stdout
    assert not out.exists()


QUICK = ["--dataset=cifar10_mini", "--arch=small_cnn", "--epochs=3", "--steps_per_epoch=2",
         "--batch_size=32", "--steps=2", "--eval_examples=64", "--final_examples=64",
         "--final_attacks=clean,fgsm,pgd5"]


def _rows(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def test_trainer_resumes_after_kill_and_matches_an_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    r = run_module(["trainers.st"] + QUICK + [f"--output_dir={straight}"])
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("flags.txt", "metrics.csv", "best.weights.h5", "evaluation.json",
                 "export/1/saved_model.pb", "export/1/model_card.json"):
        assert (straight / name).exists(), name
    assert "| pgd5" in r.stdout

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
    r = run_module(["trainers.st"] + QUICK + [f"--output_dir={killed}"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed after epoch" in r.stdout
    a, b = _rows(straight), _rows(killed)
    assert [row["epoch"] for row in b] == ["1", "2", "3"]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "test_clean_acc", "test_pgd20_acc"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-4, abs=1e-5), key

    # The flags file re-runs the same configuration.
    flagfile = (straight / "flags.txt").read_text()
    assert "--beta=6.0" in flagfile and "--dataset=cifar10_mini" in flagfile

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


def test_missing_tfds_dataset_fails_with_instructions_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    env = {**ENV, "TFDS_DATA_DIR": str(tmp_path / "empty_tfds")}
    r = subprocess.run([sys.executable, "-m", "trainers.st", "--dataset=svhn",
                        f"--output_dir={out}"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2
    assert "svhn_cropped" in r.stderr and "--data_dir" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_export_evaluate_rejects_missing_model_and_bad_epsilon(tmp_path):
    r = run_module(["export.evaluate", f"--saved_model={tmp_path / 'nope'}"], timeout=120)
    assert r.returncode != 0 and "no SavedModel" in r.stderr
    r = run_module(["export.evaluate", f"--saved_model={tmp_path}", "--epsilon=8"], timeout=120)
    assert r.returncode != 0 and "[0, 1]" in r.stderr
