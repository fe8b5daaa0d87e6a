r"""The GPU check: one command that measures what mixed precision and several GPUs give.

  python -m benchmarks.gpu_check --output=runs/gpu_check/gpu_check.json
  python -m benchmarks.gpu_check --tiny --output=/tmp/gpu_check.json   # CPU smoke run

Measures, and writes to ``--output`` (JSON, written atomically) and prints as a table:
  devices      the physical and logical devices TensorFlow sees (and the GPUs' names);
  throughput   ST and TRADES training-step images/s (``--arch``, ``--batch_size``, K =
               ``--inner_steps``) in float32, mixed precision, and mixed precision with
               the step XLA-compiled (the trainers' ``--jit_compile``);
  mixed_vs_float32  per method, the mixed step's loss and parameter gradients against
               the float32 step on the same weights, batch and adversarial points
               (relative differences; ``tests/test_mixed_precision.py`` pins them against
               float64 on a small CNN);
  mirrored     the ST float32 step under MirroredStrategy over every visible GPU against
               one GPU (same global batch, ``--sync_batchnorm``);
  autoattack   AutoAttack ``standard`` on ``--examples`` test images of a small model
               (``--aa_arch``, random weights, labels = its own predictions so that every
               point is attacked), with its time;
  peak_memory  peak GPU memory per GPU (``tf.config.experimental.get_memory_info``);
  paper_scale  one command per CIFAR-10 ResNet-18 row of the ST paper's Table 1 (Vanilla
               AT, TRADES, MART, ST, TRADES+AWP, ST+AWP) with its expected time on one
               such GPU.

The mixed precision is float16 on a GPU (``tf_st.experiment.runner.mixed_policy``).
Without a GPU, float16 rows are recorded as skipped (with the reason) and bfloat16 is
measured as the CPU's stand-in; the JSON says so (``mixed_policy``, ``note``).  Without a
GPU the CPU is split into two logical devices for the MirroredStrategy row.

Expected time of a paper-scale row (benchmarks/flops.py; F = ResNet-18's forward FLOPs
per image, ``forward_flops``):
  FLOPs = E * (50,000 * (c_method(K) + c_awp) + N_eval * c(PGD-20)) + 10,000 * c_final
  time  = FLOPs * F / R,  R = (measured images/s) * c_measured(K) * F
where c are the per-image step factors of ``flops.FLOP_FACTORS`` / ``AWP_EXTRA`` /
``eval_factor`` (E = 120 epochs, K = 10, per-epoch PGD-20 on the 10,000 test images, the
final attacks clean, FGSM, PGD-20, PGD-100, CW-100), and R the FLOP rate achieved by the
measured step of the same family (ST for the ST rows, TRADES for the others), per
precision.  Evaluation passes are priced at the training step's rate (an estimate).

On one GPU the full check takes a few minutes (budget: under 8).  ``--tiny`` runs the
same code on a CPU in about a minute (small CNN, batch 8, K = 1, one timed step, XLA
for the last method only, a custom AutoAttack of one 2-step APGD on 16 images); the test suite runs it
(tests/test_benchmarks.py), so it cannot rot.  It needs nothing outside the repository:
the images are the bundled ``cifar10_mini`` set unless ``--dataset``/``--data_dir`` name
another.
"""

import os
import sys
import time

from absl import flags


_OUTPUT = flags.DEFINE_string("output", "runs/gpu_check/gpu_check.json",
                              "Where the JSON report goes (written atomically).")
_TINY = flags.DEFINE_boolean("tiny", False, "CPU-sized smoke run: small CNN, batch 8, K=1, "
                             "one timed step, AutoAttack reduced to a 2-step APGD on 16 images.")
_DATASET = flags.DEFINE_string("dataset", "cifar10_mini", "Images for the steps and "
                               "AutoAttack (tf_st.data; the bundled set by default).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data directory of --dataset.")
_ARCH = flags.DEFINE_string("arch", None, "Architecture of the timed steps (default "
                            "resnet18; --tiny: small_cnn).")
