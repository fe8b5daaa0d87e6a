"""Evaluation sharded over 2 logical CPU devices (MirroredStrategy) gives the per-example
results of one device: the per-batch attacks and AutoAttack (all four components).  The
evaluation CLI with ``--cpu_devices=2`` and over two worker processes is tested end to end
in ``tests/test_multi_worker.py``."""

import pytest
import json
import os
import subprocess
import sys

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.helpers import sharded_evaluation_flags
two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print("RESULT" + json.dumps(sharded_evaluation_flags(two, [("one", None), ("two", two)])))
"""


def test_two_devices_give_the_per_example_results_of_one():
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT"):])
    assert out["one"] == out["two"]
    one = out["one"]
    # The attacks did something: some clean-correct points fall, robust <= clean.
    assert sum(one["pgd5"]) < sum(one["clean"]) and sum(one["aa"]) <= sum(one["aa_clean"])
    assert all(a <= c for a, c in zip(one["aa"], one["aa_clean"]))
