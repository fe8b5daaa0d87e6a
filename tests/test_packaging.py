"""Packaging facts: one version string, every test dependency declared, dependency
ranges in pyproject.toml with their exact pins in .ci/constraints.txt, the license
declared, and the trainer's --deterministic decided the way the flag parser will
decide it."""

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


def _requirements():
    """``{name: specifier}`` of pyproject's dependencies and its ``test`` extra."""
    import tomllib
    project = tomllib.loads(_read("pyproject.toml"))["project"]
    out = {}
    for text in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", text.strip()).groups()
        out[name.lower()] = spec
    return out


def test_test_imports_are_declared():
    """Every third-party module the tests import is installed by ``pip install -e
    ".[test]"`` (pyproject.toml), or, for torch and cleverhans, by .ci/run, the tests
    skipping without them."""
    declared = " ".join(_requirements()) + _read(".ci/run")
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


def test_dependencies_are_ranges_pinned_only_in_the_ci_constraints():
    """pyproject.toml declares ranges (the official AutoAttack release the parity tests
    compare with is the one exact pin); .ci/constraints.txt pins every one of them, and
    .ci/run installs with it."""
    requirements = _requirements()
    assert {"tensorflow", "keras", "pytest", "pyautoattack"} <= set(requirements)
    exact = sorted(n for n, spec in requirements.items() if spec.startswith("=="))
    assert exact == ["pyautoattack"], f"pin these in .ci/constraints.txt only: {exact}"
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", _read(".ci/constraints.txt"), re.M))
    unpinned = sorted(set(requirements) - {n.lower() for n in pins})
    assert not unpinned, f"pin these in .ci/constraints.txt: {unpinned}"
    for name, spec in requirements.items():  # each pin inside its range (>=, <, ==)
        version = tuple(int(p) for p in re.findall(r"\d+", pins[name])[:3])
        for op, bound in re.findall(r"(>=|<|==)\s*([\d.]+)", spec):
            bound = tuple(int(p) for p in bound.split("."))
            ok = {">=": version[:len(bound)] >= bound, "<": version[:len(bound)] < bound,
                  "==": version[:len(bound)] == bound}[op]
            assert ok, f"{name}=={pins[name]} in .ci/constraints.txt is outside {spec!r}"
    assert "-c .ci/constraints.txt" in _read(".ci/run")


def test_license_is_declared():
    pyproject = _read("pyproject.toml")
    assert re.search(r'^license = "Apache-2.0"$', pyproject, re.M)
    assert re.search(r'^license-files = \["LICENSE"\]$', pyproject, re.M)


def test_deterministic_is_read_through_flagfiles(tmp_path):
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text("--method=madry\n--deterministic\n--epochs=2\n")
    assert trainers._deterministic_requested([f"--flagfile={flagfile}"])
    assert not trainers._deterministic_requested([f"--flagfile={flagfile}", "--nodeterministic"])
    assert trainers._deterministic_requested(["--deterministic=true"])
    assert not trainers._deterministic_requested(["--epochs=2"])
    # A flagfile that does not exist is left to the real parser to report.
    assert not trainers._deterministic_requested([f"--flagfile={tmp_path / 'missing'}"])
