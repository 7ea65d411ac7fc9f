"""Plot benchmark ratios: one figure per benchmark family, ``docs/img/bench-<family>.png``.

Sources, in this order of preference:

1. JSON result files (given with ``--json``, or every ``benchmarks/results/*.json``)::

       {"title": "Kernels (ResNet-50 shapes)",
        "family": "kernels",
        "baseline": "numpy",
        "cases": [{"case": "uniform f32", "ratio": 3.1, "target": 3.0}, ...]}

   ``ratio`` is baseline time / paramarena time (> 1: paramarena is faster). A case may give
   ``"paramarena_s"`` and ``"baseline_s"`` instead; the ratio is computed from them. A case
   with ``"peer": true`` is another library, drawn in a neutral colour.
2. The markdown tables in ``docs/benchmarks*.md``: every table with a column whose header
   contains ``ratio``, ``speedup`` or ``vs`` is plotted, its first column naming the cases and
   values like ``2.35x`` read from that column (a range over runs, ``0.32-0.34x``, is drawn as
   its worst run; cells saying ``x the time`` are time ratios and are skipped; rows without a
   number are skipped, as are
   columns named ``target`` or ``status``, so "met / not met" columns do no harm). A table
   with several ratio columns (``save speed vs X``, ``load speed vs X``) gets one panel per
   column; rows naming their own baseline (``..., vs PyTorch``) go to a panel of their own. A
   cell ``0.64x / 1.44x`` in a row ``npz save / load`` gives two bars, ``npz save`` and
   ``npz load``. A ``target`` column's ``>= 3x`` is drawn as a line on its bar.

Tables are grouped into families by words in their heading and caption (kernels, storage,
files, S3); each family is one figure with a panel per baseline. Bars start at 1.0x on a log
axis; paramarena's rows are drawn in one colour, other libraries' (rows that start with their
name, e.g. ``safetensors ...``, ``np.savez ...``) in grey.

Run ``python benchmarks/plot.py [--json FILE ...] [--docs DIR] [--out-dir DIR]`` after the
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
DEFAULT_OUT_DIR = ROOT / "docs" / "img"
_RATIO_HEADERS = ("ratio", "speedup", "vs")
_NOT_RATIO_HEADERS = ("target", "status", "met")
_NUMBER_X = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?|\.\d+)\s*[x×]", re.I)
_RANGE_X = re.compile(r"(\d+(?:\.\d+)?)\s*-\s*\d+(?:\.\d+)?\s*[x×]", re.I)
_TARGET = re.compile(r"(>=|≥|>)\s*(\d+(?:\.\d+)?|\.\d+)\s*[x×]", re.I)
_ROW_BASELINE = re.compile(r",?\s+vs\.?\s+(?P<peer>[\w.\- ]+?)\s*$", re.I)

#: Family of a table: the first whose words occur in its heading or caption (lower case).
FAMILIES: list[tuple[str, tuple[str, ...]]] = [
    ("s3", ("s3", "moto")),
    ("files", (".params", ".npz", "npz and", "params and")),
    ("storage", ("local disk", "storage")),
    ("kernels", ("kernel",)),
]
#: Rows starting with one of these name another library (drawn in a neutral colour).
PEER_PREFIXES = ("np.", "numpy", "safetensors", "torch", "pytorch", "npz blob", "mxnet", "jax")

PARAMARENA_COLOUR = "#3f51b5"
PEER_COLOUR = "#b0b0b0"
TARGET_COLOUR = "#d84315"


@dataclass
class Series:
    """One panel: named ratios against one baseline.

    ``cases`` holds ``(label, ratio)``; ``targets`` a target ratio by label, ``peers`` the
    labels that are other libraries (not paramarena).
    """

    title: str
    baseline: str = "baseline"
    cases: list[tuple[str, float]] = field(default_factory=list)
    family: str = ""
    measure: str = "speed"
    targets: dict[str, float] = field(default_factory=dict)
    peers: set[str] = field(default_factory=set)


def is_peer(label: str) -> bool:
    """Whether a row names another library rather than paramarena."""
    text = re.sub(r"^(?:new path|same path|load|save):\s*", "", label.lower())
    return "paramarena" not in text and text.startswith(PEER_PREFIXES)


def load_json(path: Path) -> Series:
    """Read one JSON results file (see the module docstring for the schema)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    title = str(data.get("title", path.stem))
    series = Series(title, str(data.get("baseline", "baseline")))
    series.family = str(data.get("family", "")) or family_of(title, path.stem)
    for case in data.get("cases", []):
        ratio = case.get("ratio")
        if ratio is None and case.get("paramarena_s") and case.get("baseline_s") is not None:
            ratio = float(case["baseline_s"]) / float(case["paramarena_s"])
        if ratio is None or not math.isfinite(float(ratio)) or float(ratio) <= 0:
            continue
        label = str(case["case"])
        series.cases.append((label, float(ratio)))
        if case.get("target") is not None:
            series.targets[label] = float(case["target"])
        if case.get("peer", is_peer(label)):
            series.peers.add(label)
    return series