_AA_ARCH = flags.DEFINE_string("aa_arch", "small_cnn", "The small model AutoAttack runs on.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Global batch of the timed steps "
                              "(default 128; --tiny: 8).")
_K = flags.DEFINE_integer("inner_steps", None, "Inner iterations K (default 10; --tiny: 1).")
_STEPS = flags.DEFINE_integer("steps", None, "Timed steps per row, after one warm-up step "
                              "(default 5; --tiny: 1).")
_EXAMPLES = flags.DEFINE_integer("examples", None, "AutoAttack images (default 500; "
                                 "--tiny: 16).")
_METHODS = flags.DEFINE_list("methods", ["st", "trades"], "Methods timed.")
_MIXED = flags.DEFINE_enum("mixed_dtype", "auto", ["auto", "float16", "bfloat16"],
                           "Mixed precision measured (auto: float16 on a GPU, bfloat16 "
                           "without one).")

EPSILON = 8 / 255
TRAIN_IMAGES, TEST_IMAGES, PAPER_EPOCHS, PAPER_K = 50_000, 10_000, 120, 10
FINAL_ATTACKS = ("clean", "fgsm", "pgd20", "pgd100", "cw100")
# The CIFAR-10 ResNet-18 rows of the ST paper's Table 1 (Li et al., ICLR 2023):
# (row, trainer module, AWP).  Every row trains 120 epochs at batch 128 (Section 5).
PAPER_ROWS = (("Vanilla AT", "madry", False), ("TRADES", "trades", False),
              ("MART", "mart", False), ("ST", "st", False),
              ("TRADES+AWP", "trades", True), ("ST+AWP", "st", True))


def _settings():
    tiny = _TINY.value

    def pick(flag, full, small):
        return flag.value if flag.value is not None else (small if tiny else full)

    return {"tiny": tiny, "arch": pick(_ARCH, "resnet18", "small_cnn"),
            "batch_size": pick(_BATCH, 128, 8), "inner_steps": pick(_K, 10, 1),
            "timed_steps": pick(_STEPS, 5, 1), "aa_examples": pick(_EXAMPLES, 500, 16),
            "aa_arch": _AA_ARCH.value, "aa_version": "custom" if tiny else "standard",
            "dataset": _DATASET.value, "methods": list(_METHODS.value)}


def _devices(tf):
    gpus = tf.config.list_physical_devices("GPU")
    details = []
    for gpu in gpus:
        try:
            details.append({"device": gpu.name, **{
                k: v for k, v in tf.config.experimental.get_device_details(gpu).items()
                if isinstance(v, (str, int, float, list, tuple))}})
        except Exception as e:  # noqa: BLE001 - details are informative only
            details.append({"device": gpu.name, "error": str(e)})
    return {"physical": [d.name for d in tf.config.list_physical_devices()],
            "logical": [d.name for d in tf.config.list_logical_devices()],
            "gpus": details}


def _batch(s):
    """A fixed training batch of real images (the first ``batch_size`` of the train
    split; repeated when the set is smaller)."""
    import numpy as np

    from tf_st import data
    split = data.load(s["dataset"], "train", data_dir=_DATA_DIR.value)
    x, y = data.as_numpy(split, limit=s["batch_size"])
    reps = -(-s["batch_size"] // len(x))
    x, y = np.concatenate([x] * reps)[:s["batch_size"]], np.concatenate([y] * reps)[:s["batch_size"]]
    return x, y.astype("int64"), split.num_classes


def _build(key, s, policy, num_classes, image_shape, jit_compile=False, strategy=None,
           sync_batchnorm=False):
    import contextlib

    import keras

    from tf_st import methods, models
    from tf_st.training.optim import TorchSGD
    keras.config.set_dtype_policy(policy)
    with strategy.scope() if strategy else contextlib.nullcontext():
        keras.utils.set_random_seed(0)
        net = models.build(s["arch"], num_classes, input_shape=image_shape)
        if sync_batchnorm:
            models.set_batchnorm(net, synchronized=True)
        method = methods.build(key, net, steps=s["inner_steps"], epsilon=EPSILON,
                               step_size=2 / 255)
        method.compile(optimizer=TorchSGD(0.1, momentum=0.9, coupled_weight_decay=5e-4),
                       jit_compile=jit_compile)
    return net, method


def _reset_peak(tf):
    for gpu in tf.config.list_logical_devices("GPU"):
        try:
            tf.config.experimental.reset_memory_stats(gpu.name)
        except (ValueError, RuntimeError):
            pass


def _peak(tf):
    """``{device: peak bytes}`` of every GPU, or None without a GPU."""
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        return None
    return {g.name: int(tf.config.experimental.get_memory_info(g.name)["peak"]) for g in gpus}


def _time_steps(method, x, y, steps):
    """Seconds per step of ``method`` on the batch ``(x, y)``: ``fit`` (which splits the
    global batch across replicas) over ``steps + 1`` steps; the first (tracing) is not
    timed; a batch's end is awaited by reading its loss."""
    import keras
    import tensorflow as tf
    marks = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])
            marks.append(time.perf_counter())

    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    method.fit(ds, steps_per_epoch=steps + 1, epochs=1, verbose=0, shuffle=False,
               callbacks=[Clock()])
    return (marks[-1] - marks[0]) / steps


