"""Plot benchmark ratios into ``docs/img/benchmarks.png`` (matplotlib).

Sources, in this order of preference:

1. JSON result files (given with ``--json``, or every ``benchmarks/results/*.json``)::

       {"title": "Kernels (ResNet-50 shapes)",
        "baseline": "numpy",
        "cases": [{"case": "uniform f32", "ratio": 3.1}, ...]}

   ``ratio`` is baseline time / paramarena time (> 1: paramarena is faster). A case may give
   ``"paramarena_s"`` and ``"baseline_s"`` instead; the ratio is computed from them.
2. The markdown tables in ``docs/benchmarks*.md``: every table with a column whose header
   contains ``ratio``, ``speedup`` or ``vs`` is plotted, its first column naming the cases and
   values like ``2.35x`` read from that column (rows without a number are skipped).

Run ``python benchmarks/plot.py [--json FILE ...] [--docs DIR] [--out PNG]`` after the
benchmark scripts (``nox -s benchmarks`` does).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "img" / "benchmarks.png"
_RATIO_HEADERS = ("ratio", "speedup", "vs")
_NUMBER_X = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?|\.\d+)\s*[x×]", re.I)


@dataclass
class Series:
    """One panel of the figure: named ratios against a baseline."""

    title: str
    baseline: str = "baseline"
    cases: list[tuple[str, float]] = field(default_factory=list)


def load_json(path: Path) -> Series:
    """Read one JSON results file (see the module docstring for the schema)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    series = Series(str(data.get("title", path.stem)), str(data.get("baseline", "baseline")))
    for case in data.get("cases", []):
        ratio = case.get("ratio")
        if ratio is None and case.get("paramarena_s") and case.get("baseline_s") is not None:
            ratio = float(case["baseline_s"]) / float(case["paramarena_s"])
        if ratio is not None and math.isfinite(float(ratio)) and float(ratio) > 0:
            series.cases.append((str(case["case"]), float(ratio)))
    return series


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _strip_md(text: str) -> str:
    return re.sub(r"`|\*\*|__", "", text).strip()


def parse_markdown_tables(text: str, source: str = "") -> list[Series]:
    """Return a :class:`Series` per markdown table with a ratio-like column."""
    out: list[Series] = []
    lines = text.splitlines()
    heading = source
    page_title = ""
    caption = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading, caption = line.lstrip("#").strip(), ""
            if line.startswith("# ") and not page_title:
                page_title = heading
        elif line.strip() and not line.lstrip().startswith("|"):
            caption = line.strip()
        is_table = (
            line.lstrip().startswith("|")
            and i + 1 < len(lines)
            and re.fullmatch(r"\s*\|?\s*:?-{2,}.*", lines[i + 1]) is not None
        )
        if not is_table:
            i += 1
            continue
        header = [_strip_md(c).lower() for c in _cells(line)]
        rows = []
        i += 2
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            rows.append(_cells(lines[i]))
            i += 1
        column = next(
            (k for k, h in enumerate(header) if any(word in h for word in _RATIO_HEADERS)), None
        )
        if column is None or column == 0:
            continue
        reference = next((h for h in header if "reference" in h or "baseline" in h), "")
        ratio_header = header[column]
        baseline = (
            reference.replace("reference", "").replace("baseline", "").strip()
            or (ratio_header.split(" vs ", 1)[1] if " vs " in ratio_header else "")
            or ratio_header.replace("vs", "").replace("ratio", "").strip(" ()")
            or "baseline"
        )
        title = _strip_md(page_title or heading) or "benchmarks"
        lead = _strip_md(re.split(r":(?:\s|$)", caption, maxsplit=1)[0])  # "Full run, ...:"
        if lead and len(lead) <= 90:
            title += " — " + lead
        series = Series(title, baseline)
        for row in rows:
            if len(row) <= column:
                continue
            match = _NUMBER_X.search(row[column])
            if match:
                series.cases.append((_strip_md(row[0]), float(match.group(1))))
        if series.cases:
            out.append(series)
    return out


def collect(json_files: list[Path], docs_dir: Path) -> list[Series]:
    """Gather the series to plot: JSON files if any, else the markdown tables of the docs."""
    if json_files:
        return [s for s in (load_json(p) for p in json_files) if s.cases]
    series: list[Series] = []
    for page in sorted(docs_dir.glob("benchmarks*.md")):
        series.extend(parse_markdown_tables(page.read_text(encoding="utf-8"), page.stem))
    return series


def plot(series: list[Series], out: Path) -> Path:
    """Draw one horizontal bar panel per series (log scale, a line at 1x) and save ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not series:
        raise SystemExit("no benchmark results found (no JSON files, no ratio tables in docs)")
    heights = [max(1.6, 0.32 * len(s.cases) + 1.0) for s in series]
    fig, axes = plt.subplots(
        len(series), 1, figsize=(9, sum(heights)), gridspec_kw={"height_ratios": heights}
    )
    axes_list = list(axes) if len(series) > 1 else [axes]
    for ax, s in zip(axes_list, series, strict=True):
        labels = [c[0] if len(c[0]) <= 60 else c[0][:57] + "..." for c in s.cases]
        values = [c[1] for c in s.cases]
        colors = ["#3f51b5" if v >= 1 else "#e57373" for v in values]
        ypos = range(len(values))
        ax.barh(list(ypos), values, color=colors)
        ax.set_yticks(list(ypos), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        for y, v in zip(ypos, values, strict=True):
            ax.text(v, y, f" {v:.2f}x", va="center", fontsize=7)
        ax.set_xlim(right=max(values) * 2.2)
        ax.set_title(textwrap.fill(s.title, 100), fontsize=9, loc="left")
        ax.set_xlabel(f"speed vs {s.baseline} (> 1: paramarena faster)", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", nargs="*", type=Path, default=None, help="result files")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="docs directory")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output PNG")
    args = parser.parse_args(argv)
    json_files = args.json
    if json_files is None:
        json_files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    out = plot(collect(json_files, args.docs), args.out)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