def family_of(text: str, fallback: str) -> str:
    """Return the family whose words occur in ``text`` (heading and caption), else ``fallback``."""
    lowered = text.lower()
    return next((name for name, words in FAMILIES if any(w in lowered for w in words)), fallback)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _strip_md(text: str) -> str:
    return re.sub(r"`|\*\*|__", "", text).strip()


def _split_labels(case: str, n: int) -> list[str]:
    """``"npz save / load"`` with two values -> ``["npz save", "npz load"]``."""
    if n == 1:
        return [case]
    parts = [p.strip() for p in case.split(" / ")]
    if len(parts) != n:
        return [f"{case} ({k + 1})" for k in range(n)]
    stem = parts[0].rsplit(" ", 1)[0] if " " in parts[0] else ""
    return [parts[0]] + [f"{stem} {p}" if stem and " " not in p else p for p in parts[1:]]


def _column_baseline(header: list[str], column: int) -> tuple[str, str]:
    """Return ``(baseline, measure)`` of a ratio column (``"save speed vs X"`` -> X, save)."""
    ratio_header = header[column]
    if re.search(r"(?:^|[\s(])vs\.?\s", ratio_header):
        before, after = re.split(r"(?:^|[\s(])vs\.?\s", ratio_header, maxsplit=1)
        # "initialize s (vs numpy loop)": measure "initialize", baseline "numpy loop"
        measure = re.sub(r"\s+s$", "", before.strip(" (")) or "speed"
        if after.strip():
            return after.strip(" ()"), measure
    reference = next((h for h in header if "reference" in h or "baseline" in h), "")
    baseline = (
        reference.replace("reference", "").replace("baseline", "").strip()
        or ratio_header.replace("vs", "").replace("ratio", "").strip(" ()")
        or "baseline"
    )
    return baseline, "speed"


def _ratio_columns(header: list[str]) -> list[int]:
    return [
        k
        for k, h in enumerate(header)
        if k > 0
        and any(word in h.split() or word in h for word in _RATIO_HEADERS)
        and not any(word in h for word in _NOT_RATIO_HEADERS)
    ]


def parse_markdown_tables(text: str, source: str = "") -> list[Series]:
    """Return a :class:`Series` per ratio column and baseline of every ratio table."""
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
        title = _strip_md(page_title or heading) or "benchmarks"
        lead = _strip_md(re.split(r":(?:\s|$)", caption, maxsplit=1)[0])  # "Full run, ...:"
        if lead and len(lead) <= 90:
            title += " — " + lead
        family = family_of(f"{heading} {caption}", "") or family_of(
            f"{page_title} {source}", source or "benchmarks"
        )
        target_column = next((k for k, h in enumerate(header) if "target" in h), None)
        out.extend(_table_series(header, rows, title, family, target_column))
    return out


