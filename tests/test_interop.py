"""docs/interop.md runs as written: each section's recipes, after the page's shared set-up.

The numpy/DLPack and plain-zarr recipes run everywhere; the PyTorch and JAX ones where those
libraries are importable (``nox -s interop`` installs JAX; PyTorch where it is installed).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "interop.md"
#: A word in a section's heading -> the module its recipes need.
NEEDS = {"PyTorch": "torch", "JAX": "jax", "zarr": "zarr"}


def sections() -> dict[str, list[str]]:
    """Map each ``## `` heading (``""`` for the page's start) to its python blocks."""
    out: dict[str, list[str]] = {}
    heading = ""
    for part in re.split(r"^## (.+)$", PAGE.read_text(encoding="utf-8"), flags=re.M):
        blocks = re.findall(r"```python\n(.*?)```", part, re.S)
        if blocks or heading not in out:
            out.setdefault(heading, []).extend(blocks)
        heading = part.strip() if "\n" not in part.strip() else heading
    return out


RECIPES = {name: blocks for name, blocks in sections().items() if name and blocks}


def test_page_has_the_promised_recipes() -> None:
    assert sections()[""], "the shared set-up block is missing"
    assert set(RECIPES) >= {
        "DLPack and zero copies",
        "To a PyTorch `state_dict`",
        "From a PyTorch `state_dict`",
        "JAX",
        "Reading a checkpoint with plain zarr",
    }


@pytest.mark.timeout(300)
@pytest.mark.parametrize("section", sorted(RECIPES))
def test_recipe_runs(section: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for word, module in NEEDS.items():
        if word in section:
            pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "interop_recipe"}
    for block in sections()[""] + RECIPES[section]:
        exec(compile(block, f"{PAGE}: {section}", "exec"), namespace)


@pytest.mark.timeout(300)
def test_plain_zarr_recipe_needs_no_paramarena(tmp_path: Path) -> None:
    """The reader in the zarr recipe uses json, pathlib, zarr, numpy and ml_dtypes only."""
    (block,) = RECIPES["Reading a checkpoint with plain zarr"]
    reader = block.split("def read_checkpoint", 1)[1].split("\n\n\n", 1)[0]
    code = re.sub(r'""".*?"""', "", reader, flags=re.S)  # the docstring may name it
    assert "pa." not in code
    assert "paramarena" not in code
    imports = set(re.findall(r"^(?:import|from) (\w+)", block, re.M))
    assert imports <= {"json", "pathlib", "zarr"}
