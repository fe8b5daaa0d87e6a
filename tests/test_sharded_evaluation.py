"""Evaluation sharded over 2 logical CPU devices (MirroredStrategy) gives the per-example
results of one device: the per-batch attacks and AutoAttack (all four components).  The
evaluation CLI with ``--cpu_devices=2`` and over two worker processes is tested end to end
in ``tests/test_multi_worker.py``."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from tf_st.attacks import autoattack as aa
from tf_st.evaluation import evaluate

two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with two.scope():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
rng = np.random.default_rng(3)
x = rng.uniform(0, 1, (37, 8, 8, 3)).astype(np.float32)
y = model(x).numpy().argmax(1)
y[::4] = (y[::4] + 1) % 10  # some clean mistakes too
fn = lambda t: model(t)
out = {}
for name, strategy in (("one", None), ("two", two)):
    res = evaluate(fn, (x, y), ["clean", "fgsm", "pgd5", "cw5"], epsilon=8 / 255,
                   batch_size=8, seed=1, verbose=False, strategy=strategy)
    out[name] = {k: v.correct.astype(int).tolist() for k, v in res.attacks.items()}
    r = aa.evaluate(fn, x, y, epsilon=8 / 255, version="custom", seed=0, batch_size=8,
                    attacks=(aa.APGD(steps=4), aa.APGDT(steps=4, targets=2),
                             aa.FABT(steps=4, targets=2), aa.Square(steps=20)),
                    verbose=False, checks=False, strategy=strategy)
    out[name]["aa"] = r.robust_flags.astype(int).tolist()
    out[name]["aa_clean"] = r.clean_flags.astype(int).tolist()
print("RESULT" + json.dumps(out))
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
