"""benchmarks/plot.py: ratio tables and JSON results become a PNG."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLOT_PY = ROOT / "benchmarks" / "plot.py"
_SPEC = importlib.util.spec_from_file_location("paramarena_bench_plot", PLOT_PY)
assert _SPEC is not None
assert _SPEC.loader is not None
plot = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = plot  # dataclasses look the module up by name
_SPEC.loader.exec_module(plot)

TABLE = """# Kernel benchmarks

Quiet run, load 0.9: the main table.

| case | paramarena | numpy reference | ratio | target |
|---|---|---|---|---|
| uniform f32, R50 | 10 ms | 40 ms | 4.00x | >= 3x |
| `cast f32->bfloat16` | 5 ms | 2 ms | 0.40x | |
| numba imported? | False | | | False |

| name | value |
|---|---|
| no ratio column | 1.5x |
"""


def test_markdown_ratio_tables_are_parsed() -> None:
    series = plot.parse_markdown_tables(TABLE, "benchmarks")
    assert len(series) == 1
    assert series[0].title == "Kernel benchmarks — Quiet run, load 0.9"
    assert series[0].baseline == "numpy"
    assert series[0].cases == [("uniform f32, R50", 4.0), ("cast f32->bfloat16", 0.4)]


def test_json_results(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps(
            {
                "title": "storage",
                "baseline": "np.savez",
                "cases": [
                    {"case": "npz save", "ratio": 1.5},
                    {"case": "zarr load", "paramarena_s": 0.5, "baseline_s": 1.0},
                    {"case": "broken", "ratio": None},
                ],
            }
        )
    )
    series = plot.load_json(path)
    assert series.cases == [("npz save", 1.5), ("zarr load", 2.0)]


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_plot_writes_png(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "benchmarks.md").write_text(TABLE)
    out = plot.main(["--json", "--docs", str(docs), "--out", str(tmp_path / "img" / "b.png")])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_nothing_to_plot_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no benchmark results"):
        plot.plot([], tmp_path / "x.png")


def test_baseline_is_the_part_after_vs_in_the_ratio_header():
    text = (
        "# Storage\n\nLocal disk:\n\n"
        "| case | save s | save speed vs safetensors |\n|---|---|---|\n| zarr | 0.1 | 1.10x |\n"
    )
    (series,) = plot.parse_markdown_tables(text)
    assert series.baseline == "safetensors"
    assert series.title == "Storage — Local disk"
    assert series.cases == [("zarr", 1.10)]
