"""Kills at the worst moments rather than at random ones: ``TF_ST_KILL_AT`` (see
``tf_st.fileio.fault_point``) makes the trainer SIGKILL itself just before the rename of
a best-weights write, of the export directory and of the evaluation report, and just
after a checkpoint save; each such run is followed by the same command without the fault
until it finishes.  In deterministic mode the outcome equals an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.reliability.relaunch import ENV, ROOT
from tests.reliability.test_kill_resume import ARGS, _weights

pytestmark = pytest.mark.slow

# (fault point, occurrence): the 2nd best-weights write (epoch 2's, an improvement or a
# tie), the 2nd checkpoint, the export's rename, the final report's rename.
FAULTS = [("best.weights.h5", 2), ("checkpoint", 2), ("write:export/", 1),
          ("evaluation.json", 1)]


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


@pytest.mark.parametrize("fault", FAULTS, ids=[f[0] for f in FAULTS])
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
    leftovers = [n for d in (tmp_path, tmp_path / "export") for n in os.listdir(d)
                 if n.startswith(".tmp-") or ".tmp." in n]
    assert not leftovers
