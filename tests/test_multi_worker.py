"""MultiWorkerMirroredStrategy: two worker processes on localhost ports (TF_CONFIG), one
replica each, train ST for a few steps and end with the same weights as one process with
the same global batch (BatchNorm statistics synchronised, float64)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

JOB = r"""
import json, sys
import tensorflow as tf
from tf_st.training.strategy import distribute_batches, make_strategy
# Before anything else runs an op: collectives are configured at program start.
strategy = make_strategy(sys.argv[1])
import numpy as np
import keras
from tf_st import methods, models
from tests.helpers import small_bn_model

keras.config.set_floatx("float64")
rng = np.random.RandomState(0)
x = rng.uniform(0, 1, (24, 4, 4, 2))
y = np.arange(24) % 3
with strategy.scope():
    keras.utils.set_random_seed(1)
    model = small_bn_model(bn_seed=1)
    models.set_batchnorm(model, synchronized=True)
    method = methods.build("st", model, steps=3)
    method.compile(optimizer=keras.optimizers.SGD(0.5))
ds = distribute_batches(strategy, tf.data.Dataset.from_tensor_slices((x, y)).batch(8), 8)
method.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)
print("RESULT" + json.dumps([v.numpy().tolist() for v in model.weights]))
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(tf_config=None):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _weights(stdout):
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT")]
    return [np.array(w) for w in json.loads(lines[-1][len("RESULT"):])] if lines else None


def test_two_workers_equal_one_process():
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = [subprocess.Popen([sys.executable, "-c", JOB, "multi_worker"], cwd=ROOT,
                              env=_env({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=500) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    single = subprocess.run([sys.executable, "-c", JOB, "default"], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    w0, w1, ws = _weights(outs[0][0]), _weights(outs[1][0]), _weights(single.stdout)
    for a, b, c in zip(w0, w1, ws):
        np.testing.assert_array_equal(a, b)  # the workers agree exactly
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-10)  # and equal one process


TRAIN_ARGS = ["--arch=small_cnn", "--dataset=cifar10_mini", "--train_examples=64",
              "--batch_size=16", "--epochs=2", "--steps_per_epoch=2", "--eval_examples=32",
              "--final_attacks=", "--steps=2", "--seed=1", "--sync_batchnorm",
              "--deterministic"]


def _h5_arrays(path):
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def _trainer_workers(out_dir, kill_chief_at=None):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = _env({"cluster": cluster, "task": {"type": "worker", "index": i}})
        if i == 0 and kill_chief_at:
            env["TF_ST_KILL_AT"] = kill_chief_at
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "trainers.st", *TRAIN_ARGS, "--strategy=multi_worker",
             f"--output_dir={out_dir}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    return procs


def _run_workers(procs):
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


def test_trainer_two_workers_chief_writes_and_resume_after_kill(tmp_path):
    """``trainers.st --strategy=multi_worker --deterministic`` on two localhost workers:
    the chief is killed (SIGKILL) right after its epoch-1 checkpoint, the other worker
    with it; both rerun, resume after epoch 1 and end with the weights, bit for bit, of
    an uninterrupted two-worker run.  Only the chief writes a run directory.  (That two
    workers compute the one-process step is test_two_workers_equal_one_process, in
    float64: in float32 ST's sign steps amplify the different summation order.)"""
    _run_workers(_trainer_workers(tmp_path / "uninterrupted"))

    run_dir = tmp_path / "killed"
    chief, other = _trainer_workers(run_dir, kill_chief_at="checkpoint:1")
    chief.wait(timeout=600)
    assert chief.returncode == -9, chief.stdout.read()[-3000:]  # the preemption
    other.kill()  # it waits for the dead chief's collectives
    other.wait()
    assert (run_dir / "checkpoints").is_dir()

    outs = _run_workers(_trainer_workers(run_dir))
    assert all("resumed after epoch 1" in out for out in outs), outs[0][-2000:]
    assert "private run directory" in outs[1] and "private run directory" not in outs[0]
    assert sorted(os.listdir(tmp_path)) == ["killed", "uninterrupted"]
    resumed = _h5_arrays(run_dir / "best.weights.h5")
    reference = _h5_arrays(tmp_path / "uninterrupted" / "best.weights.h5")
    assert resumed.keys() == reference.keys() and resumed
    for name in resumed:
        np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)