def _throughput(s, x, y, num_classes, configs, tf):
    rows = []
    for key in s["methods"]:
        for name, policy, jit, skipped in configs:
            row = {"method": key, "config": name, "policy": policy, "jit_compile": jit}
            if jit and s["tiny"] and key != s["methods"][-1]:
                # XLA's compilation dominates a CPU smoke run: one method shows the path.
                skipped = f"--tiny: XLA is timed for {s['methods'][-1]} only"
            if skipped:
                rows.append({**row, "skipped": skipped})
                continue
            try:
                _reset_peak(tf)
                t0 = time.perf_counter()
                _, method = _build(key, s, policy, num_classes, x.shape[1:], jit_compile=jit)
                sec = _time_steps(method, x, y, s["timed_steps"])
                rows.append({**row, "seconds_per_step": sec,
                             "images_per_second": s["batch_size"] / sec,
                             "seconds_with_tracing": time.perf_counter() - t0,
                             "peak_memory_bytes": _peak(tf)})
            except Exception as e:  # noqa: BLE001 - recorded, the check goes on
                rows.append({**row, "skipped": f"failed: {type(e).__name__}: "
                                               f"{' '.join(str(e).split())[:300]}"})
            print(f"  {key} {name}: " + (f"{rows[-1]['images_per_second']:.1f} images/s"
                                         if "images_per_second" in rows[-1]
                                         else rows[-1]["skipped"]), flush=True)
    return rows


def _outer_step(key, s, policy, x, y, num_classes, weights=None, generated=None):
    """Loss and parameter gradients of ``key``'s outer step under ``policy``, from
    ``weights`` (float32 numpy) and the adversarial points ``generated`` (drawn here when
    None)."""
    import numpy as np
    import tensorflow as tf
    net, method = _build(key, s, policy, num_classes, x.shape[1:])
    if weights is not None:
        net.set_weights(weights)
    xt, yt = tf.constant(x), tf.constant(y)
    if generated is None:
        generated = {k: v.numpy() for k, v in method.generate(xt, yt).items()}
    with tf.GradientTape() as tape:
        terms = method.training_loss(xt, yt, {k: tf.constant(v) for k, v in generated.items()})
    grads = tape.gradient(terms["loss"], net.trainable_variables)
    flat = np.concatenate([np.asarray(g, np.float64).ravel() for g in grads])
    return float(terms["loss"]), flat, [w.numpy() for w in net.weights], generated


