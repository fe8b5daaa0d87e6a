"""MultiWorkerMirroredStrategy: two worker processes on localhost ports (TF_CONFIG), one
replica each, train ST for a few steps and end with the same weights as one process with
the same global batch (BatchNorm statistics synchronised, float64); the trainer's chief
writes and all workers resume after a kill; evaluation sharded over two workers (API and
CLI) gives the per-example results of one device."""

import pytest
import json
import os
import socket
import subprocess
import sys

import numpy as np

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

JOB = r"""
import json, sys
import tensorflow as tf
from tf_st.distribute import distribute_batches, make_strategy
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


def _launch_workers(args, chief_env=None):
    """``args`` started as two localhost workers (TF_CONFIG on free ports), output and
    errors merged; ``chief_env`` is added to worker 0's environment."""
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = _env({"cluster": cluster, "task": {"type": "worker", "index": i}})
        if i == 0 and chief_env:
            env.update(chief_env)
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return procs


def _trainer_workers(out_dir, kill_chief_at=None):
    return _launch_workers(
        [sys.executable, "-m", "trainers.st", *TRAIN_ARGS, "--strategy=multi_worker",
         f"--output_dir={out_dir}"],
        chief_env={"TF_ST_KILL_AT": kill_chief_at} if kill_chief_at else None)


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


EVAL_JOB = r"""
import json
from tf_st.distribute import make_strategy
strategy = make_strategy("multi_worker")  # before any op runs
from tests.helpers import sharded_evaluation_flags
print("RESULT" + json.dumps(sharded_evaluation_flags(
    strategy, [("one", None), ("workers", strategy)])))
"""


def _workers(args):
    """Runs ``args`` as two localhost workers; their outputs (each must exit 0)."""
    return _run_workers(_launch_workers(args))


def test_evaluation_sharded_over_two_workers_equals_one_device():
    """Per-batch attacks and all four AutoAttack components, sharded over two worker
    processes (one replica each; the 5 batches of 8 do not split evenly): both workers
    return every example's result, equal to one device's in the same process."""
    outs = _workers([sys.executable, "-c", EVAL_JOB])
    results = [json.loads([ln for ln in out.splitlines() if ln.startswith("RESULT")][-1][6:])
               for out in outs]
    assert results[0] == results[1]
    one, workers = results[0]["one"], results[0]["workers"]
    assert one == workers
    assert sum(one["pgd5"]) < sum(one["clean"]) and 0 < sum(one["aa"]) < sum(one["aa_clean"])


def _nearest_mean_classifier(x, y, classes=10):
    """A linear classifier scoring ``2 x.m_c - |m_c|^2`` (nearest class mean of the
    evaluated images themselves, right on most of them), and how many of ``x`` it keeps
    right at L-inf radius ``eps`` within [0, 1] (closed form: against each class the
    worst perturbation puts every pixel at the end of its interval that lowers the
    margin most)."""
    import keras
    flat = x.reshape(len(x), -1).astype(np.float64)
    means = np.stack([flat[y == c].mean(0) if (y == c).any() else np.zeros(flat.shape[1])
                      for c in range(classes)])
    w, b = 2 * means.T, -(means ** 2).sum(1)
    inp = keras.Input(x.shape[1:])
    dense = keras.layers.Dense(classes)
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)))
    dense.set_weights([w.astype(np.float32), b.astype(np.float32)])
    z = flat @ w + b

    def robust(eps):
        count = 0
        for i in range(len(x)):
            lo, hi = np.maximum(-eps, -flat[i]), np.minimum(eps, 1 - flat[i])  # in [0, 1]
            worst = [z[i, y[i]] - z[i, c] + np.minimum(d * lo, d * hi).sum()
                     for c in range(classes) if c != y[i] for d in [w[:, y[i]] - w[:, c]]]
            count += int(min(worst) > 0)
        return count
    return model, robust


def _per_example(report):
    out = {k: v["correct"] for k, v in report["attacks"].items()}
    out["aa"] = report["autoattack"]["robust_flags"]
    return out


def test_evaluation_cli_on_two_workers_writes_the_one_device_report(tmp_path):
    """``python -m tf_st.evaluation --strategy=multi_worker`` on two localhost workers: the
    chief writes the report and the AutoAttack state, the other worker writes nothing;
    the per-example results equal a one-device run and a 2-logical-device run
    (MirroredStrategy) and AutoAttack's the closed form of the linear model; rerun with
    the finished state file, both workers skip every AutoAttack stage and the chief
    rewrites the same report."""
    from export.saved_model import export_classifier
    from tf_st import data

    x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=40)
    model, robust = _nearest_mean_classifier(x, y)
    export_classifier(model, str(tmp_path / "model"))
    args = [sys.executable, "-m", "tf_st.evaluation", f"--saved_model={tmp_path / 'model'}",
            "--dataset=cifar10_mini", "--attacks=clean,fgsm,pgd5,aa", "--examples=40",
            "--batch_size=8", "--epsilon=0.05"]
    reports = {}
    for name, extra in (("one", ["--strategy=default"]), ("mirrored", ["--cpu_devices=2"])):
        r = subprocess.run(args + extra + [f"--output={tmp_path / name}.json"], cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
    state = tmp_path / "aa_state.json"
    workers = args + ["--strategy=multi_worker", f"--output={tmp_path / 'workers.json'}",
                      f"--state_file={state}"]
    outs = _workers(workers)
    assert "report written to" in outs[0] and "worker 1 of 2 done" in outs[1]
    reports["workers"] = json.loads((tmp_path / "workers.json").read_text())
    assert sorted(os.listdir(tmp_path)) == ["aa_state.json", "mirrored.json", "model", "one.json",
                                            "workers.json"]
    one = _per_example(reports["one"])
    assert _per_example(reports["mirrored"]) == one and _per_example(reports["workers"]) == one
    assert sum(one["clean"]) == robust(0.0) and sum(one["aa"]) == robust(0.05) > 0
    assert sum(one["aa"]) < sum(one["fgsm"]) < sum(one["clean"])

    (tmp_path / "workers.json").unlink()
    outs = _workers(workers)
    assert all("(finished earlier)" in out for out in outs)
    assert _per_example(json.loads((tmp_path / "workers.json").read_text())) == one
