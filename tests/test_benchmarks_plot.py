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
    assert series[0].family == "kernels"
    assert series[0].cases == [("uniform f32, R50", 4.0), ("cast f32->bfloat16", 0.4)]
    assert series[0].targets == {"uniform f32, R50": 3.0}
    assert series[0].peers == set()


KERNELS = """# Benchmarks: kernels

Kernels, medians of 7:

| case | paramarena | numpy reference | ratio | target | status |
|---|---|---|---|---|---|
| Uniform init, ResNet-50 | 10 ms | 47 ms | 4.55x | >= 3x (R50) | met |
| Uniform init, 1000 x (4,) | 3 ms | 0.6 ms | 0.18x | >= 3x (R50) | not met |
| zero_grad bandwidth | 32 GB/s | 28 GB/s | 115% of memset | >= 70% of memset | met |
| Uniform init, ResNet-50, vs PyTorch | 10 ms | 74 ms | 7.18x | | |
| a row the perf developers added later | 1 ms | 2 ms | 2.00x | >= 5x | not met |
"""


def test_vs_pytorch_rows_get_their_own_panel_and_status_columns_are_ignored() -> None:
    numpy_panel, torch_panel = plot.parse_markdown_tables(KERNELS, "benchmarks")
    assert numpy_panel.baseline == "numpy"
    assert [c[0] for c in numpy_panel.cases] == [
        "Uniform init, ResNet-50",
        "Uniform init, 1000 x (4,)",
        "a row the perf developers added later",
    ]
    # ">= 3x (R50)" is no target for the 1000 tiny parameters
    assert numpy_panel.targets == {
        "Uniform init, ResNet-50": 3.0,
        "a row the perf developers added later": 5.0,
    }
    assert torch_panel.baseline == "PyTorch"
    assert torch_panel.cases == [("Uniform init, ResNet-50", 7.18)]
    assert {numpy_panel.family, torch_panel.family} == {"kernels"}


STORAGE = """# Storage benchmarks

Local disk, median of 9:

| case | save s | load s | save speed vs safetensors | load speed vs safetensors |
|---|---|---|---|---|
| safetensors save_file / load_file | 0.079 | 0.067 | 1.00x | 1.00x |
| np.savez / np.load | 0.164 | 0.093 | 0.48x | 0.73x |
| paramarena zarr save / load | 0.080 | 0.033 | 0.99x | 2.04x |
| paramarena zarr, load 10 names | – | 0.0005 | – | 142x |

`.params` and `.npz`, medians of 5:

| case | seconds | vs numpy |
|---|---|---|
| np.savez / np.load | 0.110 / 0.099 | 1.00x |
| npz save / load | 0.133 / 0.067 | 0.64x / 1.44x |

## S3 (local moto_server)

moto_server, median of 3:

| case | save s | load s | save speed vs npz blob | load speed vs npz blob |
|---|---|---|---|---|
| npz blob via s3fs | 1.119 | 0.618 | 1.00x | 1.00x |
| paramarena zarr | 0.685 | 0.278 | 1.63x | 2.22x |
"""


def test_storage_tables_split_into_families_panels_and_save_load_bars() -> None:
    series = plot.parse_markdown_tables(STORAGE, "benchmarks-storage")
    groups = plot.by_family(series)
    assert list(groups) == ["storage", "files", "s3"]
    save, load = groups["storage"]
    assert save.baseline == "safetensors"
    assert (save.measure, load.measure) == ("save speed", "load speed")
    assert save.cases == [
        ("safetensors save_file", 1.0),
        ("np.savez", 0.48),
        ("paramarena zarr save", 0.99),
    ]
    assert ("paramarena zarr, load 10 names", 142.0) in load.cases
    assert save.peers == {"safetensors save_file", "np.savez"}
    (files,) = groups["files"]
    assert files.cases == [("np.savez / np.load", 1.0), ("npz save", 0.64), ("npz load", 1.44)]
    assert files.peers == {"np.savez / np.load"}
    assert [s.baseline for s in groups["s3"]] == ["npz blob", "npz blob"]
    assert groups["s3"][0].peers == {"npz blob via s3fs"}


@pytest.mark.parametrize(
    ("value", "text"), [(0.6, "0.6x"), (2.0, "2x"), (0.2, "0.2x"), (150.0, "150x")]
)
def test_tick_labels_read_like_ratios(value: float, text: str) -> None:
    assert plot._tick_label(value) == text


def test_ticks_follow_1_2_5() -> None:
    assert plot._ticks(0.15, 30.0) == [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]


def test_narrow_ranges_get_denser_ticks() -> None:
    assert plot._ticks(0.6, 4.0) == [0.7, 1.0, 1.5, 2.0, 3.0]


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
    (docs / "benchmarks-storage.md").write_text(STORAGE)
    written = plot.main(["--json", "--docs", str(docs), "--out-dir", str(tmp_path / "img")])
    assert sorted(p.name for p in written) == [
        "bench-files.png",
        "bench-kernels.png",
        "bench-s3.png",
        "bench-storage.png",
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_nothing_to_plot_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no benchmark results"):
        plot.plot([], tmp_path / "x.png")


def test_baseline_is_the_part_after_vs_in_the_ratio_header() -> None:
    text = (
        "# Storage\n\nLocal disk:\n\n"
        "| case | save s | save speed vs safetensors |\n|---|---|---|\n| zarr | 0.1 | 1.10x |\n"
    )
    (series,) = plot.parse_markdown_tables(text)
    assert series.baseline == "safetensors"
    assert series.measure == "save speed"
    assert series.title == "Storage — Local disk"
    assert series.cases == [("zarr", 1.10)]


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_bars_start_at_1x_peers_are_grey_and_targets_are_lines() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    save = plot.by_family(plot.parse_markdown_tables(STORAGE))["storage"][0]
    save.targets["paramarena zarr save"] = 0.8
    fig, ax = plt.subplots()
    try:
        plot._draw_panel(ax, save)
        bars = ax.patches
        assert [round(b.get_x(), 6) for b in bars] == [1.0, 1.0, 1.0]  # every bar starts at 1x
        ends = sorted(round(b.get_x() + b.get_width(), 6) for b in bars)
        assert ends == [0.48, 0.99, 1.0]
        colours = [to_hex(b.get_facecolor()) for b in bars]
        assert colours == [plot.PEER_COLOUR, plot.PEER_COLOUR, plot.PARAMARENA_COLOUR]
        assert any(list(line.get_xdata()) == [0.8, 0.8] for line in ax.get_lines())
        assert ax.get_xscale() == "log"
        fig.canvas.draw()
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert "0.5x" in ticks
        assert "1x" in ticks
        assert "safetensors" in ax.get_xlabel()
    finally:
        plt.close(fig)


def test_ranges_draw_the_worst_run_and_time_ratios_are_skipped() -> None:
    """The scaling table: ``a-bx`` ranges, ``(vs X)`` headers and ``x the time`` cells."""
    text = (
        "## Dict-level\n\n"
        "| model | initialize s (vs numpy loop) | re-init s (vs fresh init) |\n"
        "|---|---|---|\n"
        "| ResNet-50 | 0.010 (4.82-5.49x) | 0.010 (0.89-0.94x) (x the time) |\n"
        "| 100k params | 0.238 (0.32x) | 0.330 (1.37x) (x the time) |\n"
    )
    (series,) = plot.parse_markdown_tables(text)
    assert series.baseline == "numpy loop"
    assert series.measure == "initialize"
    assert series.cases == [("ResNet-50", 4.82), ("100k params", 0.32)]