def _mixed_vs_float32(s, x, y, num_classes, mixed):
    """The mixed step against the float32 step on the same weights, batch and points."""
    import numpy as np
    rows = []
    for key in s["methods"]:
        loss32, g32, weights, generated = _outer_step(key, s, "float32", x, y, num_classes)
        try:
            loss, g, _, _ = _outer_step(key, s, mixed, x, y, num_classes, weights, generated)
        except Exception as e:  # noqa: BLE001 - recorded, the check goes on
            rows.append({"method": key, "policy": mixed,
                         "skipped": f"failed: {type(e).__name__}: {str(e)[:300]}"})
            continue
        rows.append({"method": key, "policy": mixed, "loss_float32": loss32, "loss_mixed": loss,
                     "loss_relative_difference": abs(loss - loss32) / abs(loss32),
                     "gradient_relative_difference":
                         float(np.linalg.norm(g - g32) / np.linalg.norm(g32)),
                     "gradient_cosine": float(np.dot(g, g32) /
                                              (np.linalg.norm(g) * np.linalg.norm(g32)))})
    return rows


def _mirrored(s, x, y, num_classes, tf):
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    out = {"method": "st", "policy": "float32", "sync_batchnorm": True, "devices": devices,
           "global_batch": s["batch_size"]}
    if len(devices) < 2:
        return {**out, "skipped": f"one device visible ({devices}): nothing to mirror"}
    if s["batch_size"] % len(devices):
        return {**out, "skipped": f"batch {s['batch_size']} not divisible by "
                                  f"{len(devices)} replicas"}
    one = tf.distribute.OneDeviceStrategy(devices[0])
    mirrored = tf.distribute.MirroredStrategy(devices)
    rates = {}
    for name, strategy in (("one_device", one), ("mirrored", mirrored)):
        _, method = _build("st", s, "float32", num_classes, x.shape[1:], strategy=strategy,
                           sync_batchnorm=True)
        rates[name] = s["batch_size"] / _time_steps(method, x, y, s["timed_steps"])
        print(f"  st float32 {name}: {rates[name]:.1f} images/s", flush=True)
    return {**out, "replicas": mirrored.num_replicas_in_sync,
            "one_device_images_per_second": rates["one_device"],
            "mirrored_images_per_second": rates["mirrored"],
            "speedup": rates["mirrored"] / rates["one_device"]}


def _autoattack(s, num_classes, tf):
    import keras
    import numpy as np

    from tf_st import data, models
    from tf_st.attacks import specs
    keras.config.set_dtype_policy("float32")
    split = data.load(s["dataset"], "test", data_dir=_DATA_DIR.value)
    x, _ = data.as_numpy(split, limit=s["aa_examples"])
    keras.utils.set_random_seed(0)
    model = models.build(s["aa_arch"], num_classes, input_shape=x.shape[1:])

    def logits_fn(z):
        return model(z, training=False)

    # Random weights: the labels are the model's own predictions, so every point is
    # clean-correct and attacked (a time, not a robustness).
    y = np.argmax(np.concatenate([logits_fn(x[i:i + 500]).numpy()
                                  for i in range(0, len(x), 500)]), 1)
    if s["aa_version"] == "custom":
        spec = specs.AutoAttack(epsilon=EPSILON, version="custom",
                                components=(specs.APGD(steps=2),))
    else:
        spec = specs.AutoAttack(epsilon=EPSILON, version="standard")
    start = time.perf_counter()
    result = spec.evaluate(logits_fn, x, y, seed=0, batch_size=min(500, len(x)),
                           verbose=False, logger=None, return_adversarials=False)
    seconds = time.perf_counter() - start
    return {"arch": s["aa_arch"], "version": s["aa_version"], "examples": len(x),
            "labels": "the model's own predictions (random weights)",
            "seconds": seconds, "clean_accuracy": result.clean_accuracy,
            "robust_accuracy": result.robust_accuracy,
            "attacks": [{"name": a.name, "robust_accuracy": a.robust_accuracy,
                         "seconds": a.seconds} for a in result.attacks]}


