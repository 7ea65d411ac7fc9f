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

Each round builds a new dict (the previous round's is dropped first: one model in memory at a
time, as in ``bench_scaling.py``), times a load into it while it is fresh, then a load into it
now that it is initialized (in place), each after putting the checkpoint in the cache state of
the round; it prints the medians, the ratio range over the rounds, and the peak RSS the in-place
load adds (``/proc/self/clear_refs`` then ``VmHWM``). The fresh load faults in new memory: on
a machine whose transparent huge pages are compacted on fault (``defrag`` = ``madvise``), that
alone varies from run to run.

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

from bench_scaling import _reset_peak, _rss  # this directory: the scripts run as files

MIB = 1 << 20


def _timed(fn: Callable[[], Any]) -> tuple[float, int]:
    """Seconds ``fn`` took and the peak RSS it added (bytes)."""
    gc.collect()
    base = _rss("VmRSS")
    _reset_peak()
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


def _warm(path: str) -> None:
    """Read every file of the checkpoint once (its pages in the page cache)."""
    for name in glob.glob(os.path.join(path, "**", "*"), recursive=True):
        if os.path.isfile(name):
            with open(name, "rb") as f:
                while f.read(1 << 24):
                    pass


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
        model = None
        results: dict[str, dict[str, list[tuple[float, int]]]] = {}
        for _ in range(args.repeat):
            for state in ("warm", "cold"):
                runs = results.setdefault(state, {"inplace": [], "fresh": []})
                gc.collect()
                target = build()  # the previous round's model is gone: one model at a time
                for side in ("fresh", "inplace"):  # the fresh load initializes the dict
                    if state == "cold":
                        _evict(path)
                    else:
                        _warm(path)
                    runs[side].append(_timed(lambda target=target: target.load(path)))
                target = None
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
