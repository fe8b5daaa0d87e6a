"""Paper presets: one table keyed by (dataset, method) with "*" wildcards, resolved over
the methods' HParams defaults; no cell repeats a default."""

import dataclasses

import pytest

from tf_st import methods
from tf_st.methods import registry
from tf_st.methods.hparams import HParams, hparam
from tf_st.training import presets


def test_hand_written_cells():
    assert presets.resolve("st", "cifar100")["beta"] == 4.0
    assert presets.resolve("st", "svhn")["beta"] == 8.0
    assert presets.resolve("st", "cifar10")["beta"] == 6.0  # STHParams default
    fat = presets.resolve("fat", "svhn")
    assert (fat["arch"], fat["epochs"], fat["lr"], fat["lr_milestones"], fat["epsilon"],
            fat["step_size"], fat["weight_decay"]) == (
        "wrn32_10", 120, 0.1, (60, 90, 110), 0.031, 0.007, 2e-4)
    cat = presets.resolve("cat", "cifar10")
    assert (cat["epochs"], cat["lr"], cat["lr_milestones"], cat["alpha"], cat["beta"]) == (
        200, 0.1, (100, 150), 1 / 20, 6.0)
    assert presets.resolve("cat", "cifar10_mini")["epochs"] == 5
    mini = presets.resolve("madry", "cifar10_mini")
    assert (mini["arch"], mini["batch_size"], mini["epochs"], mini["epsilon"]) == (
        "small_cnn", 64, 5, 8 / 255)
    assert presets.resolve("fat_trades", "image_folder") == presets.resolve("fat_trades",
                                                                            "cifar10")
    assert presets.resolve("mart", "svhn_cropped") == presets.resolve("mart", "svhn")
    with pytest.raises(ValueError, match="no preset for dataset 'mnist'"):
        presets.resolve("madry", "mnist")


def test_a_method_without_presets_trains_with_the_datasets():
    svhn = {"arch": "resnet18", "batch_size": 128, "momentum": 0.9, "weight_decay": 5e-4,
            "epochs": 80, "lr": 0.01, "lr_milestones": (50, 65), "step_size": 1 / 255,
            "augment": "none", "epsilon": 8 / 255, "steps": 10}
    assert presets.resolve("not_a_method", "svhn") == svhn

    @dataclasses.dataclass(frozen=True)
    class NewHParams(HParams):
        beta: float = hparam(3.0, "weight")

    new = type("NewMethod", (methods.AdversarialMethod,),
               {"key": "new_preset_probe", "HParams": NewHParams})
    registry.register(new)
    try:
        assert presets.resolve("new_preset_probe", "svhn") == {**svhn, "beta": 3.0}
    finally:
        registry.unregister("new_preset_probe")


def test_the_table_names_known_cells_and_repeats_no_default():
    for dataset, method in presets.PRESETS:
        assert dataset == "*" or dataset in presets.DATASETS
        assert dataset not in presets.DATASET_ALIASES  # aliases read their target's cells
        assert method == "*" or method in methods.METHODS
    base = presets.hparam_defaults("*")
    for (dataset, method), values in presets.PRESETS.items():
        defaults = base if method == "*" else presets.hparam_defaults(method)
        same = {k: v for k, v in values.items() if k in defaults and defaults[k] == v}
        assert not same, f"{(dataset, method)} repeats HParams defaults {same}"
