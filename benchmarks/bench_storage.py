"""Local checkpoint save/load of a ResNet-50-shaped dict: paramarena zarr vs safetensors vs npz.

Prints a markdown table of medians (seconds) and speed ratios against safetensors'
``save_file``/``load_file``, all measured in this process on a warm page cache.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from paramarena import storage
from paramarena.resnet50 import resnet50_shapes

REPEATS = 9


def median_time(repeats: int, fn: Callable[[], object]) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after two warm-up calls (seconds)."""
    fn()  # imports, page cache
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_traced_mb(fn: Callable[[], object]) -> float:
    """Peak memory allocated (Python and numpy, as tracemalloc sees it) while ``fn`` runs, MB."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main() -> None:
    rng = np.random.default_rng(0)
    arrays = {n: rng.standard_normal(s, dtype=np.float32) for n, s in resnet50_shapes()}
    total = sum(a.nbytes for a in arrays.values())
    tmp = Path(tempfile.mkdtemp(prefix="paramarena-bench-"))
    rows: list[tuple[str, float, float]] = []
    try:
        try:
            from safetensors.numpy import load_file, save_file

            st = tmp / "m.safetensors"
            st_save = median_time(REPEATS, lambda: save_file(arrays, str(st)))
            st_load = median_time(REPEATS, lambda: load_file(str(st)))
            rows.append(("safetensors save_file / load_file", st_save, st_load))
        except ImportError:
            st_save = st_load = float("nan")
        npz = tmp / "m.npz"
        rows.append(
            (
                "np.savez / np.load",
                median_time(REPEATS, lambda: np.savez(npz, **arrays)),
                median_time(REPEATS, lambda: dict(np.load(npz, allow_pickle=False))),
            )
        )
        zp = tmp / "m.zarr"
        rows.append(
            (
                "paramarena zarr save / load",
                median_time(REPEATS, lambda: storage.save(zp, arrays)),
                median_time(REPEATS, lambda: storage.load(zp)),
            )
        )
        rows.append(
            (
                "paramarena zarr, load 10 names",
                float("nan"),
                median_time(REPEATS, lambda: storage.load(zp, names=list(arrays)[:10])),
            )
        )
        peak = peak_traced_mb(lambda: storage.save(zp, arrays))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"ResNet-50 shapes: {len(arrays)} arrays, {total / 1e6:.1f} MB float32, "
        f"median of {REPEATS}\n"
    )
    print("| case | save s | load s | save speed vs safetensors | load speed vs safetensors |")
    print("|---|---|---|---|---|")
    for name, save, load in rows:
        print(
            f"| {name} | {save:.3f} | {load:.3f} | {st_save / save:.2f}x | {st_load / load:.2f}x |"
        )
    print(f"\nPeak extra memory of a local zarr save (tracemalloc): {peak:.1f} MB")


if __name__ == "__main__":
    main()
