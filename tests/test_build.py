"""BUILD lists every Python file of the project, and a py_test for every test file."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_module_and_test_is_in_build():
    with open(os.path.join(ROOT, "BUILD")) as f:
        build = f.read()
    listed = set(re.findall(r'"([\w/.]+\.py)"', build))
    files = {os.path.relpath(p, ROOT) for d in ("tf_st", "trainers", "export", "benchmarks", "tests")
             for p in glob.glob(os.path.join(ROOT, d, "**", "*.py"), recursive=True)}
    missing = sorted(files - listed)
    assert not missing, f"add these to BUILD: {missing}"
    stale = sorted(p for p in listed if not os.path.exists(os.path.join(ROOT, p)))
    assert not stale, f"BUILD lists files that do not exist: {stale}"
    for test in glob.glob(os.path.join(ROOT, "tests", "test_*.py")):
        name = os.path.relpath(test, ROOT)[:-3].replace("/", "_")
        assert f'py_test(\n    name = "{name}"' in build, name


def test_build_deps_are_the_direct_imports():
    """Each rule's deps are exactly the rules owning the project modules its sources
    import (or run with python -m); fix with `python tests/build_graph.py --fix`."""
    from tests import build_graph
    with open(os.path.join(ROOT, "BUILD")) as f:
        found = build_graph.problems(f.read())
    assert not found, "BUILD deps differ from the imports:\n" + "\n".join(found)


def test_build_graph_sees_lazy_imports_and_python_dash_m(tmp_path):
    from tests import build_graph
    files = build_graph.imported_files("tf_st/experiment/runner.py")
    assert "tf_st/saved_model.py" in files  # imported inside a function
    assert "tf_st/data/__init__.py" in files  # "from tf_st import data"
    assert "tf_st/__init__.py" not in files  # the parent package of a submodule import
    assert "export/evaluate.py" in build_graph.imported_files("tests/test_trainer.py")
