"""The docs hold together: relative links and the docs that code comments cite exist, and
every markdown table has its header row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .paths import REPO_ROOT

DOCS = sorted((REPO_ROOT / "docs").glob("*.md")) + [REPO_ROOT / "README.md"]
SOURCES = [p for folder in ("allama", "src_native", "benchmarks", "scripts", "examples")
           for p in sorted((REPO_ROOT / folder).rglob("*")) if p.suffix in (".py", ".cpp", ".h", ".sh", ".md")]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CITED_DOC = re.compile(r"\bdocs/[A-Za-z0-9_.-]+\.md\b")
SECTION = re.compile(r"\(docs/([A-Za-z0-9_.-]+\.md), \"([^\"]+)\"\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL, or an anchor in the same page
        if not (doc.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{doc.name} links to missing files: {broken}"


def test_docs_cited_in_code_exist():
    missing = sorted({f"{p.relative_to(REPO_ROOT)}: {m}" for p in SOURCES for m in CITED_DOC.findall(p.read_text())
                      if not (REPO_ROOT / m).exists()})
    assert not missing, missing


def test_sections_cited_in_code_exist():
    missing = []
    for path in SOURCES:
        for doc, section in SECTION.findall(path.read_text()):
            if f"## {section}\n" not in (REPO_ROOT / "docs" / doc).read_text():
                missing.append(f"{path.relative_to(REPO_ROOT)}: docs/{doc}, {section!r}")
    assert not missing, missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_table_has_a_header_row(doc: Path):
    lines = doc.read_text().splitlines()
    headerless = [i + 1 for i, line in enumerate(lines)
                  if re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()) and (i == 0 or not lines[i - 1].startswith("|"))]
    assert not headerless, f"{doc.name}: table separators without a header row at lines {headerless}"