def _table_series(
    header: list[str],
    rows: list[list[str]],
    title: str,
    family: str,
    target_column: int | None,
) -> list[Series]:
    panels: dict[tuple[str, str], Series] = {}
    for column in _ratio_columns(header):
        column_baseline, measure = _column_baseline(header, column)
        for row in rows:
            if len(row) <= column:
                continue
            cell = row[column]
            if "the time" in cell:  # "1.4x the time": a time ratio (lower is better), not a speed
                continue
            segments = _baseline_segments(cell)
            if segments:  # "1.25x (0.68-1.30) vs A; 0.42x (...) vs B": one panel per baseline
                case = _strip_md(row[0])
                for peer, value in segments:
                    key = (peer.lower(), measure)
                    if key not in panels:
                        panels[key] = Series(title, peer, family=family, measure=measure)
                    panels[key].cases.append((case, value))
                    if is_peer(case):
                        panels[key].peers.add(case)
                continue
            # a range over runs, "0.32-0.34x": the worst run is drawn
            cell = _RANGE_X.sub(lambda m: f"{m.group(1)}x", cell)
            values = [float(m.group(1)) for m in _NUMBER_X.finditer(cell)]
            if not values:
                continue
            case = _strip_md(row[0])
            baseline = column_baseline
            own = _ROW_BASELINE.search(case)
            if own:  # "Uniform init, ResNet-50, vs PyTorch": a panel against PyTorch
                baseline, case = own.group("peer").strip(), case[: own.start()].strip(" ,")
            key = (baseline.lower(), measure)
            if key not in panels:
                panels[key] = Series(title, baseline, family=family, measure=measure)
            series = panels[key]
            target = None
            if target_column is not None and len(row) > target_column:
                found = _TARGET.search(row[target_column])
                target = float(found.group(2)) if found else None
            verb = measure.split()[0] if measure.split() else ""
            if len(values) == 1 and case.count(" / ") == 1 and verb in ("save", "load"):
                case = _split_labels(case, 2)[0 if verb == "save" else 1]  # "x save / load"
            if target is not None and not _target_applies(row[target_column], case):
                target = None
            for label, value in zip(_split_labels(case, len(values)), values, strict=True):
                series.cases.append((label, value))
                if target is not None:
                    series.targets[label] = target
                if is_peer(label):
                    series.peers.add(label)
    # a panel of nothing but 1.00x bars is a column of baselines (each row its own): no panel
    return [s for s in panels.values() if any(v != 1.0 for _, v in s.cases)]


_SEGMENT = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*[x×](?:\s*\([^)]*\))?\s+vs\.?\s+(?P<peer>.+?)\s*$", re.I
)


def _baseline_segments(cell: str) -> list[tuple[str, float]]:
    """``[(baseline, ratio), ...]`` of a cell naming a baseline per ratio, else ``[]``.

    ``"1.25x (0.68-1.30) vs safetensors + fsync; 0.42x (0.25-0.48) vs no fsync"`` gives two.
    """
    found = [_SEGMENT.match(part) for part in _strip_md(cell).split(";")]
    if not found or any(m is None for m in found):
        return []
    return [(m.group("peer"), float(m.group(1))) for m in found if m is not None]


_TARGET_SCOPES = {"r50": ("r50", "resnet-50", "resnet50")}


def _target_applies(target_cell: str, case: str) -> bool:
    """``>= 3x (R50)`` is a target for ResNet-50 rows only, not for ``1000 x (4,)``."""
    scope = re.search(r"\(([^)]*)\)", target_cell)
    if scope is None:
        return True
    word = scope.group(1).strip().lower()
    return any(alias in case.lower() for alias in _TARGET_SCOPES.get(word, (word,)))


def collect(json_files: list[Path], docs_dir: Path) -> list[Series]:
    """Gather the series to plot: JSON files if any, else the markdown tables of the docs."""
    if json_files:
        return [s for s in (load_json(p) for p in json_files) if s.cases]
    series: list[Series] = []
    for page in sorted(docs_dir.glob("benchmarks*.md")):
        series.extend(parse_markdown_tables(page.read_text(encoding="utf-8"), page.stem))
    return series


def by_family(series: list[Series]) -> dict[str, list[Series]]:
    """Group panels by family, in the order the families first appear."""
    groups: dict[str, list[Series]] = {}
    for s in series:
        groups.setdefault(s.family or "benchmarks", []).append(s)
    return groups


