"""The one declaration of the run settings (``tf_st.experiment.config``): every flag,
its default and help, validation and the ``flags.txt`` round trip come from it, and these
tests are parametrised by it (a new setting is covered without editing them)."""

import dataclasses

import pytest
from absl import flags

from tf_st import methods
from tf_st.experiment import config, runner

FIELDS = config.fields()


def fresh():
    fv = flags.FlagValues()
    return fv, config.FlagSet(fv, methods.METHODS)


def other_value(f):
    """A valid value different from the field's default."""
    m = f.metadata
    kind, default = m["kind"], f.default
    allowed = config.choices(f)
    if allowed:
        return next(c for c in allowed if c != default)
    if kind == "bool":
        return not default
    if kind == "int":
        low = m["minimum"] if m["minimum"] is not None else 0
        high = m["maximum"] if m["maximum"] is not None else low + 7
        return next(v for v in (high, low) if v != default)
    if kind == "float":
        return 0.125 if default != 0.125 else 0.25
    if kind == "ints":
        return (3, 7)
    if kind == "floats":
        return (0.5, 0.25)
    if kind == "strs":
        return ("clean", "pgd7")
    return "some/path"


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.name)
def test_each_setting_is_one_flag_with_the_declared_default_and_help(f):
    fv, flag_set = fresh()
    fv(["prog"])
    flag = fv[f.name]
    assert flag.help.endswith(f.metadata["help"])  # absl prefixes an enum's choices
    default = tuple(flag.value) if isinstance(flag.value, list) else flag.value
    assert default == f.default
    # The parsed, untouched flags give exactly the declared defaults.
    assert getattr(flag_set.settings("st"), f.name) == f.default


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.name)
def test_flagfile_round_trip_of_every_setting(f):
    value = other_value(f)
    settings = config.Settings(method="trades", **{f.name: value},
                               hparams={"beta": 3.5, "epsilon": 0.0625, "steps": 4})
    fv, flag_set = fresh()
    fv(["prog"])
    text = flag_set.flagfile_text(settings)
    fv2, flag_set2 = fresh()
    fv2(["prog"] + [line for line in text.splitlines() if not line.startswith("--method=")])
    back = flag_set2.settings("trades")
    assert getattr(back, f.name) == value
    assert back.hparams["beta"] == 3.5 and back.hparams["epsilon"] == 0.0625
    assert back.hparams["steps"] == 4


BOUNDED = [(f, bound) for f in FIELDS for bound in ("minimum", "maximum", "choices", "unit")
           if (f.metadata.get(bound) if bound != "choices" else config.choices(f))]


@pytest.mark.parametrize("f,bound", BOUNDED, ids=lambda x: getattr(x, "name", x))
def test_validation_rejects_values_outside_the_declaration(f, bound):
    m = f.metadata
    bad = {"minimum": lambda: m["minimum"] - 1, "maximum": lambda: m["maximum"] + 1,
           "choices": lambda: "no_such_choice", "unit": lambda: 8.0}[bound]()
    with pytest.raises(ValueError, match=f"--{f.name} must be"):
        config.validate(config.Settings(method="st", **{f.name: bad}))
    # The same bound holds on the command line (absl checks it while parsing).
    if bound != "unit" or f.name in ("eval_step_size",):
        fv, _ = fresh()
        with pytest.raises(flags.Error):
            fv(["prog", f"--{f.name}={bad}"])


def test_resolve_validates_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="--holdout_examples must be >= 1"):
        runner.resolve(config.Settings(method="st", holdout_examples=0,
                                       output_dir=str(tmp_path / "r")))
    with pytest.raises(ValueError, match="unknown attack"):
        runner.resolve(config.Settings(method="st", final_attacks=("clean", "pgd")))
    assert not (tmp_path / "r").exists()


def test_presets_fill_exactly_the_preset_settings():
    """Every setting declared ``preset=True`` is filled by ``resolve``; the others keep
    their declared default."""
    s = runner.resolve(config.Settings(method="st", dataset="cifar10"))
    for f in FIELDS:
        if f.metadata["preset"] and f.metadata["group"] != "method":
            assert getattr(s, f.name) is not None or f.name == "lr_multipliers", f.name
        elif f.name not in ("output_dir", "dataset"):
            assert getattr(s, f.name) == f.default, f.name
    assert (s.arch, s.epochs, s.lr, s.lr_milestones, s.batch_size) == \
        ("resnet18", 120, 0.1, (80, 100), 128)
    assert s.hparams["beta"] == 6.0 and s.hparams["epsilon"] == pytest.approx(8 / 255)


def test_settings_json_holds_every_declared_setting():
    s = config.Settings(method="st")
    assert set(s.as_json()) == {f.name for f in dataclasses.fields(config.Settings)}
