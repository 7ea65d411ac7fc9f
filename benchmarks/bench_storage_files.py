"""Save/load timings of the file formats on a ResNet-50-shaped float32 dict (~102 MB).

Compares, in one process with a warm page cache:

- ``paramarena.storage`` with ``.params`` (MXNet format) and ``.npz``;
- plain ``np.savez`` / ``np.load`` (the baseline; no fsync, not atomic).

paramarena's saves are atomic (temporary file, fsync, os.replace, fsync of the directory), which
the baseline is not; on ext4 most of the npz save gap is the replace freeing the previous file's
blocks (``np.savez`` + ``os.replace`` measures the same). ``.params`` loads read each record
straight into its array; npz loads check every entry's CRC-32, as ``np.load`` does.

Run: ``python benchmarks/bench_storage_files.py [--repeat N] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def resnet50_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """161 float32 arrays with ResNet-50 (v1.5) shapes, 25,557,032 values."""
    try:
        from paramarena.resnet50 import resnet50_shapes

        shapes = resnet50_shapes()
    except ImportError:  # pragma: no cover - older checkouts
        shapes = _fallback_shapes()
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes}


def _fallback_shapes() -> list[tuple[str, tuple[int, ...]]]:
    shapes: list[tuple[str, tuple[int, ...]]] = []

    def conv_bn(p: str, o: int, i: int, k: int) -> None:
        shapes.extend([(p + "w", (o, i, k, k)), (p + "gamma", (o,)), (p + "beta", (o,))])

    conv_bn("stem_", 64, 3, 7)
    in_c = 64
    for s, (planes, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 1):
        for u in range(blocks):
            p = f"s{s}u{u}_"
            conv_bn(p + "a_", planes, in_c, 1)
            conv_bn(p + "b_", planes, planes, 3)
            conv_bn(p + "c_", planes * 4, planes, 1)
            if u == 0:
                conv_bn(p + "down_", planes * 4, in_c, 1)
            in_c = planes * 4
    shapes += [("fc_weight", (1000, in_c)), ("fc_bias", (1000,))]
    return shapes


def best_and_median(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    fn()  # warm-up (page cache, imports)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="directory for the files (default: temp)")
    args = parser.parse_args(argv)

    from paramarena import storage

    arrays = resnet50_arrays()
    nbytes = sum(a.nbytes for a in arrays.values())
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        cases: list[tuple[str, Callable[[], object]]] = [
            ("np.savez", lambda: np.savez(d / "base.npz", **arrays)),
            ("np.load", lambda: _np_load_all(d / "base.npz")),
            ("paramarena npz save", lambda: storage.save(d / "pd.npz", arrays)),
            ("paramarena npz load", lambda: storage.load(d / "pd.npz")),
            ("paramarena .params save", lambda: storage.save(d / "pd.params", arrays)),
            ("paramarena .params load", lambda: storage.load(d / "pd.params")),
            (
                ".params load 10 names",
                lambda: storage.load(d / "pd.params", names=list(arrays)[::16]),
            ),
            ("paramarena .params inspect", lambda: storage.inspect(d / "pd.params")),
        ]
        for label, fn in cases:
            results[label] = best_and_median(fn, args.repeat)

    base_save = results["np.savez"][0]
    base_load = results["np.load"][0]
    print(f"ResNet-50 dict: {len(arrays)} arrays, {nbytes / 1e6:.1f} MB float32")
    print(f"{'case':28s} {'best s':>8s} {'median s':>9s} {'GB/s':>6s} {'vs numpy':>9s}")
    for label, (best, median) in results.items():
        ref = base_load if ("load" in label or "inspect" in label) else base_save
        print(
            f"{label:28s} {best:8.4f} {median:9.4f} {nbytes / best / 1e9:6.2f} {ref / best:8.2f}x"
        )
    return results


def _np_load_all(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


if __name__ == "__main__":
    main()
