"""One command-line policy for every entry point (``tf_st.cli``): ``--help`` exits 0 with
the command's own flags, grouped, units and presets; a bad flag is one ``error:`` line
and exit 2 before any work; fractions such as ``8/255`` for every float flag; Ctrl-C
says what was saved and the command that resumes; a run ends by naming its outputs;
TensorFlow's start-up banners stay off the console."""

import csv
import os
import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver

from tf_st import cli
from tf_st.experiment import cli as train_cli
from tf_st.experiment import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Flags absl, absl.testing or TensorFlow define in the global registry: never a command's.
FOREIGN = ("--test_random_seed", "--test_tmpdir", "--logtostderr", "--only_check_args",
           "--tpu", "--pdb_post_mortem", "--run_with_profiling")


def _one_error_line(err):
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


# ------------------------------------------------------------------ fractions

@pytest.mark.parametrize("text,value", [("8/255", 8 / 255), ("0.0314", 0.0314),
                                        (" 2 / 255 ", 2 / 255), ("1e-3", 1e-3), ("3", 3.0)])
def test_numbers_and_fractions_parse_exactly(text, value):
    assert cli.parse_number(text) == value


@pytest.mark.parametrize("text", ["8/0", "eight", "8/255/2", "", "1/x"])
def test_malformed_numbers_are_refused(text):
    with pytest.raises(ValueError):
        cli.parse_number(text)


def test_float_flags_take_fractions_and_keep_their_bounds():
    fv = flags.FlagValues()
    cli.define_float("epsilon", None, "budget", fv, lower_bound=0.0, upper_bound=1.0)
    cli.define_floats("epsilons", [1 / 255], "budgets", fv)
    fv(["prog", "--epsilon=8/255", "--epsilons=2/255,0.5"])
    assert fv.epsilon == 8 / 255 and fv.epsilons == [2 / 255, 0.5]
    # The value round-trips through its serialised form (flags.txt).
    assert float(fv["epsilon"].serialize().split("=", 1)[1]) == 8 / 255
    with pytest.raises(flags.IllegalFlagValueError, match="8/255 accepted|fractions"):
        fv(["prog", "--epsilon=8"])


def test_trainer_epsilon_and_step_flags_accept_fractions():
    with flagsaver.flagsaver():
        train_cli.FLAGS.unparse_flags()
        train_cli.FLAGS(["train", "--epsilon=8/255", "--step_size=2/255",
                         "--eval_step_size=1/255", "--lr_multipliers=1/10,1/100",
                         "--lr_milestones=2,3"])
        s = train_cli.settings_from_flags("st")
    assert s.hparams["epsilon"] == 8 / 255 and s.hparams["step_size"] == 2 / 255
    assert s.eval_step_size == 1 / 255 and s.lr_multipliers == (0.1, 0.01)
    # flags.txt writes the values back, and reading it gives the same settings.
    text = train_cli.flagfile_text(s)
    assert f"--epsilon={8 / 255!r}" in text


def test_evaluation_and_analysis_take_the_same_units():
    from tf_st.analysis import collaborative, common, landscape
    from tf_st.evaluation import cli as evaluation_cli
    with flagsaver.flagsaver():
        evaluation_cli.FLAGS.unparse_flags()
        evaluation_cli.FLAGS(["evaluate", "--epsilon=8/255", "--step_size=2/255"])
        assert evaluation_cli.FLAGS.epsilon == 8 / 255
        evaluation_cli.FLAGS.unparse_flags()
    for module, argv, name, value in [
            (collaborative, ["--epsilons=4/255,0.0627"], "epsilons", [4 / 255, 0.0627]),
            (landscape, ["--radius=16/255", "--epsilon=8/255"], "radius", 16 / 255)]:
        fv = flags.FlagValues()
        common.define_shared(fv)
        module.define_flags(fv)
        fv(["analysis"] + argv)
        assert fv[name].value == value
        # The old 1/255 units are refused, not silently read as 8 image widths.
        with pytest.raises(flags.IllegalFlagValueError, match=r"\[0, 1\]|\(0, 1\]"):
            fv(["analysis", "--" + name + ("=8,16" if name == "epsilons" else "=16")])


# ------------------------------------------------------------------ --help