def _paper_scale(throughput, mixed, gpu):
    """One command per CIFAR-10 ResNet-18 row of the ST paper's Table 1, with its
    expected time from the measured rates (module docstring)."""
    import keras

    from benchmarks.flops import AWP_EXTRA, FLOP_FACTORS, eval_factor, forward_flops
    from tf_st import models
    keras.config.set_dtype_policy("float32")
    f = forward_flops(models.build("resnet18", 10, input_shape=(32, 32, 3)))
    final = sum(eval_factor(a) for a in FINAL_ATTACKS)
    measured = {(r["method"], r["config"]): r for r in throughput if "images_per_second" in r}
    rows = []
    for label, key, awp in PAPER_ROWS:
        factor = FLOP_FACTORS[key](PAPER_K) + (AWP_EXTRA[key] if awp else 0)
        units = (PAPER_EPOCHS * (TRAIN_IMAGES * factor + TEST_IMAGES * eval_factor("pgd20"))
                 + TEST_IMAGES * final)
        family = "st" if key == "st" else "trades"
        hours = {}
        for config in ("float32", "mixed", "mixed_xla"):
            r = measured.get((family, config))
            if r is None:
                hours[config] = None
                continue
            rate = r["images_per_second"] * FLOP_FACTORS[family](r["inner_steps"]) * f
            hours[config] = units * f / rate / 3600
        flags_ = ["--dataset=cifar10", "--arch=resnet18"] + (["--awp"] if awp else [])
        rows.append({"row": label, "method": key, "awp": awp, "epochs": PAPER_EPOCHS,
                     "command": f"python -m trainers.{key} " + " ".join(flags_),
                     "mixed_command": f"python -m trainers.{key} " + " ".join(
                         flags_ + ["--mixed_precision"]),
                     "flops": units * f, "expected_hours": hours})
    return {"formula": "hours = [E * (50000 * (c_method(K) + c_awp) + 10000 * c(pgd20)) + "
                       "10000 * c_final] * F / (images_per_second * c_measured(K) * F) / "
                       "3600; E = 120, K = 10, c from benchmarks/flops.py",
            "forward_flops_per_image": f, "final_attacks": list(FINAL_ATTACKS),
            "measured_on": gpu or "no GPU: these rates are the CPU's, the hours only show "
                                 "the arithmetic", "mixed_policy": mixed, "rows": rows}


def _table(report):
    lines = ["", "devices: " + ", ".join(report["devices"]["logical"])]
    s = report["settings"]
    lines.append(f"\nthroughput ({s['arch']}, batch {s['batch_size']}, K={s['inner_steps']}, "
                 f"{s['timed_steps']} timed step(s))")
    lines.append("| method | config | policy | XLA | images/s | peak GPU MiB |")
    lines.append("|---|---|---|---|---|---|")
    for r in report["throughput"]:
        peak = r.get("peak_memory_bytes")
        peak = "-" if not peak else f"{max(peak.values()) / 2 ** 20:.0f}"
        ips = f"{r['images_per_second']:.1f}" if "images_per_second" in r else \
            "skipped: " + r["skipped"][:70]
        lines.append(f"| {r['method']} | {r['config']} | {r['policy']} | "
                     f"{'yes' if r['jit_compile'] else 'no'} | {ips} | {peak} |")
    lines.append("\nmixed vs float32 (same weights, batch, adversarial points)")
    lines.append("| method | policy | loss rel. diff | gradient rel. diff | gradient cosine |")
    lines.append("|---|---|---|---|---|")
    for r in report["mixed_vs_float32"]:
        if "skipped" in r:
            lines.append(f"| {r['method']} | {r['policy']} | skipped: {r['skipped'][:60]} | | |")
        else:
            lines.append(f"| {r['method']} | {r['policy']} | {r['loss_relative_difference']:.2e} | "
                         f"{r['gradient_relative_difference']:.2e} | {r['gradient_cosine']:.5f} |")
    m = report["mirrored"]
    lines.append("\nmirrored (st, float32, --sync_batchnorm): " + (
        "skipped: " + m["skipped"] if "skipped" in m else
        f"{m['replicas']} replicas {m['mirrored_images_per_second']:.1f} images/s vs one "
        f"device {m['one_device_images_per_second']:.1f} (x{m['speedup']:.2f})"))
    a = report["autoattack"]
    lines.append(f"autoattack ({a['version']}, {a['arch']}, {a['examples']} images): "
                 f"{a['seconds']:.1f} s, robust {a['robust_accuracy']:.1%}")
    p = report["peak_memory"]
    lines.append("peak memory: " + (", ".join(f"{k} {v / 2 ** 20:.0f} MiB"
                                              for k, v in p["bytes"].items())
                                    if p["bytes"] else f"null ({p['reason']})"))
    ps = report["paper_scale"]
    lines.append(f"\npaper scale (ST paper Table 1, CIFAR-10 ResNet-18; expected hours on "
                 f"{ps['measured_on']})")
    lines.append("| row | command | float32 h | mixed h | mixed+XLA h |")
    lines.append("|---|---|---|---|---|")
    for r in ps["rows"]:
        h = r["expected_hours"]
        cells = " | ".join("-" if h[c] is None else f"{h[c]:.1f}"
                           for c in ("float32", "mixed", "mixed_xla"))
        lines.append(f"| {r['row']} | `{r['command']}` | {cells} |")
    lines.append(f"(mixed: add --mixed_precision; XLA: add --jit_compile)")
    lines.append(f"\n{report['seconds']:.0f} s (" + ", ".join(
        f"{k} {v:.0f} s" for k, v in report["phase_seconds"].items())
        + f"); JSON: {report['output']}")
    return "\n".join(lines)


