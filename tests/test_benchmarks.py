"""Benchmark helpers: the comparison report is rebuilt from results.json exactly as the
full run writes it; op_profile's trace arithmetic; the --tf_options parser; onednn_kernels' reading of oneDNN's verbose lines."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _row(method, clean, pgd, aa, train_s):
    return {"method": method, "clean_acc": clean, "pgd20_acc": pgd, "cw20_acc": pgd - 0.01,
            "aa_acc": aa, "aa_seconds": 71.6, "best_epoch": 2, "last_epoch_clean_acc": clean,
            "last_epoch_pgd20_acc": pgd, "train_seconds": train_s, "final_eval_seconds": 3.04,
            "attack_steps": 0 if method == "natural" else 10}


@pytest.mark.slow  # a subprocess
def test_report_only_rewrites_table_and_plot(tmp_path):
    """The AutoAttack count and the protocol come from results.json, not from flags the
    report need not repeat (a report used to say "AA (0 imgs)" and overwrite the
    recorded protocol with this command's defaults)."""
    rows = [_row("natural", 0.436, 0.029, 0.0, 25.3), _row("st", 0.342, 0.211, 0.185, 600.5)]
    for r in rows:
        r["aa_examples"] = 200
    with open(tmp_path / "results.json", "w") as f:
        json.dump({"protocol": "p; seed 7", "rows": rows}, f)
    subprocess.run([sys.executable, "-m", "benchmarks.compare_methods", "--report_only",
                    f"--output_dir={tmp_path}", "--data_dir=/nonexistent"],  # needs no data
                   cwd=ROOT, check=True, capture_output=True)
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert lines[0] == "Protocol: p; seed 7"
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[:5] == ["method", "clean", "PGD-20", "CW-20", "AA (200 imgs)"]
    assert header[-1] == "AA s"
    st = [c.strip() for c in lines[-1].strip("|").split("|")]
    assert st == ["st", "34.2%", "21.1%", "20.1%", "18.5%", "2", "34.2%", "21.1%", "10",
                  "600", "3", "72"]
    assert (tmp_path / "clean_vs_robust.png").stat().st_size > 1000
    saved = json.load(open(tmp_path / "results.json"))
    assert saved == {"protocol": "p; seed 7", "rows": rows}


@pytest.mark.slow  # subprocesses
def test_compare_methods_appends_logs_and_refuses_a_foreign_protocol(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "benchmarks.compare_methods", f"--output_dir={tmp_path}",
         f"--data_dir={data}", *a], cwd=ROOT, capture_output=True, text=True, timeout=300)
    # A failing entry (no such trainer), twice: the second run's log keeps the first's.
    for _ in range(2):
        r = run("--methods=no_such_method")
        assert r.returncode != 0 and "no_such_method failed" in r.stderr
    log = (tmp_path / "no_such_method" / "log.txt").read_text()
    assert log.count("=== ") == 2 and log.count("No module named trainers.no_such_method") == 2
    # --append under another protocol (here another seed) fails before any work.
    with open(tmp_path / "results.json", "w") as f:
        json.dump({"protocol": "another protocol; seed 9", "rows": []}, f)
    r = run("--methods=no_such_method", "--append")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error: --append to")
    assert "another protocol; seed 9" in r.stderr
    assert (tmp_path / "no_such_method" / "log.txt").read_text() == log