def _help_of(capsys, main, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    for foreign in FOREIGN:
        assert foreign not in out, foreign
    return " ".join(out.split())  # wrapped lines joined, for substring checks


@pytest.mark.parametrize("arg", ["--help", "-h", "--helpshort", "--helpfull"])
def test_evaluation_help_exits_0_with_its_own_flags_grouped(capsys, arg):
    from tf_st.evaluation import cli as evaluation_cli
    out = _help_of(capsys, evaluation_cli.main, ["evaluate", arg])
    for group in ("model and data:", "attacks:", "output:", "devices:"):
        assert f" {group} --" in out
    assert "--saved_model=<string>" in out and "--attacks=" in out
    # Units and the default as a fraction.
    epsilon = out[out.index("--epsilon="):out.index("--step_size=")]
    assert "[0, 1] image units" in epsilon and "default: 8/255" in epsilon


def test_trainer_help_shows_the_presets_that_apply(capsys):
    mini = _help_of(capsys, lambda a: train_cli.cli_main(a, "st"), ["st", "--help"])
    assert "usage: python -m trainers.st" in mini
    assert "preset for st on cifar10_mini: small_cnn" in mini
    assert "hyperparameters of st:" in mini and "--reg=<js|l2|symmetric_kl>" in mini
    # The developer's notes of the module docstring are not the user's help.
    assert "importing several trainers" not in mini
    cifar = _help_of(capsys, lambda a: train_cli.cli_main(a, "st"),
                     ["st", "--dataset=cifar10", "--help"])
    assert "preset for st on cifar10: resnet18" in cifar
    assert "for st on cifar10: 8/255" in cifar  # --epsilon
    # The st help leaves out other methods' hyperparameters; --helpfull lists them all.
    assert "--tau" not in cifar
    full = _help_of(capsys, lambda a: train_cli.cli_main(a, "st"), ["st", "--helpfull"])
    assert "--tau" in full and "--trades_reg" in full


def test_every_other_command_has_help(capsys):
    from tf_st.analysis import cli as analysis_cli
    from tf_st.models import convert
    from trainers import pseudo_label
    assert "--torch_checkpoint" in _help_of(capsys, convert.main, ["convert", "--help"])
    assert "--skip=<int>" in _help_of(capsys, pseudo_label.main, ["pseudo_label", "-h"])
    out = _help_of(capsys, analysis_cli.main, ["analysis", "collaborative", "--help"])
    assert "default: 4/255,8/255,16/255,32/255" in out and "--run_dir" in out
    with pytest.raises(SystemExit) as e:
        cli.run_main(lambda argv: 0, "Measures a thing.\n\nMore.",
                     program="python -m benchmarks.thing", argv=["thing", "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m benchmarks.thing")


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("flag,message", [
    ("--arch=resnet-18", "value should be one of"),
    ("--reg=symetric_kl", "value should be one of"),
    ("--epsilon=8", "8/255"),
    ("--beta=-1", "--beta must be >= 0"),
    ("--epsilom=0.1", "Did you mean: epsilon"),
    ("stray", "unexpected arguments"),
])
def test_trainer_bad_flags_are_one_error_line_and_exit_2(tmp_path, capsys, flag, message):
    out = tmp_path / "run"
    with flagsaver.flagsaver():
        status = train_cli.cli_main(["st", flag, f"--output_dir={out}"], "st")
    assert status == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("argv", [["--epsilon=8"], ["--helpfulll"], ["--attacks=pgd"]])
def test_evaluation_bad_flags_are_one_error_line_and_exit_2(capsys, argv, tmp_path):
    from tf_st.evaluation import cli as evaluation_cli
    status = evaluation_cli.main(["evaluate", f"--saved_model={tmp_path}"] + argv)
    assert status == 2
    _one_error_line(capsys.readouterr().err)


def test_convert_and_pseudo_label_bad_flags(capsys, tmp_path):
    from tf_st.models import convert
    from trainers import pseudo_label
    assert convert.main(["convert", "--arch=resnet-18"]) == 2
    assert "value should be one of" in _one_error_line(capsys.readouterr().err)
    assert pseudo_label.main(["pseudo_label", "--skip=-1"]) == 2
    _one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------ Ctrl-C and outputs

def _resolved(tmp_path):
    return train_cli.runner.resolve(config.Settings(method="st", dataset="cifar10_mini",
                                                    output_dir=str(tmp_path / "run")))


def test_ctrl_c_names_what_was_saved_and_the_command_that_resumes(tmp_path, capsys,
                                                                   monkeypatch):
    def interrupted(settings, **kw):
        os.makedirs(settings.output_dir)
        with open(os.path.join(settings.output_dir, "metrics.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "loss"])
            w.writerow([1, 0.5])
            w.writerow([2, 0.4])
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli.runner, "run", interrupted)
    out = tmp_path / "run"
    with flagsaver.flagsaver():
        status = train_cli.cli_main(["st", "--epochs=3", f"--output_dir={out}"], "st")
    assert status == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted: {out} holds 2 finished epoch(s) (checkpoint, metrics.csv, "
                   f"best weights); resume with: python -m trainers.st --epochs=3 "
                   f"--output_dir={out}")


def test_ctrl_c_before_any_epoch_says_so(tmp_path):
    s = _resolved(tmp_path)
    assert train_cli.interrupted_message(None, "python -m trainers.st", ["x", "--a=1"]) == \
        "nothing was saved; start again with: python -m trainers.st --a=1"
    os.makedirs(s.output_dir)
    message = train_cli.interrupted_message(s, "tf-st train", ["x", "--seed=2", "--x=a b"])
    assert message.startswith(f"no epoch had finished, so {s.output_dir} holds only")
    assert message.endswith("resume with: tf-st train --seed=2 '--x=a b'")


def test_evaluation_ctrl_c_gives_a_reason_and_the_command(tmp_path, capsys, monkeypatch):
    import keras

    from tf_st import models
    from tf_st.evaluation import cli as evaluation_cli
    from tf_st.evaluation import report
    from tf_st.saved_model import export_classifier
    keras.utils.set_random_seed(0)
    export_classifier(models.build("small_cnn", 10), str(tmp_path / "export"), version=1)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "evaluate_and_report", interrupted)
    argv = ["evaluate", f"--saved_model={tmp_path / 'export'}", "--examples=4",
            "--attacks=clean", f"--output={tmp_path / 'r.json'}"]
    assert evaluation_cli.main(argv) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err.strip()
    assert err == ("interrupted: no attack of this run had finished; run again with: "
                   "python -m tf_st.evaluation " + " ".join(argv[1:]))


def test_a_finished_run_names_its_outputs(tmp_path):
    s = _resolved(tmp_path)
    os.makedirs(os.path.join(s.output_dir, "export", "1"))
    for name in ("metrics.csv", "flags.txt", "evaluation.json"):
        open(os.path.join(s.output_dir, name), "w").close()
    assert train_cli.outputs_message(s) == (
        f"outputs in {s.output_dir}: export/ (SavedModel(s) with model_card.json), "
        "evaluation.json (final evaluation report), metrics.csv (per-epoch metrics), "
        "flags.txt (settings (--flagfile re-runs them))")


# ------------------------------------------------------------------ banners

def _clean_env():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = ROOT
    return env


@pytest.mark.slow
@pytest.mark.parametrize("command", [["tf_st.evaluation", "--help"],
                                     ["trainers.st", "--help"],
                                     ["tf_st.models.convert", "--help"],
                                     ["benchmarks.step_time", "--help"]])
def test_help_prints_no_tensorflow_banner(command):
    r = subprocess.run([sys.executable, "-m"] + command, cwd=ROOT, env=_clean_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr  # nothing: no absl/oneDNN/CUDA lines, no runpy warning
    assert r.stdout.startswith("usage: python -m " + command[0])


@pytest.mark.slow
def test_a_bad_flag_in_a_fresh_process_is_one_line_and_exit_2():
    r = subprocess.run([sys.executable, "-m", "trainers.st", "--arch=resnet-18"], cwd=ROOT,
                       env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "value should be one of" in _one_error_line(r.stderr)


def test_analysis_ctrl_c_says_where_finished_work_is(tmp_path, capsys, monkeypatch):
    from tf_st.analysis import cli as analysis_cli
    from tf_st.analysis import curves

    def interrupted(fv):
        raise KeyboardInterrupt

    monkeypatch.setattr(curves, "run", interrupted)
    argv = ["analysis", "curves", f"--output_dir={tmp_path}", f"--run_dir={tmp_path}"]
    assert analysis_cli.main(argv) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == (
        f"interrupted: what finished is in {tmp_path}; run again with: "
        f"python -m tf_st.analysis curves --output_dir={tmp_path} --run_dir={tmp_path}")
