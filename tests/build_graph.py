"""BUILD's dependency graph against the imports of the code.

Each BUILD rule lists its ``srcs`` and its *direct* ``deps``: the rules owning every
project module its sources import (at module level or inside functions: the code
imports lazily), and nothing else.  ``tests/test_build.py`` asserts that; when several
branches merge, the deps are regenerated rather than edited by hand:

  python tests/build_graph.py          # prints what differs
  python tests/build_graph.py --fix    # rewrites the deps lists in BUILD

``srcs`` may be a Bazel ``glob([...])`` (``tf_st_methods`` takes every module of
``tf_st/methods``, so a new method module needs no BUILD edit); the parser expands it
against the tree and ``--fix`` leaves it as written.
"""

import ast
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tf_st", "trainers", "export", "benchmarks", "tests")
RULE = re.compile(r'(py_\w+)\(\n(.*?)\n\)', re.S)


GLOB = re.compile(r'glob\(\s*\[(.*?)\]\s*(?:,\s*exclude\s*=\s*\[(.*?)\]\s*)?,?\s*\)', re.S)
SRCS = re.compile(r'^    srcs = (.*?),?$(?=\n    \w+ = |\Z)', re.S | re.M)


def expand_glob(patterns, exclude=()):
    """The files of a Bazel ``glob(patterns, exclude)``, sorted: ``*`` stays inside one
    directory, ``**`` crosses directories (Python's ``glob`` with ``recursive``)."""
    found = set()
    for pattern in patterns:
        found |= {os.path.relpath(p, ROOT).replace(os.sep, "/") for p in
                  glob.glob(os.path.join(ROOT, pattern), recursive=True) if os.path.isfile(p)}
    for pattern in exclude:
        found -= {os.path.relpath(p, ROOT).replace(os.sep, "/") for p in
                  glob.glob(os.path.join(ROOT, pattern), recursive=True)}
    return sorted(found)


def globs(text):
    """``[(patterns, exclude)]`` of every ``glob(...)`` in ``text``."""
    return [(re.findall(r'"([^"]+)"', m.group(1)), re.findall(r'"([^"]+)"', m.group(2) or ""))
            for m in GLOB.finditer(text)]


def expand_srcs(expr):
    """The Python files a ``srcs`` expression names: its string literals, and the
    files its ``glob([...])`` calls match (``[...] + glob([...])`` works too)."""
    files = [f for patterns, exclude in globs(expr) for f in expand_glob(patterns, exclude)]
    literal = GLOB.sub("", expr)
    files += re.findall(r'"([\w/.]+\.py)"', literal)
    return sorted(set(f for f in files if f.endswith(".py")))


def listed_files(text):
    """Every Python file BUILD names: string literals anywhere, and glob matches."""
    return set(re.findall(r'"([\w/.]+\.py)"', GLOB.sub("", text))) | {
        f for patterns, exclude in globs(text) for f in expand_glob(patterns, exclude)
        if f.endswith(".py")}


def parse_build(text):
    """``[{kind, name, srcs, deps, span}]`` in file order (``srcs`` with its globs
    expanded)."""
    rules = []
    for m in RULE.finditer(text):
        body = m.group(2)
        name = re.search(r'name = "([^"]+)"', body).group(1)
        srcs_m = SRCS.search(body)
        srcs = expand_srcs(srcs_m.group(1)) if srcs_m else []
        deps_m = re.search(r'deps = \[(.*?)\]', body, re.S)
        deps = re.findall(r'":([\w]+)"', deps_m.group(1)) if deps_m else []
        rules.append(dict(kind=m.group(1), name=name, srcs=srcs, deps=deps, span=m.span()))
    return rules


def module_file(module):
    """The project file of a dotted module name, or None (third-party, or an attribute)."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = os.path.join(ROOT, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.exists(path):
            return os.path.relpath(path, ROOT)
    return None


def imported_files(path):
    """Project files ``path`` uses: imported anywhere (``from pkg import submodule``
    counts the submodule, not ``pkg``; ``from module import name`` the module), or run
    as ``python -m <module>`` (a string constant naming a project module)."""
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [n for n in subs if module_file(n)]
            if len(names) < len(subs):
                names.append(node.module)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+", node.value)):
            names = [node.value]
        for name in names:
            f = module_file(name)
            if f:
                out.add(f)
    return out


def required_deps(rules):
    """``{rule name: sorted direct deps}`` from the imports (a test also needs the rule
    of ``tests/conftest.py``, which pytest loads for it)."""
    owner = {src: r["name"] for r in rules for src in r["srcs"]}
    out = {}
    for r in rules:
        need = set()
        if r["kind"] == "py_test" and "tests/conftest.py" in owner:
            need.add(owner["tests/conftest.py"])
        for src in r["srcs"]:
            for f in imported_files(src):
                if f in owner and owner[f] != r["name"]:
                    need.add(owner[f])
        out[r["name"]] = sorted(need)
    return out


def project_files():
    return sorted(os.path.relpath(p, ROOT) for d in PACKAGES
                  for p in glob.glob(os.path.join(ROOT, d, "**", "*.py"), recursive=True))


def problems(text):
    rules = parse_build(text)
    need = required_deps(rules)
    out = []
    for r in rules:
        missing = sorted(set(need[r["name"]]) - set(r["deps"]))
        unused = sorted(set(r["deps"]) - set(need[r["name"]]))
        if missing or unused:
            out.append(f"{r['name']}: add {missing}, remove {unused}")
    return out


def _library_for(path):
    """The library rule a new library file joins (its package's)."""
    parts = path.split("/")
    if parts[0] == "tf_st":
        return "tf_st" if len(parts) == 2 else f"tf_st_{parts[1]}"
    return {"tests": "tests_helpers"}.get(parts[0], parts[0])


def add_missing(text):
    """Adds every project file BUILD does not list: a ``py_test`` per new test file, a
    ``py_binary`` per new trainer or benchmark script, other files to their package's
    library."""
    listed = {src for r in parse_build(text) for src in r["srcs"]}
    libraries = {"trainers/runner.py", "trainers/__init__.py", "benchmarks/__init__.py",
                 "benchmarks/flops.py"}
    for path in project_files():
        if path in listed:
            continue
        name = path[:-3].replace("/", "_")
        base = os.path.basename(path)
        if path.startswith("tests/") and base.startswith("test_"):
            text += (f'\npy_test(\n    name = "{name}",\n    srcs = ["{path}"],\n'
                     f'    size = "medium",\n)\n')
        elif path.split("/")[0] in ("trainers", "benchmarks") and path not in libraries:
            text += f'\npy_binary(\n    name = "{name}",\n    srcs = ["{path}"],\n)\n'
        else:
            lib = _library_for(path)
            m = re.search(r'name = "%s",\n    srcs = \[(.*?)\]' % re.escape(lib), text, re.S)
            if m is None:
                raise SystemExit(f"BUILD has no rule {lib!r} with a list of srcs for {path}: "
                                 "add a py_library for the new package (or widen its glob), "
                                 "then rerun --fix")
            srcs = sorted(set(re.findall(r'"([\w/.]+)"', m.group(1))) | {path})
            text = text[:m.start(1)] + ", ".join(f'"{x}"' for x in srcs) + text[m.end(1):]
    return text


def remove_stale(text):
    """Drops sources that no longer exist, and rules left without sources."""
    for r in reversed(parse_build(text)):
        start, end = r["span"]
        gone = [src for src in r["srcs"] if not os.path.exists(os.path.join(ROOT, src))]
        if not gone:
            continue
        if len(gone) == len(r["srcs"]):
            text = text[:start] + text[end:].lstrip("\n")
            continue
        block = text[start:end]
        for src in gone:
            block = block.replace(f', "{src}"', "").replace(f'"{src}", ', "")
        text = text[:start] + block + text[end:]
    return text


def fix(text):
    text = add_missing(remove_stale(text))
    rules = parse_build(text)
    need = required_deps(rules)
    for r in reversed(rules):
        start, end = r["span"]
        block = text[start:end]
        deps = ", ".join(f'":{d}"' for d in need[r["name"]])
        if re.search(r'deps = \[.*?\]', block, re.S):
            new = f'deps = [{deps}]' if deps else ""
            block = re.sub(r'\n    deps = \[.*?\],?' if not deps else r'deps = \[.*?\]',
                           "" if not deps else new, block, count=1, flags=re.S)
        elif deps:
            block = block.replace("\n)", f"\n    deps = [{deps}],\n)")
        text = text[:start] + block + text[end:]
    return text


def main(argv):
    path = os.path.join(ROOT, "BUILD")
    with open(path) as f:
        text = f.read()
    if "--fix" in argv:
        fixed = fix(text)  # computed before the file is opened for writing: a failure keeps it
        with open(path, "w") as f:
            f.write(fixed)
        print("BUILD deps rewritten")
        return 0
    found = problems(text)
    print("\n".join(found) or "BUILD deps match the imports")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
