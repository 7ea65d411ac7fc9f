"""docs/quickstart.md runs as written (the local part; tests/s3 runs the S3 part)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[1] / "docs" / "quickstart.md"


def python_blocks(until_heading: str | None = None) -> list[str]:
    """Return the ```python blocks of the quickstart, in order, up to a heading prefix."""
    text = QUICKSTART.read_text(encoding="utf-8")
    if until_heading is not None:
        text = text.split(f"\n{until_heading}", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_quickstart_has_python_blocks() -> None:
    assert len(python_blocks("## 4.")) >= 2
    assert len(python_blocks()) > len(python_blocks("## 4."))


def test_quickstart_local_part_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paramarena.hooks.manager import storage_specs

    if "zarr" not in storage_specs():
        pytest.skip("the zarr backend is not registered (the quickstart saves mlp.zarr)")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in python_blocks("## 4."):
        exec(compile(block, str(QUICKSTART), "exec"), namespace)
    for name in ("mlp.zarr", "mlp.params", "mlp.npz"):
        assert (tmp_path / name).exists()
