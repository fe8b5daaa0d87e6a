"""The layer order of ARCHITECTURE.md, enforced on every import of every module,
function-level imports and ``python -m`` launches included (``tests/build_graph.py``
reads them): imports only go down, never sideways between the packages of one layer,
and the library never imports the CLIs, the export package, the benchmarks or the tests.
"""

import glob
import os

from tests import build_graph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Bottom first.  Units: a top-level package, or a sub-package / module of tf_st.
LAYERS = (
    ("tf_st", "tf_st.cli", "tf_st.fileio", "tf_st.distribute", "tf_st.provenance",
     "tf_st.saved_model", "tf_st.seeds"),
    ("tf_st.data", "tf_st.models"),
    ("tf_st.attacks",),
    ("tf_st.methods", "tf_st.evaluation"),
    ("tf_st.training",),
    ("tf_st.experiment",),
    ("tf_st.analysis",),
    ("tf_st.console",),
    ("export",),
    ("trainers",),
    ("benchmarks",),
    ("tests",),
)
# Units of one layer that may import each other (the bottom layer's small modules).
SHARED_LAYERS = {0}

# Known upward imports still to be removed, each with what removes it.  Nothing may be
# added here: a new entry is a new layering defect.
PENDING = set()


def unit(path):
    parts = path[:-3].split("/")
    if parts[0] != "tf_st":
        return parts[0]
    if len(parts) == 2:
        return "tf_st" if parts[1] == "__init__" else f"tf_st.{parts[1]}"
    return f"tf_st.{parts[1]}"


def layer(u):
    for i, units in enumerate(LAYERS):
        if u in units:
            return i
    raise AssertionError(f"{u} is in no layer of tests/test_layers.py (and ARCHITECTURE.md)")


def edges(packages=("tf_st", "export", "trainers", "benchmarks")):
    out = []
    for package in packages:
        for path in sorted(glob.glob(os.path.join(ROOT, package, "**", "*.py"), recursive=True)):
            path = os.path.relpath(path, ROOT)
            for target in build_graph.imported_files(path):
                if unit(path) != unit(target):
                    out.append((path, target))
    return out


def test_imports_only_go_down():
    wrong = []
    for path, target in edges():
        a, b = layer(unit(path)), layer(unit(target))
        if (a < b or (a == b and a not in SHARED_LAYERS)) and (path, target) not in PENDING:
            wrong.append(f"{path} imports {target} ({unit(path)} -> {unit(target)})")
    assert not wrong, "imports that run upward or sideways:\n" + "\n".join(wrong)


def test_pending_exceptions_still_exist():
    """An exception that no longer occurs is removed from PENDING, so the list shrinks."""
    assert PENDING <= set(edges()), sorted(PENDING - set(edges()))


def test_the_checker_sees_function_level_and_launched_imports(tmp_path):
    found = set(edges())
    # Function-level: the per-epoch evaluation callback imports evaluation when it runs.
    assert ("tf_st/training/callbacks.py", "tf_st/evaluation/__init__.py") in found
    # `python -m <module>` inside a string counts as an import (the kill tests launch
    # the trainer that way).
    assert ("tests/reliability/test_kill_resume.py", "trainers/trades.py") in set(
        edges(packages=("tests",)))
    assert layer("tf_st.attacks") < layer("tf_st.methods") < layer("tf_st.training") \
        < layer("tf_st.experiment") < layer("tf_st.analysis")
