"""The user-facing documents: a README for users (short, undated, self-contained, with
the two commands that .ci/run runs), docs/ whose every named test, path and
``python -m`` module exists, the Apache-2.0 LICENSE, a CITATION.cff carrying the
package version, and benchmarks/RESULTS.md organised by topic rather than by date."""

import importlib
import os
import re

import pytest

import tf_st

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = sorted(os.path.join("docs", n) for n in os.listdir(os.path.join(ROOT, "docs"))
              if n.endswith(".md"))
USER_DOCS = ["README.md", *DOCS, "benchmarks/README.md", "benchmarks/RESULTS.md",
             "ARCHITECTURE.md", "CHANGELOG.md", "CITATION.cff"]
ISO_DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
OUTSIDE = ("../shared", "/work/", "/root/", "/tmp/ref", "/home/")
# (export/ is left out: `export/1/` names a run directory's export, not the package.)
TOP_LEVEL = ("tf_st", "trainers", "benchmarks", "tests", "docs", ".ci")


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_documents_were_found():
    assert "docs/training.md" in DOCS and "docs/reference-implementations.md" in DOCS


def test_readme_is_short_and_undated():
    readme = _read("README.md")
    lines = readme.splitlines()
    assert len(lines) <= 300, f"README has {len(lines)} lines; move detail to docs/"
    dated = [i for i, line in enumerate(lines, 1) if ISO_DATE.search(line)]
    assert not dated, f"dated lines in README (history goes to CHANGELOG.md): {dated}"


@pytest.mark.parametrize("name", USER_DOCS)
def test_no_path_outside_the_repository(name):
    text = _read(name)
    found = [(needle, text.count(needle)) for needle in OUTSIDE if needle in text]
    assert not found, f"{name} names paths outside the repository: {found}"


def _named_paths(text):
    """Repository paths in backquotes (``tests/test_x.py::test_y`` -> the file)."""
    for m in re.finditer(r"`([^`\s]+)`", text):
        path = m.group(1).split("::")[0].rstrip(".,:;)")
        if path.split("/")[0] in TOP_LEVEL and "/" in path and not any(
                c in path for c in "<>*$=|"):
            yield path


def _modules(text):
    return set(re.findall(r"python -m ([A-Za-z_][\w.]*\w)(?![\w.<])", text))


def _module_exists(module):
    base = os.path.join(ROOT, *module.split("."))
    return any(os.path.exists(p) for p in (base + ".py", os.path.join(base, "__main__.py")))


@pytest.mark.parametrize("name", ["README.md", *DOCS, "benchmarks/RESULTS.md",
                                  "benchmarks/README.md"])
def test_named_paths_and_modules_exist(name):
    text = _read(name)
    missing = sorted({p for p in _named_paths(text) if not os.path.exists(os.path.join(ROOT, p))})
    assert not missing, f"{name} names paths that do not exist: {missing}"
    tests = set(re.findall(r"\btests/[\w/]+\.py", text))
    assert all(os.path.exists(os.path.join(ROOT, t)) for t in tests), tests
    # pip and pytest are tools, not repository modules.
    modules = sorted(m for m in _modules(text) - {"pip", "pytest", "venv"}
                     if not _module_exists(m))
    assert not modules, f"{name} runs modules that are not in the repository: {modules}"


def test_every_method_key_has_a_parity_test_in_the_readme():
    readme = _read("README.md")
    table = readme[readme.index("## Methods"):readme.index("## Attacks")]
    from tf_st import methods
    for key in methods.METHODS:
        assert f"`{key}`" in table, f"method {key!r} missing from the README's methods table"
    rows = [line for line in table.splitlines() if line.startswith("| `") and "natural" not in line]
    assert rows and all(re.search(r"`tests/test_\w+\.py`", row) for row in rows), rows


def _cited_reference_sections(text):
    doc = "docs/reference-implementations.md"
    for m in re.finditer(re.escape(doc) + r'\s+"([^"]+)"', re.sub(r"\s+", " ", text)):
        yield m.group(1)


def test_cited_reference_sections_exist():
    headings, current = {}, None
    for line in _read("docs/reference-implementations.md").splitlines():
        if line.startswith("## "):
            current = line[3:].split(" (")[0].strip()
            headings[current] = set()
        elif line.startswith("### ") and current:
            headings[current].add(line[4:].strip())
    bad = []
    for name in ["README.md", *DOCS]:
        for cited in _cited_reference_sections(_read(name)):
            top, _, sub = (p.strip() for p in cited.partition("/"))
            if top not in headings or (sub and sub not in headings[top]):
                bad.append((name, cited))
    assert not bad, bad


def test_the_two_commands_and_ci():
    """The README opens with two commands, (a) install + the main job and (b) install +
    the tests, and .ci/run runs (b) with only the constraints file and quiet flags added."""
    readme = _read("README.md")
    section = readme[readme.index("## The two commands"):readme.index("\n## ", readme.index(
        "## The two commands") + 5)]
    blocks = [b.strip() for b in _bash_blocks(section)]
    assert len(blocks) == 2 and all("\n" not in b for b in blocks), blocks
    main, tests = blocks
    assert main.startswith("pip install -e . && python -m trainers.st --dataset=cifar10_mini")
    assert tests.startswith('pip install -e ".[test]"')
    assert tests.endswith("python -m pytest -q --durations=15 tests")

    def normalised(command):
        command = command.replace("python -m pip", "pip")
        command = command.replace(" -c .ci/constraints.txt", "").replace("pip install -q", "pip install")
        return [part.strip() for part in command.split("&&")]

    run = [line for line in _read(".ci/run").splitlines()
           if "pytest" in line and not line.startswith("#")]
    assert len(run) == 1 and "-c .ci/constraints.txt" in run[0]
    assert normalised(run[0]) == normalised(tests)


def test_license_is_apache_2():
    text = _read("LICENSE")
    assert text.lstrip().startswith("Apache License")
    for phrase in ("Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE, REPRODUCTION, "
                   "AND DISTRIBUTION", "9. Accepting Warranty or Additional Liability.",
                   "END OF TERMS AND CONDITIONS"):
        assert phrase in text, phrase
    assert len(text) > 10000, "the full license text, not a summary"


def _citation():
    """CITATION.cff as a dict: parsed with PyYAML when it is installed (it is not a
    declared dependency), else its top-level scalar keys and reference titles."""
    text = _read("CITATION.cff")
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        data = dict(re.findall(r'^([\w-]+):\s*"?([^"\n]*?)"?\s*$', text, re.M))
        data["references"] = [{"title": t} for t in
                              re.findall(r'^\s+(?:- )?title:\s*"([^"]+)"', text, re.M)]
        return data
    return yaml.safe_load(text)


def test_citation_cff():
    cff = _citation()
    assert str(cff["cff-version"]) == "1.2.0"
    assert str(cff["version"]) == tf_st.__version__
    assert cff["license"] == "Apache-2.0"
    assert cff.get("title") and cff.get("message")
    titles = [r["title"] for r in cff["references"]]
    assert "Squeeze Training for Adversarial Robustness" in titles


def test_results_are_organised_by_topic():
    results = _read("benchmarks/RESULTS.md")
    headings = [line for line in results.splitlines() if line.startswith("#")]
    dated = [h for h in headings if ISO_DATE.search(h) or re.search(r"\(issue\b", h)]
    assert not dated, f"RESULTS.md headings by date or issue (history: CHANGELOG.md): {dated}"
    assert "outside the repository" not in results and "not in the repository" not in results
