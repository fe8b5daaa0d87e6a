"""Kills at the worst moments rather than at random ones: ``TF_ST_KILL_AT`` (see
``tf_st.fileio.fault_point``) makes the trainer SIGKILL itself just before the rename of
a best-weights write, of the export directory and of the evaluation report, and just
after a checkpoint save; each such run is followed by the same command without the fault
until it finishes.  In deterministic mode the outcome equals an uninterrupted run."""

import csv
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.reliability.relaunch import ENV, ROOT
from tests.reliability.test_kill_resume import ARGS, _weights

pytestmark = pytest.mark.slow

# (fault point, occurrence), aimed at every write of an epoch's commit and of the end of
# the run: epoch 2's staged best weights (before the checkpoint), its metrics row, its
# checkpoint (just after the save, before the staged weights are renamed into place),
# the rename of the 2nd best weights into place, then the export's and the final
# report's renames.
FAULTS = [("best.pending", 2), ("metrics.csv", 2), ("checkpoint", 2), ("best.weights.h5", 2),
          ("write:export/", 1), ("evaluation.json", 1),
          # the same points at the first and the last epoch
          ("metrics.csv", 1), ("checkpoint", 3)]
# Columns that hold wall-clock times, which differ between any two runs.
TIMES = ("train_seconds", "eval_seconds")


def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in TIMES} for r in csv.DictReader(f)]


def _run(out, fault=None):
    env = dict(ENV)
    if fault:
        env["TF_ST_KILL_AT"] = f"{fault[0]}:{fault[1]}"
    return subprocess.run([sys.executable, "-m", "trainers.trades"] + ARGS
                          + [f"--output_dir={out}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    r = _run(out)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.mark.parametrize("fault", FAULTS, ids=[f"{f[0]}:{f[1]}" for f in FAULTS])
def test_kill_at_a_write_then_rerun_equals_an_uninterrupted_run(tmp_path, straight, fault):
    killed = _run(tmp_path, fault)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    assert not (tmp_path / "evaluation.json").exists()  # the kill came before the end
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = _weights(straight / "best.weights.h5"), _weights(tmp_path / "best.weights.h5")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    ra = json.loads((straight / "evaluation.json").read_text())
    rb = json.loads((tmp_path / "evaluation.json").read_text())
    assert rb["partial"] is False
    assert ra["attacks"]["pgd3"]["accuracy"] == rb["attacks"]["pgd3"]["accuracy"]
    assert sorted(os.listdir(tmp_path / "export")) == sorted(os.listdir(straight / "export"))
    # Every epoch's metrics row, once, equal to the uninterrupted run's; the card the same.
    assert _metrics(tmp_path) == _metrics(straight)
    ca = json.loads((straight / "export" / "1" / "model_card.json").read_text())
    cb = json.loads((tmp_path / "export" / "1" / "model_card.json").read_text())
    assert all(math.isfinite(cb[k]) for k in ("clean_acc", "pgd20_acc"))
    for key in ("best_epoch", "clean_acc", "pgd20_acc"):
        assert ca[key] == cb[key], key
    leftovers = [n for d in (tmp_path, tmp_path / "export") for n in os.listdir(d)
                 if n.startswith(".tmp-") or ".tmp." in n or ".pending-" in n]
    assert not leftovers
