"""Relative links in the repository's markdown files outside docs/ point at files that exist.

mkdocs checks the links of docs/ (``validation`` in mkdocs.yml); READMEs elsewhere (the
fixtures', the plugins') are read on GitHub or in an editor, where nothing checks them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".nox", ".venv", "site", "build", "docs", "node_modules", ".git"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`(\.\.?/[^`\s*]+)`")  # a relative path named in code: `../x.md`


def markdown_files() -> list[Path]:
    return sorted(
        p for p in ROOT.rglob("*.md") if not SKIP_DIRS.intersection(p.relative_to(ROOT).parts[:-1])
    )


def broken_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text) + CODE_PATH.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # URLs, mailto:, in-page anchors
            continue
        if not (page.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    return broken


def test_the_fixtures_readme_is_checked() -> None:
    assert ROOT / "tests" / "fixtures" / "mxnet" / "README.md" in markdown_files()


def test_checker_notices_a_missing_file(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    (tmp_path / "here.md").write_text("x")
    page.write_text(
        "[ok](here.md#a) [web](https://x.org) [gone](../nowhere.md) [a](#b)\n"
        "in `./here.md`, see `../../reference/spec.md`\n"
    )
    assert broken_links(page) == ["../nowhere.md", "../../reference/spec.md"]


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []
