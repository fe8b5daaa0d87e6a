"""Packaging facts: one version string, every test dependency declared, and the
trainer's --deterministic decided the way the flag parser will decide it."""

import os
import re

import tf_st
import trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def test_one_version_string():
    pyproject = _read("pyproject.toml")
    assert 'version = { attr = "tf_st.__version__" }' in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)
    assert re.fullmatch(r"\d+\.\d+\.\d+", tf_st.__version__)


def test_test_imports_are_declared():
    """Every third-party module the tests import is installed by requirements-test.txt
    (or, for torch and cleverhans, by .ci/run, the tests skipping without them)."""
    declared = _read("requirements-test.txt") + _read("requirements.txt") + _read(".ci/run")
    imported = set()
    for name in os.listdir(os.path.join(ROOT, "tests")):
        if name.endswith(".py"):
            imported |= set(re.findall(r"^\s*(?:import|from) (\w+)", _read(f"tests/{name}"), re.M))
    local = {"tf_st", "trainers", "export", "benchmarks", "tests"}
    stdlib = set(__import__("sys").stdlib_module_names)
    third_party = imported - local - stdlib
    # h5py is a declared dependency of keras (Keras' weights files).
    distribution = {"absl": "absl-py", "tensorflow_datasets": "tensorflow-datasets",
                    "autoattack": "pyautoattack", "h5py": "keras"}
    missing = sorted(m for m in third_party if distribution.get(m, m) not in declared)
    assert not missing, f"declare these test imports: {missing}"


def test_deterministic_is_read_through_flagfiles(tmp_path):
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text("--method=madry\n--deterministic\n--epochs=2\n")
    assert trainers._deterministic_requested([f"--flagfile={flagfile}"])
    assert not trainers._deterministic_requested([f"--flagfile={flagfile}", "--nodeterministic"])
    assert trainers._deterministic_requested(["--deterministic=true"])
    assert not trainers._deterministic_requested(["--epochs=2"])
    # A flagfile that does not exist is left to the real parser to report.
    assert not trainers._deterministic_requested([f"--flagfile={tmp_path / 'missing'}"])