def _ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks in ``[low, high]``; 1-1.5-2-3-5-7 where that gives fewer than four."""
    for bases in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        steps = [round(b * 10.0**e, 6) for e in range(-3, 5) for b in bases]
        ticks = [t for t in steps if low <= t <= high]
        if len(ticks) >= 4:
            break
    return ticks


def _tick_label(value: float, _pos: object = None) -> str:
    """``0.6x``, ``2x``, ``150x``: never ``6x10^-1``."""
    return f"{value:g}x"


def _value_label(value: float) -> str:
    """``0.18x``, ``4.55x``, ``35.4x``, ``142x``."""
    return f"{value:.2f}x" if value < 10 else f"{value:.3g}x"


def _draw_panel(ax: object, s: Series) -> None:
    from matplotlib.axes import Axes
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    assert isinstance(ax, Axes)
    labels = [textwrap.fill(c[0], 50) for c in s.cases]
    values = [c[1] for c in s.cases]
    colours = [PEER_COLOUR if c[0] in s.peers else PARAMARENA_COLOUR for c in s.cases]
    ypos = list(range(len(values)))
    ax.barh(ypos, [v - 1.0 for v in values], left=1.0, color=colours, height=0.62)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.9)
    span = [*values, *s.targets.values(), 1.0]
    low, high = min(span) / 1.7, max(span) * 2.6
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(FixedLocator(_ticks(low, high)))
    ax.xaxis.set_major_formatter(FuncFormatter(_tick_label))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.8)
    ax.set_axisbelow(True)
    for y, (label, v) in zip(ypos, s.cases, strict=True):
        if label in s.targets:
            ax.plot([s.targets[label]] * 2, [y - 0.42, y + 0.42], color=TARGET_COLOUR, lw=2.2)
        right = v >= 1.0
        anchor = max(v, s.targets.get(label, v)) if right else v  # clear of the target line
        ax.text(
            anchor * (1.04 if right else 0.96),
            y,
            _value_label(v) + (" (baseline)" if v == 1.0 and label in s.peers else ""),
            va="center",
            ha="left" if right else "right",
            fontsize=9,
        )
    ax.set_yticks(ypos, labels, fontsize=9.5)
    ax.set_ylim(len(values) - 0.5, -0.5)
    ax.tick_params(axis="x", labelsize=9.5)
    what = f"{s.measure} vs {s.baseline}" if s.measure != "speed" else f"vs {s.baseline}"
    ax.set_title(f"{what} ({s.baseline} time / paramarena time)", fontsize=11, loc="left")
    ax.set_xlabel(
        f"{s.measure} relative to {s.baseline}, log scale (> 1x: paramarena faster)", fontsize=10
    )


def plot_family(name: str, panels: list[Series], out: Path) -> Path:
    """Draw one figure: a panel per series, bars from 1.0x on a log axis, targets as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    heights = [0.42 * sum(1 + c[0].count("\n") for c in s.cases) + 1.25 for s in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(9.0, sum(heights) + 0.7),
        gridspec_kw={"height_ratios": heights},
        layout="constrained",
        squeeze=False,
    )
    for ax, s in zip(axes[:, 0], panels, strict=True):
        _draw_panel(ax, s)
    handles = [Patch(color=PARAMARENA_COLOUR, label="paramarena")]
    if any(s.peers for s in panels):
        handles.append(Patch(color=PEER_COLOUR, label="other libraries"))
    if any(s.targets for s in panels):
        handles.append(Line2D([], [], color=TARGET_COLOUR, lw=2.2, label="target"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9.5)
    fig.suptitle(textwrap.fill(panels[0].title, 70), fontsize=12, x=0.01, ha="left")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def plot(series: list[Series], out_dir: Path) -> list[Path]:
    """Write ``bench-<family>.png`` for each family into ``out_dir``; return the paths."""
    if not series:
        raise SystemExit("no benchmark results found (no JSON files, no ratio tables in docs)")
    return [
        plot_family(name, panels, out_dir / f"bench-{_slug(name)}.png")
        for name, panels in by_family(series).items()
    ]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "benchmarks"


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", nargs="*", type=Path, default=None, help="result files")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="docs directory")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="PNG directory")
    args = parser.parse_args(argv)
    json_files = args.json
    if json_files is None:
        json_files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    written = plot(collect(json_files, args.docs), args.out_dir)
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
