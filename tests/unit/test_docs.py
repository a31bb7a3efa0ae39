"""The README and docs/ stay navigable: every relative link resolves to a file (and to a heading of it when
it names one), every `docs/paper.md, <Section>` citation in configs, code and tests names a section of
docs/paper.md, and the README stays a five-minute read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CITATION = re.compile(r"docs/paper\.md, ([A-Z][A-Za-z0-9 -]*?)(?=[):,]| by | table)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a markdown page's headings (lower case, punctuation dropped, spaces -> '-')."""
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def headings(page: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in page.read_text().splitlines() if line.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        missing_anchor = (
            bool(anchor) and dest.suffix == ".md" and dest.exists() and anchor not in anchors(dest)
        )
        if not dest.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n < 220, f"README.md has {n} lines: move detail to docs/"


def test_paper_citations_name_a_section_of_docs_paper():
    sections = headings(ROOT / "docs" / "paper.md")
    cited = {}
    for folder in ("conf", "jina5", "tests", "experiments"):
        for f in (ROOT / folder).rglob("*"):
            if f.suffix in (".py", ".yaml") and f.is_file():
                for name in CITATION.findall(f.read_text()):
                    cited.setdefault(name.strip(), f.relative_to(ROOT).as_posix())
    assert cited, "no citation of docs/paper.md found"
    missing = {name: f for name, f in cited.items() if not any(h.startswith(name) for h in sections)}
    assert not missing, f"cited sections absent from docs/paper.md: {missing}"
