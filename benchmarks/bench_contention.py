"""Kernels while another process keeps one core busy (issue 11 item 4).

Run ``python benchmarks/bench_contention.py [--runs N] [--write-docs]``. A competitor process
spins (``while True: pass``) for the whole measurement; each kernel on ResNet-50-sized data is
then timed with 1 thread and with 2 threads (paramarena's kernel threads,
``kernels.set_num_threads``), interleaved, median of 5 per run. Target: the 2-thread time is at
most 1.2x the 1-thread time. ``--numba-layers`` adds the same fills through Numba's
``parallel=True`` kernels (OpenMP and workqueue layers, each in its own process) for comparison.
``--write-docs`` replaces the table between the ``contention`` markers of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
N = 25_557_032  # ResNet-50's float32 parameter count
TARGET = 1.2


def median_seconds(fn: Callable[[], object], repeat: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _dynamic(kernel: Callable[..., None], *args: object) -> None:
    """Run a Numba ``parallel=True`` kernel handing out its ``prange`` chunks one at a time."""
    import numba

    previous = numba.set_parallel_chunksize(1)
    try:
        kernel(*args)
    finally:
        numba.set_parallel_chunksize(previous)


def cases(layer: str | None) -> dict[str, tuple[Callable[[int], None], Callable[[], None]]]:
    """Name -> (set the thread count, run the kernel once)."""
    from paramarena import kernels

    out = np.zeros(N, np.float32)
    half = np.zeros(N, np.float16)
    grads = np.zeros(N, np.float32)
    starts, stops = np.array([0]), np.array([N])
    if layer is not None:  # Numba's parallel=True kernels on the given threading layer
        import numba

        from paramarena.kernels import _cpu

        k = np.frombuffer(np.arange(4, dtype="<u4").tobytes(), "<u4")
        return {
            f"uniform fill ({layer})": (
                numba.set_num_threads,
                lambda: _dynamic(_cpu._fill_parallel, out, 4, 0, 0.0, 1.0, k),
            ),
            f"normal fill ({layer})": (
                numba.set_num_threads,
                lambda: _dynamic(_cpu._fill_parallel, out, 4, 1, 0.0, 1.0, k),
            ),
        }
    return {
        "uniform fill, 25.6M f32": (
            kernels.set_num_threads,
            lambda: kernels.fill_uniform(out, 0.0, 1.0, seed=0, key="w"),
        ),
        "normal fill, 25.6M f32": (
            kernels.set_num_threads,
            lambda: kernels.fill_normal(out, 0.0, 1.0, seed=0, key="w"),
        ),
        "cast_into f32->f16, 25.6M": (
            kernels.set_num_threads,
            lambda: kernels.cast_into(half, out),
        ),
        "zero 102 MB (zero_ranges)": (
            kernels.set_num_threads,
            lambda: kernels.zero_ranges(grads, starts, stops),
        ),
    }


def child(layer: str | None, busy: bool) -> None:
    """Time every case with 1 and 2 threads (interleaved); print JSON."""
    results: dict[str, list[float]] = {}
    for name, (set_threads, run) in cases(layer).items():
        run()  # compile / load from the cache, touch the pages
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            time.sleep(0.2)
            t1s, t2s = [], []
            for _ in range(2):
                set_threads(1)
                t1s.append(median_seconds(run))
                set_threads(2)
                t2s.append(median_seconds(run))
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
        results[name] = [statistics.median(t1s), statistics.median(t2s)]
    print(json.dumps(results))


def run_child(layer: str | None, busy: bool) -> dict[str, list[float]]:
    env = dict(os.environ)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    cmd = [sys.executable, __file__, "--child", "--busy" if busy else "--quiet"]
    if layer is not None:
        cmd += ["--layer", layer]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, list[float]] = json.loads(out.strip().splitlines()[-1])
    return result


def table(runs: list[dict[str, list[float]]], quiet: dict[str, list[float]]) -> list[str]:
    lines = [
        "| kernel (one core busy) | 1 thread | 2 threads | 2-thread / 1-thread time, "
        f"{len(runs)} runs | target | status |",
        "|---|---|---|---|---|---|",
    ]
    for name in runs[0]:
        t1 = [r[name][0] for r in runs]
        t2 = [r[name][1] for r in runs]
        ratios = [b / a for a, b in zip(t1, t2, strict=True)]
        met = "met" if max(ratios) <= TARGET else "**not met**"
        q = quiet.get(name)
        quiet_note = f" (quiet: {q[0] * 1e3:.1f} / {q[1] * 1e3:.1f} ms)" if q else ""
        lines.append(
            f"| {name}{quiet_note} | {statistics.median(t1) * 1e3:.1f} ms "
            f"| {statistics.median(t2) * 1e3:.1f} ms "
            f"| {min(ratios):.2f}-{max(ratios):.2f}x (median {statistics.median(ratios):.2f}x) "
            f"| <= {TARGET}x | {met} |"
        )
    return lines


def write_docs(lines: list[str], marker: str) -> None:
    page = ROOT / "docs" / "benchmarks.md"
    text = page.read_text()
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    page.write_text(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="separate processes per setting")
    parser.add_argument("--numba-layers", action="store_true", help="add Numba's layers")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--layer", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.layer, args.busy)
        return
    quiet = run_child(None, busy=False)
    runs = [run_child(None, busy=True) for _ in range(args.runs)]
    if args.numba_layers:
        for layer in ("omp", "workqueue"):
            layer_runs = [run_child(layer, busy=True) for _ in range(args.runs)]
            for r, extra in zip(runs, layer_runs, strict=True):
                r.update(extra)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"Run {stamp}, load average before the run {os.getloadavg()[0]:.1f} "
        f"({os.cpu_count()} CPUs, numpy {np.__version__}); medians of 5, interleaved.",
        "",
        *table(runs, quiet),
    ]
    print("\n".join(lines))
    if args.write_docs:
        write_docs(lines, "contention")


if __name__ == "__main__":
    main()