def main(argv):
    del argv
    started = time.perf_counter()
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        # Two logical CPUs for the MirroredStrategy row (before any op).
        from tf_st.distribute import split_cpu
        split_cpu(2)
    import keras

    from tf_st import provenance
    from tf_st.experiment.runner import mixed_policy
    from tf_st.fileio import atomic_write_json

    s = _settings()
    mixed = mixed_policy(_MIXED.value)
    gpu_name = None
    devices = _devices(tf)
    if devices["gpus"]:
        gpu_name = devices["gpus"][0].get("device_name", devices["gpus"][0]["device"])
    note = None
    if not gpus:
        note = ("no GPU: float16 (the GPU's mixed precision) is skipped; mixed_bfloat16 "
                "is measured as the CPU's stand-in" if mixed == "mixed_bfloat16" else
                "no GPU: mixed float16 measured on the CPU")
    float16_skip = ("no GPU: float16 is the GPU's mixed precision; this CPU measures "
                    f"{mixed} as its stand-in" if not gpus and mixed != "mixed_float16" else None)
    configs = [("float32", "float32", False, None), ("mixed", mixed, False, None),
               ("mixed_xla", mixed, True, None)]
    if float16_skip:
        configs += [("mixed_float16", "mixed_float16", False, float16_skip),
                    ("mixed_float16_xla", "mixed_float16", True, float16_skip)]
    print(f"gpu_check: {', '.join(devices['logical'])}; mixed precision {mixed}", flush=True)
    x, y, num_classes = _batch(s)
    old_policy = keras.config.dtype_policy()
    phases = {}

    def phase(name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        phases[name] = time.perf_counter() - t0
        return out

    try:
        throughput = [{**r, "inner_steps": s["inner_steps"]} for r in phase(
            "throughput", _throughput, s, x, y, num_classes, configs, tf)]
        vs32 = phase("mixed_vs_float32", _mixed_vs_float32, s, x, y, num_classes, mixed)
        mirrored = phase("mirrored", _mirrored, s, x, y, num_classes, tf)
        aa = phase("autoattack", _autoattack, s, num_classes, tf)
        paper = phase("paper_scale", _paper_scale, throughput, mixed, gpu_name)
    finally:
        keras.config.set_dtype_policy(old_policy)
    peak = _peak(tf)
    report = {
        "settings": {**s, "mixed_policy": mixed, "epsilon": EPSILON},
        "note": note, "devices": devices, "throughput": throughput,
        "mixed_vs_float32": vs32, "mirrored": mirrored, "autoattack": aa,
        "peak_memory": {"bytes": peak, "reason": None if peak else
                        "no GPU: tf.config.experimental.get_memory_info has no CPU peak"},
        "paper_scale": paper, "provenance": provenance.environment(),
        "output": os.path.abspath(_OUTPUT.value),
        "seconds": time.perf_counter() - started, "phase_seconds": phases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
    atomic_write_json(_OUTPUT.value, report)
    print(_table(report))
    sys.stdout.flush()


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
