"""The documentation: every hook has a section in docs/plugins.md; the site builds cleanly."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from paramarena.hooks import specs as hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PLUGINS_PAGE = DOCS / "plugins.md"
MKDOCS_YML = ROOT / "mkdocs.yml"


def hook_names() -> dict[str, list[str]]:
    """Every hook declared in paramarena.hooks.specs with its parameter names (via pluggy marks)."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {
        name: list(inspect.signature(func).parameters)
        for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(func, marker)
    }


def sections(markdown: str) -> dict[str, str]:
    """Map each heading line's text to the text up to the next heading of any level."""
    out: dict[str, str] = {}
    heading, lines = "", []
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and re.match(r"#{1,6} ", line):
            out[heading] = "\n".join(lines)
            heading, lines = line.lstrip("#").strip(), []
        else:
            lines.append(line)
    out[heading] = "\n".join(lines)
    return out


def undocumented_hooks(markdown: str, hooks: dict[str, list[str]]) -> list[str]:
    """Return a problem per hook lacking a section with its signature and an example."""
    problems = []
    by_heading = sections(markdown)
    for name, params in hooks.items():
        matches = [text for head, text in by_heading.items() if name in head]
        if not matches:
            problems.append(f"{name}: no heading names it")
            continue
        text = matches[0]
        if f"def {name}(" not in text:
            problems.append(f"{name}: the section does not show its signature")
        missing = [p for p in params if not re.search(rf"\b{p}\b", text)]
        if missing:
            problems.append(f"{name}: parameters {missing} are not in its section")
        if "@hookimpl" not in text:
            problems.append(f"{name}: the section has no @hookimpl example")
    return problems


def test_hookspecs_are_found() -> None:
    hooks = hook_names()
    assert "paramarena_storage_backends" in hooks
    assert hooks["paramarena_resolve_storage"] == ["uri", "mode"]
    assert len(hooks) >= 6


def test_every_hook_has_a_section_in_plugins_page() -> None:
    problems = undocumented_hooks(PLUGINS_PAGE.read_text(encoding="utf-8"), hook_names())
    assert not problems, "docs/plugins.md is missing hook documentation:\n" + "\n".join(problems)


def test_checker_notices_a_missing_hook() -> None:
    page = (
        "# Plugins\n\n## `paramarena_devices`\n\n```python\n@hookimpl\n"
        "def paramarena_devices(): ...\n```\n"
    )
    hooks = {"paramarena_devices": [], "paramarena_resolve_storage": ["uri", "mode"]}
    assert undocumented_hooks(page, hooks) == ["paramarena_resolve_storage: no heading names it"]
    page += "\n## paramarena_resolve_storage\n\nno example here, uri only\n"
    problems = undocumented_hooks(page, hooks)
    assert "paramarena_resolve_storage: parameters ['mode'] are not in its section" in problems
    assert "paramarena_resolve_storage: the section has no @hookimpl example" in problems


def nav_pages() -> list[str]:
    return re.findall(r":\s*([\w./-]+\.md)\s*$", MKDOCS_YML.read_text(encoding="utf-8"), re.M)


def test_nav_and_docs_directory_agree() -> None:
    nav = nav_pages()
    assert "plugins.md" in nav
    assert len(nav) == len(set(nav)), "a page is listed twice in mkdocs.yml"
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(nav) == on_disk, "mkdocs.yml nav and docs/*.md differ"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_docs_build_strict(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "plugins" / "index.html").exists()
