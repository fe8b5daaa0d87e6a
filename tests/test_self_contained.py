"""The library is self-contained: nothing under tf_st/, trainers/ or export/ names a path
outside the repository, and every repository document they cite exists -- including
the sections of docs/reference-implementations.md named in quotes after a citation
(``docs/reference-implementations.md "ST-AT / Training step"``)."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tf_st", "trainers", "export")
REFERENCE_DOC = "docs/reference-implementations.md"
FORBIDDEN = ("../shared", "/work/", "/root/", "/tmp/ref")


def _text_files():
    for package in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, package)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    raw = f.read()
                if b"\0" in raw:  # binary (the bundled .npz)
                    continue
                yield os.path.relpath(path, ROOT), raw.decode("utf-8")


FILES = dict(_text_files())


def _sections():
    """{top-level section name: set of its subsection names} of the reference doc.  A
    top-level heading ``## ST-AT (qizhangli/ST-AT)`` is named ``ST-AT`` (the text before
    the repository in parentheses) and by its whole text."""
    with open(os.path.join(ROOT, REFERENCE_DOC), encoding="utf-8") as f:
        lines = f.read().splitlines()
    sections, current = {}, None
    for line in lines:
        if line.startswith("## "):
            title = line[3:].strip()
            current = set()
            sections[title] = current
            sections.setdefault(title.split(" (")[0], current)
        elif line.startswith("### ") and current is not None:
            current.add(line[4:].strip())
    return sections


def test_files_were_found():
    assert any(p.endswith(".py") for p in FILES), "no source files scanned"


@pytest.mark.parametrize("needle", FORBIDDEN)
def test_no_path_outside_the_repository(needle):
    offenders = [f"{path}:{i}" for path, text in FILES.items()
                 for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert not offenders, f"{needle!r} named in: {offenders}"


def test_reference_doc_cited_only_inside_the_repository():
    offenders = []
    for path, text in FILES.items():
        for m in re.finditer(r"reference-implementations\.md", text):
            if text[max(0, m.start() - 5):m.start()] != "docs/":
                offenders.append(f"{path}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not offenders, f"cite {REFERENCE_DOC}, not an outside copy: {offenders}"


def test_cited_documents_exist():
    missing = []
    for path, text in FILES.items():
        for m in re.finditer(r"\bdocs/[\w./-]*\w", text):
            if not os.path.exists(os.path.join(ROOT, m.group(0))):
                missing.append(f"{path}: {m.group(0)}")
    assert not missing, missing


def _cited_sections(text):
    """The quoted section names right after each citation of the reference doc."""
    for m in re.finditer(re.escape(REFERENCE_DOC), text):
        rest = re.sub(r"\s+", " ", text[m.end():m.end() + 300])
        first = re.match(r'[ ,]*"([^"]+)"', rest)
        if not first:
            continue
        yield first.group(1)
        rest = rest[first.end():]
        while True:
            more = re.match(r'\s*(?:,|and)\s*"([^"]+)"', rest)
            if not more:
                break
            yield more.group(1)
            rest = rest[more.end():]


def test_cited_sections_exist():
    sections = _sections()
    bad, count = [], 0
    for path, text in FILES.items():
        for cited in _cited_sections(text):
            count += 1
            top, _, sub = (part.strip() for part in cited.partition("/"))
            if top not in sections or (sub and sub not in sections[top]):
                bad.append(f"{path}: {cited!r}")
    assert count > 20, f"only {count} section citations found; the parser broke?"
    assert not bad, f"no such section in {REFERENCE_DOC}: {bad}"


@pytest.mark.parametrize("repository", [
    "qizhangli/ST-AT", "liuxingbin/CAT", "zjfheart/Friendly-Adversarial-Training",
    "yaodongyu/TRADES", "YisenWang/MART", "csdongxian/AWP", "yaircarmon/semisup-adv",
    "fra31/auto-attack"])
def test_reference_doc_covers_each_official_repository(repository):
    assert repository in _sections() or any(
        repository in title for title in _sections()), repository