def test_op_profile_self_times_subtract_nested_ops(tmp_path):
    """benchmarks.op_profile reads the profiler's XSpace (benchmarks.profile_trace): an
    op's self time is its duration minus the ops nested in it, loop/call ops are dropped,
    the executor's own events (no op type) and other threads are ignored."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from benchmarks.profile_trace import op_self_times
    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    kinds = {1: ("while:While", "While"), 2: ("a/conv:Conv2D", "Conv2D"),
             3: ("a/relu:Relu", "Relu"), 4: ("ExecutorState::Process", ""),
             5: ("b/conv:Conv2D", "Conv2D")}
    for i, (name, display) in kinds.items():
        plane.event_metadata[i].id = i
        plane.event_metadata[i].name = name
        plane.event_metadata[i].display_name = display
    ms = 10 ** 9  # picoseconds
    compute = plane.lines.add(name="tf_Compute/1")
    for meta, start, length in ((4, 0, 100), (1, 0, 50), (2, 5, 20), (3, 30, 10), (2, 60, 30)):
        compute.events.add(metadata_id=meta, offset_ps=start * ms, duration_ps=length * ms)
    other = plane.lines.add(name="tf_numa_-1_Eigen/1")
    other.events.add(metadata_id=5, offset_ps=0, duration_ps=1000 * ms)
    path = tmp_path / "t.xplane.pb"
    path.write_bytes(space.SerializeToString())
    times = op_self_times(str(path))
    assert set(times) == {"Conv2D", "Relu"}
    assert times["Conv2D"][0] == 2 and abs(times["Conv2D"][1] - 0.050) < 1e-12
    assert times["Relu"][0] == 1 and abs(times["Relu"][1] - 0.010) < 1e-12


def test_benchmark_options_are_key_value():
    from benchmarks.tf_step import parse_options
    assert parse_options(["fold_bn=true", "group_forwards=false", "beta=3"]) == {
        "fold_bn": True, "group_forwards": False, "beta": "3"}
    with pytest.raises(ValueError, match="key=value"):
        parse_options(["fold_bn"])


_VERBOSE = """onednn_verbose,v1,info,oneDNN v3.7.1
onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx512_core,forward_training,src:f32::blocked:acdb::f0,,alg:convolution_direct,mb8_ic64oc64_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1,99.0
=== onednn_kernels: step begins ===
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,src:f32::blocked:acdb::f0 wei:f32:a:blocked:Acdb32a::f0,attr-scratchpad:user,alg:convolution_direct,mb64_ic64oc64_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1,20.0
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,src:f32::blocked:acdb::f0,,alg:convolution_direct,mb32_ic64oc64_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1,12.0
onednn_verbose,v1,primitive,exec,cpu,convolution,brgconv_strided:avx512_core,backward_data,src:f32::blocked:acdb::f0,,alg:convolution_direct,mb32_ic64oc128_ih34oh16kh3sh2dh0ph0_iw34ow16kw3sw2dw0pw0,4.0
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:cdba::f0 dst:f32::blocked:Acdb32a::f0,,,64x64x3x3,0.5
onednn_verbose,v1,primitive,create:cache_hit,cpu,convolution,jit:avx512_core,forward_training,src:f32,,,mb32_ic64oc64_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1,0.01
=== onednn_kernels: step ends ===
step_seconds=1.25
onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx512_core,forward_training,src:f32,,,mb8_ic64oc64_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1,99.0
"""


def test_onednn_log_reads_the_step_and_prices_convolutions_per_image():
    """benchmarks.onednn_kernels' arithmetic: only `exec` lines between the markers count;
    a convolution's key drops the minibatch and the padding (a stride-2 conv on a
    pre-padded 34x34 input is the 32x32 one with padding 1); per-image times and the
    pricing of one side's images at the other's times, by hand."""
    from benchmarks.onednn_log import conv_key, parse_verbose, per_image, priced_at
    seconds, kernels = parse_verbose(_VERBOSE)
    assert seconds == 1.25
    assert [(k.kind, k.prop, k.ms) for k in kernels] == [
        ("convolution", "forward_training", 20.0), ("convolution", "forward_training", 12.0),
        ("convolution", "backward_data", 4.0), ("reorder", "undef", 0.5)]
    assert conv_key("mb7_ic64oc128_ih32oh16kh3sh2dh0ph1_iw32ow16kw3sw2dw0pw1") == (
        7, "ic64 oc128 k3x3 s2 -> 16x16")
    assert conv_key("mb32_ic64oc128_ih34oh16kh3sh2dh0ph0_iw34ow16kw3sw2dw0pw0") == (
        32, "ic64 oc128 k3x3 s2 -> 16x16")
    ours = per_image(kernels)
    fwd = ("forward_training", "ic64 oc64 k3x3 s1 -> 32x32")
    bwd = ("backward_data", "ic64 oc128 k3x3 s2 -> 16x16")
    assert ours == {fwd: [96, 32.0], bwd: [32, 4.0]}
    # The other side: 0.25 ms per image forward, no backward_data row -> ours kept.
    theirs = {fwd: [40, 10.0]}
    assert priced_at(ours, theirs) == 96 * 0.25 + 4.0
    with pytest.raises(ValueError, match="markers"):
        parse_verbose("onednn_verbose,v1,primitive,exec,cpu,convolution,x,y,z,,,mb1_ic1,1.0")


@pytest.mark.slow  # a subprocess
def test_onednn_kernels_reads_a_real_tf_st_step(tmp_path):
    """The tf_st side of benchmarks.onednn_kernels, run as the benchmark runs it (a
    subprocess with ONEDNN_VERBOSE=1): this TensorFlow's oneDNN prints lines the parser
    reads, with all three convolution passes of a training step."""
    from benchmarks.onednn_log import parse_verbose, per_image
    r = subprocess.run([sys.executable, "-m", "benchmarks.onednn_kernels", "--side=tf_st",
                        "--reference=trades", "--batch_size=2", "--inner_steps=1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": ROOT, "ONEDNN_VERBOSE": "1",
                            "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    if ",exec,cpu,convolution," not in r.stdout:
        # TensorFlow turns its oneDNN ops on by default on Intel CPUs only; elsewhere (e.g.
        # AMD EPYC) its convolutions are Eigen's and there is nothing to read.
        pytest.skip("this TensorFlow runs no oneDNN convolution on this CPU")
    seconds, kernels = parse_verbose(r.stdout)
    assert seconds > 0
    passes = {prop for prop, _ in per_image(kernels)}
    assert {"forward_training", "backward_data", "backward_weights"} <= passes
    # ResNet-18's first conv: 3 -> 64 channels at 32x32, minibatch 2 per forward.
    assert ("forward_training", "ic3 oc64 k3x3 s1 -> 32x32") in per_image(kernels)


@pytest.mark.parametrize("module", ["onednn_kernels", "vs_reference"])
@pytest.mark.slow  # a subprocess
def test_benchmarks_against_the_official_code_without_a_checkout_say_so(module):
    r = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--reference=trades",
                        "--reference_dir=/nonexistent/trades"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode != 0
    assert "is not a trades checkout" in r.stderr


# Every command in benchmarks/ (benchmarks/README.md lists them with the helper modules).
COMMANDS = ("aa_crosscheck", "autoattack", "autoattack_memory", "bn_inference", "compare_methods",
            "crosscheck_methods", "deterministic_cost", "gpu_check", "local_kl", "onednn_kernels",
            "op_profile",
            "precision_study", "step_time", "vs_reference")
HELPERS = ("flops", "onednn_log", "profile_trace", "reference_step", "tf_step")


def _run(args, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_benchmarks_directory_holds_the_listed_tools_and_readme_names_each():
    present = {name[:-3] for name in os.listdir(os.path.join(ROOT, "benchmarks"))
               if name.endswith(".py") and name != "__init__.py"}
    assert present == set(COMMANDS) | set(HELPERS), sorted(present ^ (set(COMMANDS) | set(HELPERS)))
    readme = open(os.path.join(ROOT, "benchmarks", "README.md")).read()
    for name in COMMANDS:
        assert f"python -m benchmarks.{name}" in readme, name
    for name in HELPERS:
        assert f"`{name}.py`" in readme, name


@pytest.mark.parametrize("name", COMMANDS)
def test_benchmark_help(name):
    """``--help`` prints the module's usage (its docstring names the command) and the
    flags, without importing anything that fails."""
    r = _run([f"benchmarks.{name}", "--help"], timeout=300)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.returncode in (0, 1), r.stderr[-3000:]  # absl's --help exits 1
    assert f"python -m benchmarks.{name}" in r.stdout, r.stdout[:2000]
    assert "--" in r.stdout.split(f"python -m benchmarks.{name}", 1)[1]


@pytest.mark.slow  # a subprocess, ~10 s
def test_step_time_runs_a_tiny_measurement():
    r = _run(["benchmarks.step_time", "--arch=small_cnn", "--batch_size=4",
              "--methods=natural,trades", "--steps=1", "--inner_steps=1"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "natural" in r.stdout and "trades" in r.stdout, r.stdout


@pytest.mark.slow  # a subprocess, ~15 s
def test_bn_inference_times_both_paths_and_counts_the_casts():
    """benchmarks.bn_inference, tiny: a row per batch and path; the fused path leaves
    fewer large casts than Keras' form, and both paths' logits are within bfloat16's
    error of float32 and agree in size (each rounds once)."""
    r = _run(["benchmarks.bn_inference", "--arch=small_cnn", "--batch_size=4",
              "--inner_steps=1", "--repeats=1"])
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in r.stdout.splitlines()
            if line.startswith("| 4 |")]
    assert [row[1].strip() for row in rows] == ["keras affine (fused=False)",
                                                "fused kernel (fused=True)"]
    casts = [int(row[4]) for row in rows]
    assert casts[1] < casts[0], r.stdout
    errors = [float(row[5]) for row in rows]
    assert all(0 < e < 1e-2 for e in errors), r.stdout
    assert abs(errors[1] - errors[0]) < 0.25 * errors[0], r.stdout  # both round once


@pytest.mark.slow  # subprocesses, ~15 s
def test_local_kl_is_zero_for_a_constant_model_and_repeats_exactly(tmp_path):
    """benchmarks.local_kl on the bundled mini set: a model whose logits do not depend on
    the input reaches KL 0; a real one reaches more, the same number twice (same
    images, same start noise); the accuracy at x_adv of the constant model is the share
    of its one predicted class."""
    import keras
    import numpy as np

    from tf_st import data
    from tf_st.saved_model import export_classifier
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inp))
    real = keras.Model(inp, keras.layers.Dense(10)(h))
    flat = keras.models.clone_model(real)
    flat.set_weights([np.zeros_like(w) for w in real.get_weights()[:-1]]
                     + [np.arange(10, dtype=np.float32)])  # always class 9
    paths = [export_classifier(m, str(tmp_path / n), version=1)
             for m, n in ((real, "real"), (flat, "flat"))]
    out = tmp_path / "kl.json"
    r = _run(["benchmarks.local_kl", "--examples=24", "--batch_size=16", f"--output={out}",
              f"--saved_models={paths[0]},{paths[1]},{paths[0]}"])
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.load(open(out))["rows"]
    # 0 up to float32 rounding of KL's two sums (~1e-7)
    assert rows[1]["kl_mean"] <= 1e-6 and rows[0]["kl_mean"] > 1e-4, rows
    assert rows[2] == rows[0]
    _, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=24)
    assert rows[1]["adversarial_accuracy"] == pytest.approx(np.mean(y == 9))
    assert r.stdout.count("| ") >= 4 and "TRADES inner maximum" in r.stdout
    bad = _run(["benchmarks.local_kl", f"--saved_models={tmp_path / 'none'}"], timeout=120)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: no SavedModel directory at")


@pytest.mark.slow  # a subprocess, ~17 s
def test_op_profile_runs_with_every_tf_option_lever(tmp_path):
    """tf_st's benchmark step (benchmarks.tf_step) with its levers switched (separate
    forwards, folded BN, stride-1 pad layers, dependency optimizer left on) runs and is
    profiled."""
    r = _run(["benchmarks.op_profile", "--method=trades", "--batch_size=2", "--inner_steps=1",
              "--warmup=1", "--steps=1", "--top=3",
              "--tf_options=group_forwards=false,fold_bn=true,pad_layers=true,"
              "dependency_optimization=true"], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Conv2D" in r.stdout or "convolution" in r.stdout, r.stdout[-3000:]


@pytest.mark.slow  # a subprocess, ~60 s
def test_gpu_check_tiny_writes_every_field_and_prints_the_table(tmp_path):
    """``benchmarks.gpu_check --tiny`` (the GPU check's CPU mode) runs every measurement
    the issue lists and records each: devices, throughput per method and configuration
    (float16 skipped with its reason, bfloat16 measured as the stand-in), the mixed
    step's differences to float32, MirroredStrategy over two logical CPUs against one,
    AutoAttack's time, peak memory (null with the reason), a paper-scale command with an
    expected time per Table 1 row."""
    out = tmp_path / "check.json"
    r = _run(["benchmarks.gpu_check", "--tiny", f"--output={out}"], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"settings", "devices", "throughput", "mixed_vs_float32", "mirrored", "autoattack",
            "peak_memory", "paper_scale", "provenance", "seconds", "phase_seconds",
            "note"} <= set(report)
    assert report["settings"]["tiny"] and report["settings"]["mixed_policy"] == "mixed_bfloat16"
    assert "stand-in" in report["note"]
    assert report["devices"]["logical"] and report["devices"]["gpus"] == []
    rows = {(row["method"], row["config"]): row for row in report["throughput"]}
    for method in ("st", "trades"):
        for config in ("float32", "mixed"):
            assert rows[method, config]["images_per_second"] > 0, rows[method, config]
        assert rows[method, "mixed_xla"]["jit_compile"] is True
        assert rows[method, "mixed"]["policy"] == "mixed_bfloat16"
        assert "no GPU" in rows[method, "mixed_float16"]["skipped"]
    assert rows["trades", "mixed_xla"]["images_per_second"] > 0  # --tiny: XLA for the last
    assert "XLA is timed for trades only" in rows["st", "mixed_xla"]["skipped"]
    for row in report["mixed_vs_float32"]:
        assert row["policy"] == "mixed_bfloat16"
        # bfloat16 against float32 (tests/test_mixed_precision.py states the bounds).
        assert 0 < row["loss_relative_difference"] < 5e-3
        assert 0 < row["gradient_relative_difference"] < 0.25
    assert [row["method"] for row in report["mixed_vs_float32"]] == ["st", "trades"]
    mirrored = report["mirrored"]
    assert mirrored["replicas"] == 2 and mirrored["sync_batchnorm"] is True
    assert mirrored["one_device_images_per_second"] > 0 and mirrored["speedup"] > 0
    aa = report["autoattack"]
    assert aa["examples"] == 16 and aa["seconds"] > 0 and 0 <= aa["robust_accuracy"] <= 1
    assert report["peak_memory"]["bytes"] is None and report["peak_memory"]["reason"]
    paper = report["paper_scale"]
    assert [row["row"] for row in paper["rows"]] == [
        "Vanilla AT", "TRADES", "MART", "ST", "TRADES+AWP", "ST+AWP"]
    for row in paper["rows"]:
        assert row["command"].startswith(f"python -m trainers.{row['method']} --dataset=cifar10 "
                                         "--arch=resnet18")
        assert ("--awp" in row["command"]) == row["awp"]
        assert row["expected_hours"]["float32"] > 0 and row["expected_hours"]["mixed"] > 0, row
        assert (row["expected_hours"]["mixed_xla"] is None) == (row["method"] == "st"), row
    assert paper["forward_flops_per_image"] > 5e8  # ResNet-18 at 32x32: ~1.1 GFLOP
    assert "| st | mixed | mixed_bfloat16 | no |" in r.stdout
    assert "paper scale" in r.stdout and "python -m trainers.st --dataset=cifar10" in r.stdout


def test_precision_study_intervals_and_verdicts_by_hand():
    from benchmarks import precision_study as ps
    # Three seeds 0.40, 0.42, 0.44: mean 0.42, s = 0.02, t(0.975, 2) = 4.303.
    mean, hw = ps.interval([0.40, 0.42, 0.44])
    assert mean == pytest.approx(0.42) and hw == pytest.approx(4.303 * 0.02 / 3 ** 0.5)
    assert ps.interval([0.5]) == (0.5, None)
    rows = {s: [{"method": "st", "clean_acc": c, "pgd20_acc": p},
                {"method": "st+mixed", "clean_acc": c + dc, "pgd20_acc": p + dp}]
            for s, c, p, dc, dp in [("1", .40, .20, .01, -.10), ("2", .42, .21, .00, -.10),
                                    ("3", .44, .22, -.01, -.10)]}
    summary = {r["attack"]: r for r in ps.aggregate(rows)}
    assert set(summary) == {"clean", "pgd20"}
    assert summary["clean"]["mixed"] == pytest.approx(0.42)
    assert summary["clean"]["mixed_within"] is True
    # PGD-20 0.10 lower in mixed: outside float32's 0.21 +- 0.025.
    assert summary["pgd20"]["mixed_within"] is False
    # Paired differences: clean +0.01, 0, -0.01 (mean 0, s = 0.01); PGD-20 -0.10 each.
    assert summary["clean"]["difference"] == pytest.approx(0.0, abs=1e-12)
    assert summary["clean"]["difference_hw"] == pytest.approx(4.303 * 0.01 / 3 ** 0.5)
    assert summary["pgd20"]["difference"] == pytest.approx(-0.10)
    assert summary["pgd20"]["difference_hw"] == pytest.approx(0.0, abs=1e-9)
    text = ps.table(ps.aggregate(rows))
    assert "| st | pgd20 | 3 | 21.0% ± 2.5 | 11.0% ± 2.5 | NO | -10.0 ± 0.0 |" in text
    assert "| st | clean | 3 | 42.0% ± 5.0 | 42.0% ± 2.5 | yes | +0.0 ± 2.5 |" in text


def test_precision_study_compares_only_seeds_with_both_numbers():
    """A study still running: seed 3's mixed run has no AutoAttack number yet, so the
    AutoAttack line compares seeds 1-2 on both sides (not three float32 seeds with two
    mixed ones)."""
    from benchmarks import precision_study as ps
    rows = {"1": [{"method": "st", "aa_acc": .10, "best_epoch": 4,
                   "training_precision": "float32"},
                  {"method": "st+mixed", "aa_acc": .12, "best_epoch": 5,
                   "training_precision": "mixed_bfloat16"}],
            "2": [{"method": "st", "aa_acc": .20}, {"method": "st+mixed", "aa_acc": .20}],
            "3": [{"method": "st", "aa_acc": .90}, {"method": "st+mixed"}]}
    (aa,) = ps.aggregate(rows)
    assert aa["seeds"] == 2 and aa["float32"] == pytest.approx(0.15)
    assert aa["mixed"] == pytest.approx(0.16) and aa["difference"] == pytest.approx(0.01)
    text = ps.seed_table(rows).splitlines()
    assert text[2] == "| st | 1 | float32 | - | - | - | 10.0% | 4 |"
    assert text[3] == "| st | 1 | mixed_bfloat16 | - | - | - | 12.0% | 5 |"
    assert text[-1] == "| st | 3 | mixed | - | - | - | - | - |"


def test_precision_study_reruns_only_what_is_missing():
    from benchmarks import precision_study as ps
    rows = [{"method": "st", "aa_acc": 0.15}, {"method": "st+mixed"},
            {"method": "trades", "aa_acc": 0.2}]
    # Without AutoAttack asked for, a row is enough; with it, the row needs aa_acc.
    assert ps.missing_entries(rows, ["st", "trades"], False) == ["trades+mixed"]
    assert ps.missing_entries(rows, ["st", "trades"], True) == ["st+mixed", "trades+mixed"]
    assert ps.missing_entries([], ["madry"], True) == ["madry", "madry+mixed"]


def test_precision_study_pairs_networks_and_variants():
    """CAT's rows are per network (``cat:trades``, ``cat+mixed:trades``) and ``+awp`` is a
    variant of its own: each pairs with its mixed twin, and a seed is done only when every
    network of an entry has its numbers."""
    from benchmarks import precision_study as ps
    assert ps.split_entry("cat+mixed:trades") == ("cat:trades", True)
    assert ps.split_entry("st+awp+mixed") == ("st+awp", True)
    assert ps.split_entry("st+awp") == ("st+awp", False)
    rows = {"1": [{"method": "cat:trades", "clean_acc": .30}, {"method": "cat:alp", "clean_acc": .20},
                  {"method": "cat+mixed:trades", "clean_acc": .31},
                  {"method": "cat+mixed:alp", "clean_acc": .19},
                  {"method": "st+awp", "clean_acc": .40},
                  {"method": "st+awp+mixed", "clean_acc": .42}]}
    got = {r["method"]: (r["float32"], r["mixed"]) for r in ps.aggregate(rows)}
    assert got == {"cat:alp": (.20, .19), "cat:trades": (.30, .31), "st+awp": (.40, .42)}
    lines = ps.seed_table(rows).splitlines()[2:]
    assert lines[0].startswith("| cat:alp | 1 | float32 | 20.0%")
    assert lines[1].startswith("| cat:alp | 1 | mixed | 19.0%")
    assert ps.missing_entries(rows["1"], ["cat", "st+awp"], False) == []
    # AutoAttack asked for: one network without it leaves its entry to do.
    rows_aa = [dict(r, aa_acc=.1) for r in rows["1"]]
    rows_aa[1].pop("aa_acc")
    assert ps.missing_entries(rows_aa, ["cat", "st+awp"], True) == ["cat"]


@pytest.mark.slow  # a subprocess
def test_precision_study_report_only_without_results_is_an_error(tmp_path):
    r = _run(["benchmarks.precision_study", "--report_only",
              f"--output_dir={tmp_path / 'none'}"], timeout=120)
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith(
        "error: no results under")
    assert not (tmp_path / "none").exists()


def test_flops_rates_take_a_dtype():
    """benchmarks.flops measures a bfloat16 matmul and convolution the same way as the
    float32 ones (tiny shapes here)."""
    from benchmarks.flops import conv_flops_per_second, matmul_flops_per_second
    assert matmul_flops_per_second(n=16, repeats=1, dtype="bfloat16") > 0
    assert conv_flops_per_second(batch=1, size=4, channels=8, repeats=1, dtype="bfloat16") > 0
    assert conv_flops_per_second(batch=1, size=4, channels=8, repeats=1) > 0


def _census_of_a_tiny_step(policy):
    import keras
    import tensorflow as tf

    from benchmarks.profile_trace import dtype_census
    old = keras.config.dtype_policy()
    try:
        keras.mixed_precision.set_global_policy(policy)
        model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3),
                                  keras.layers.GlobalAveragePooling2D(),
                                  keras.layers.Dense(2, dtype="float32")])

        @tf.function
        def step(x):
            # An input-gradient loop (as the inner attacks) and a weight gradient: the
            # loop body lives in the function library, which the census must walk.
            def body(i, x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(model(x))
                return i + 1, x + tape.gradient(loss, x)
            _, x = tf.while_loop(lambda i, _: i < 2, body, (0, x))
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(x))
            return tape.gradient(loss, model.trainable_variables)

        return dtype_census(step.get_concrete_function(tf.zeros((1, 6, 6, 3)))
                            .graph.as_graph_def())
    finally:
        keras.config.set_dtype_policy(old)


def test_dtype_census_counts_convolutions_per_dtype_inside_loops():
    mixed = _census_of_a_tiny_step("mixed_bfloat16")
    # One forward in the loop body, one outside it.
    assert mixed["Conv2D"] == {"bfloat16": 2}
    # Gradient functions hold both backward convolutions, used or not: nodes, not kernels.
    assert set(mixed["Conv2DBackpropInput"]) == set(mixed["Conv2DBackpropFilter"]) == {"bfloat16"}
    assert set(mixed["MatMul"]) == {"float32"}  # the float32 logits layer
    assert mixed["Cast"]["float32->bfloat16"] > 0
    plain = _census_of_a_tiny_step("float32")
    assert plain["Conv2D"] == {"float32": 2}
    assert not any("bfloat16" in counts for counts in plain.values())
    import keras
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow  # a subprocess, ~35 s
def test_op_profile_mixed_bfloat16_prints_the_dtype_census():
    r = _run(["benchmarks.op_profile", "--method=trades", "--batch_size=2", "--inner_steps=1",
              "--warmup=1", "--steps=1", "--top=3", "--mixed_precision=bfloat16"], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mixed_bfloat16" in r.stdout and "Cast:" in r.stdout, r.stdout[-3000:]
    head = next(line for line in r.stdout.splitlines() if line.startswith("| op type | family"))
    row = next(line for line in r.stdout.splitlines() if line.startswith("| Conv2D |"))
    counts = dict(zip(head.strip("|").split("|")[2:], row.strip("|").split("|")[2:]))
    counts = {k.strip(): int(v) for k, v in counts.items()}
    # ResNet-18 has 20 convolutions; only the stem reads the images in float32
    # (tf_st.models._common.stem_dtype), so every forward has 19 bfloat16 ones and 1.
    assert counts["bfloat16"] > 0 and counts["bfloat16"] == 19 * counts["float32"], \
        r.stdout[-3000:]


_FAKE_RESNET = '''
import torch.nn as nn


class _Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def ResNet18(num_classes=10):
    return _Net(num_classes)
'''
_FAKE_LOSSES = '''
import torch
import torch.nn.functional as F

SEEN = []


def stat_loss(model, x_natural, y, **kwargs):
    logits = model(x_natural)
    SEEN.append(("loss", torch.is_autocast_enabled("cpu"), str(model.conv(x_natural).dtype),
                 str(logits.dtype)))
    # The official get_upper_lower's index put into float32 zeros (refuses bfloat16).
    upper = torch.zeros(logits.size()).float()
    upper[y >= 0] = logits[y >= 0]
    loss = F.cross_entropy(upper, y)
    loss.register_hook(lambda g: SEEN.append(("backward", torch.is_autocast_enabled("cpu"))))
    return loss, None, None, None
'''


@pytest.mark.slow  # a subprocess (torch), ~5 s
def test_reference_step_autocast_wraps_the_loss_call_only(tmp_path):
    """benchmarks.vs_reference --reference_autocast: the official loss call (here a stand-in
    with ST-AT's index put of the logits into float32 zeros) runs under CPU bfloat16
    autocast with float32 logits; backward runs outside it; without the flag nothing is
    in bfloat16."""
    pytest.importorskip("torch")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "resnet.py").write_text(_FAKE_RESNET)
    (tmp_path / "losses.py").write_text(_FAKE_LOSSES)
    script = (
        "from benchmarks.reference_step import reference_step\n"
        "seen = {}\n"
        "for autocast in (False, True):\n"
        f"    step, make_batch, forwards = reference_step('st-at', {str(tmp_path)!r}, 1, 1,\n"
        "                                                autocast=autocast)\n"
        "    import losses\n"
        "    losses.SEEN.clear()\n"
        "    step(*make_batch(2))\n"
        "    seen[autocast] = (list(losses.SEEN), forwards())\n"
        "print(repr(seen))\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stderr[-3000:]
    seen = eval(r.stdout.strip().splitlines()[-1])
    assert seen[False] == ([("loss", False, "torch.float32", "torch.float32"),
                            ("backward", False)], 1)
    assert seen[True] == ([("loss", True, "torch.bfloat16", "torch.float32"),
                           ("backward", False)], 1)
