"""The method registry: methods register themselves in the module that defines them,
and the package discovers its modules, so a new method is one new module."""

import importlib.util
import inspect
import re
import sys
import uuid

import keras
import numpy as np
import pytest

from tf_st import methods
from tf_st.methods import base, madry, registry
from tests.helpers import small_bn_model


def _load_copy_of_madry(tag):
    """madry.py's source with its class names and key strings changed, loaded as a
    module of the tf_st.methods package (nothing written to the package directory)."""
    source = inspect.getsource(madry)
    source, n_keys = re.subn(r'key = "madry(2?)"', rf'key = "{tag}\1"', source)
    assert n_keys == 2
    source = source.replace("Madry", f"Probe{tag.capitalize()}")
    name = f"tf_st.methods._{tag}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        exec(compile(source, f"<copy of madry.py as {name}>", "exec"), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def test_a_copied_method_module_is_discovered_built_and_trained():
    tag = f"probe{uuid.uuid4().hex[:8]}"
    before = dict(methods.METHODS)
    module = None
    try:
        module = _load_copy_of_madry(tag)
        cls, cls2 = getattr(module, f"Probe{tag.capitalize()}AT"), \
            getattr(module, f"Probe{tag.capitalize()}AT2")
        assert methods.METHODS[tag] is cls and methods.METHODS[f"{tag}2"] is cls2
        assert methods.get(tag) is cls
        assert set(methods.METHODS) == set(before) | {tag, f"{tag}2"}
        model = small_bn_model()
        method = methods.build(tag, model, steps=2)
        assert isinstance(method, cls) and method.hparams()["neighbours"] == 1
        assert methods.build(f"{tag}2", small_bn_model()).hparams()["neighbours"] == 2
        x = np.random.RandomState(0).uniform(0, 1, (8, 4, 4, 2)).astype("float32")
        y = np.arange(8) % 3
        method.compile(optimizer=keras.optimizers.SGD(0.05))
        logs = method.train_on_batch(x, y, return_dict=True)
        assert np.isfinite(logs["loss"])
    finally:
        for key in (tag, f"{tag}2"):
            methods.METHODS.pop(key, None)
        sys.modules.pop(f"tf_st.methods._{tag}", None)
    assert methods.METHODS == before and module is not None


def test_unknown_keys_are_rejected_by_get_and_build():
    message = re.escape(f"unknown method 'nope'; choose one of {sorted(methods.METHODS)}")
    with pytest.raises(ValueError, match=message):
        methods.get("nope")
    with pytest.raises(ValueError, match=message):
        methods.build("nope", small_bn_model())


def test_the_registry_is_the_public_dict_and_classes_stay_importable():
    assert methods.METHODS is registry.METHODS
    assert set(methods.METHODS) == {"st", "natural", "madry", "trades", "mart", "col",
                                    "madry2", "trades2", "mart2", "alp", "cat", "fat",
                                    "fat_trades", "fat_mart"}
    from tf_st.methods import (ALP, CAT, FAT, FATMART, FATTRADES, MART, MART2, TRADES,  # noqa: F401
                               TRADES2, CollaborativeTraining, MadryAT, MadryAT2,
                               NaturalTraining, SqueezeTraining)
    assert methods.MadryAT is madry.MadryAT and methods.METHODS["madry"] is MadryAT


def test_only_package_classes_with_their_own_key_register():
    before = dict(methods.METHODS)

    class Outside(base.AdversarialMethod):  # defined in a test module: not registered
        key = "outside_probe"

    class Inherits(methods.MadryAT):  # no key of its own
        pass

    assert methods.METHODS == before
    try:
        assert registry.register(Outside) is Outside and methods.get("outside_probe") is Outside
        with pytest.raises(ValueError, match="already taken"):
            registry.register(type("Outside", (base.AdversarialMethod,), {"key": "madry"}))
    finally:
        registry.unregister("outside_probe")
    assert methods.METHODS == before and Inherits.key == "madry"


# ------------------------------------------------- the other registries: archs, attacks, data

def test_a_registered_architecture_builds_through_models_build():
    import keras

    from tf_st import models

    def tiny(num_classes=10, input_shape=(32, 32, 3), name="tiny"):
        inputs = keras.Input(input_shape)
        return keras.Model(inputs, keras.layers.Dense(num_classes)(
            keras.layers.GlobalAveragePooling2D()(inputs)), name=name)

    models.register_arch("tiny_probe", tiny)
    try:
        net = models.build("tiny_probe", 3, input_shape=(8, 8, 3))
        assert net.output_shape == (None, 3) and net.name == "tiny_probe"
        with pytest.raises(ValueError, match="already registered"):
            models.register_arch("resnet18", tiny)
    finally:
        models.ARCHS.pop("tiny_probe", None)
    # Every built-in module registered its architectures.
    assert {"resnet18", "preact_resnet18", "small_cnn", "wrn34_10", "wrn34_5", "wrn28_10",
            "wrn32_10"} == set(models.ARCHS)


def test_a_registered_attack_name_parses_and_is_listed():
    from tf_st.attacks import specs

    specs.register_attack("pgdl<N>", lambda epsilon, step_size, n: specs.PGD(
        epsilon=epsilon, step_size=step_size / 2, steps=n))
    try:
        a = specs.parse("pgdl6", epsilon=0.25, step_size=0.5)
        assert (a.steps, a.step_size, a.epsilon) == (6, 0.25, 0.25)
        assert specs.describe_names().endswith("square or pgdl<N>")
        with pytest.raises(ValueError, match="unknown attack"):
            specs.parse("pgdl0")
        with pytest.raises(ValueError, match="already registered"):
            specs.register_attack("fgsm", lambda e, s: None)
    finally:
        specs._ATTACKS.pop("pgdl<N>")
    assert specs.attack_names() == specs.ATTACK_NAMES


def test_a_registered_dataset_is_known_to_load(tmp_path):
    from tf_st import data

    data.register_dataset("probe_folder", data.DatasetSpec("folder", None, None, "a probe"))
    try:
        assert data.canonical_name("Probe_Folder") == "probe_folder"
        with pytest.raises(ValueError, match="lower case and new"):
            data.register_dataset("cifar10", data.DATASETS["cifar10"])
    finally:
        data.DATASETS.pop("probe_folder")
    with pytest.raises(ValueError, match="Unknown dataset"):
        data.canonical_name("probe_folder")
