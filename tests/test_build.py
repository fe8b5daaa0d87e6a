"""BUILD lists every Python file of the project, and a py_test for every test file."""

import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_module_and_test_is_in_build():
    with open(os.path.join(ROOT, "BUILD")) as f:
        build = f.read()
    from tests import build_graph
    listed = build_graph.listed_files(build)  # string literals and glob([...]) matches
    empty = [g for g in build_graph.globs(build) if not build_graph.expand_glob(*g)]
    assert not empty, f"globs that match nothing (an error in Bazel): {empty}"
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


def test_a_glob_covers_a_new_method_module_and_fix_keeps_it(tmp_path, monkeypatch):
    """``tf_st_methods`` lists its sources with ``glob``: a new module under
    tf_st/methods/ is a source of the rule without a BUILD edit, and ``--fix`` leaves the
    glob as written."""
    from tests import build_graph
    with open(os.path.join(ROOT, "BUILD")) as f:
        build = f.read()
    assert 'srcs = glob(["tf_st/methods/*.py"]),' in build
    assert build_graph.fix(build) == build
    rule = next(r for r in build_graph.parse_build(build) if r["name"] == "tf_st_methods")
    assert rule["srcs"] == sorted(os.path.relpath(p, ROOT) for p in
                                  glob.glob(os.path.join(ROOT, "tf_st/methods/*.py")))
    # A copy of the tree's shape with one more method module.
    (tmp_path / "tf_st" / "methods" / "sub").mkdir(parents=True)
    for name in ("__init__.py", "madry.py", "foo.py", "sub/deeper.py"):
        (tmp_path / "tf_st" / "methods" / name).write_text("")
    monkeypatch.setattr(build_graph, "ROOT", str(tmp_path))
    text = ('py_library(\n    name = "tf_st_methods",\n    srcs = glob(["tf_st/methods/*.py"]),'
            '\n)\n\npy_library(\n    name = "x",\n    srcs = ["a.py"] + glob(\n'
            '        ["tf_st/**/*.py"],\n        exclude = ["tf_st/methods/*.py"],\n    ),\n)\n')
    rules = build_graph.parse_build(text)
    assert rules[0]["srcs"] == ["tf_st/methods/__init__.py", "tf_st/methods/foo.py",
                                "tf_st/methods/madry.py"]
    assert rules[1]["srcs"] == ["a.py", "tf_st/methods/sub/deeper.py"]
    assert build_graph.listed_files(text) == {"a.py", "tf_st/methods/__init__.py",
                                              "tf_st/methods/foo.py", "tf_st/methods/madry.py",
                                              "tf_st/methods/sub/deeper.py"}
    assert build_graph.add_missing(text) == text  # nothing to add: the globs cover it all


def test_build_graph_is_acyclic():
    """Bazel refuses a dependency cycle; the graph BUILD lists has none."""
    from tests import build_graph
    with open(os.path.join(build_graph.ROOT, "BUILD")) as f:
        deps = {r["name"]: r["deps"] for r in build_graph.parse_build(f.read())}
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", "cycle: " + " -> ".join(path + [name])
        state[name] = "open"
        for d in deps.get(name, ()):
            visit(d, path + [name])
        state[name] = "done"

    for name in deps:
        visit(name, [])
