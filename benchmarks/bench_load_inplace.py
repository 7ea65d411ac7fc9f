"""``ParameterDict.load`` into an initialized dict against a load into a fresh dict, same cache.

The load into an initialized dict is all or nothing: it checks the whole checkpoint, then reads
it into the parameters' own memory (docs/checkpoints.md, "All-or-nothing load"). A fresh load
reads once into new memory. Which of the two finds the checkpoint in the page cache decides
much of the comparison at model scale (a model of 6 GB and its 6 GB checkpoint do not both stay
cached on a 23 GB machine after other files were written), so this benchmark times both sides
in the same cache state, in interleaved rounds:

* ``warm``: the checkpoint's pages were just read (each load runs once untimed first);
* ``cold``: the checkpoint's pages were dropped from the page cache first
  (``posix_fadvise(POSIX_FADV_DONTNEED)`` on every file of the checkpoint; clean pages only,
  no privileges needed), so both sides read from disk.

Each round times an in-place load of the initialized dict and a load into a fresh dict (the
fresh dict dropped again right after, so that the process holds one model plus one being
loaded), and prints the medians, the ratio range over the rounds, and the peak RSS each load
adds (``/proc/self/clear_refs`` then ``VmHWM``).

Run: ``python benchmarks/bench_load_inplace.py [--elements 4e8] [--params 1000] [--repeat 5]
[--dir DIR]``.
"""

from __future__ import annotations

import argparse
import gc
import glob
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

MIB = 1 << 20


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _timed(fn: Callable[[], Any]) -> tuple[float, int]:
    """Seconds ``fn`` took and the peak RSS it added (bytes)."""
    gc.collect()
    base = _rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, _rss("VmHWM") - base


def _evict(path: str) -> None:
    """Drop the checkpoint's (clean) pages from the page cache."""
    for name in glob.glob(os.path.join(path, "**", "*"), recursive=True):
        if os.path.isfile(name):
            fd = os.open(name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=float, default=4e8)
    parser.add_argument("--params", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to write the checkpoint")
    args = parser.parse_args()

    import paramarena as pa
    from paramarena import init

    count = args.params
    each = max(1, int(args.elements) // count)
    shapes = [
        (each,) if i % 2 else (each // 16, 16) if each >= 16 else (each,) for i in range(count)
    ]

    def build() -> Any:
        d = pa.ParameterDict("net_")
        for i, shape in enumerate(shapes):
            d.get(f"layer{i}_weight", shape=shape)
        return d

    tmp = tempfile.mkdtemp(prefix="paramarena-inplace-", dir=args.dir)
    try:
        path = os.path.join(tmp, "ckpt.zarr")
        model = build()
        model.initialize(init.Uniform(), seed=1)
        model.save(path)
        model.load(path)  # untimed: imports, first reads
        results: dict[str, dict[str, list[tuple[float, int]]]] = {}
        for r in range(args.repeat):
            for state in ("warm", "cold"):
                runs = results.setdefault(state, {"inplace": [], "fresh": []})
                order = ("inplace", "fresh") if r % 2 == 0 else ("fresh", "inplace")
                for side in order:
                    if state == "cold":
                        _evict(path)
                    else:
                        model.load(path)  # the checkpoint's pages in cache
                    if side == "inplace":
                        runs[side].append(_timed(lambda: model.load(path)))
                    else:
                        fresh = build()
                        runs[side].append(_timed(lambda fresh=fresh: fresh.load(path)))
                        del fresh
        elements = sum(math.prod(s) for s in shapes)
        print(
            f"{count} params, {elements:.3g} elements ({elements * 4 / MIB:.0f} MiB), "
            f"{args.repeat} rounds, load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs"
        )
        print("| cache | in place s | fresh s | in place / fresh | in-place peak RSS |")
        print("|---|---|---|---|---|")
        for state, runs in results.items():
            ratios = [a[0] / b[0] for a, b in zip(runs["inplace"], runs["fresh"], strict=True)]
            peak = max(p for _, p in runs["inplace"]) / MIB
            print(
                f"| {state} | {statistics.median(t for t, _ in runs['inplace']):.3f} | "
                f"{statistics.median(t for t, _ in runs['fresh']):.3f} | "
                f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
                f"+{peak:.0f} MiB |"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
