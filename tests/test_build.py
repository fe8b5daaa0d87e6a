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
