"""Save/load timings of the file formats on a ResNet-50-shaped float32 dict (~102 MB).

Compares, in one process with a warm page cache, like with like:

- ``paramarena.storage`` with ``.params`` (MXNet format) and ``.npz``;
- plain ``np.savez`` / ``np.load`` (the baseline; not atomic), timed without fsync and with an
  fsync of the file and its directory (the durability paramarena's saves have).

Every save writes a **new file** (as training writes checkpoints; the file is deleted, untimed,
after the round), and the cases are timed in turn within each round (medians over the rounds),
so that page-cache and disk state are shared fairly. paramarena's saves are atomic (temporary
file, fsync, ``os.replace``, fsync of the directory). ``.params`` loads read each record straight
into its array; npz loads check every entry's CRC-32, as ``np.load`` does.

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

from bench_storage import _fsync  # this directory: the scripts run as files


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


def interleaved(cases: dict[str, Callable[[int], object]], repeat: int) -> dict[str, list[float]]:
    """Seconds of each case in each round; ``fn(i)`` gets the round number (new file names)."""
    for fn in cases.values():
        fn(-1)  # warm-up (page cache, imports)
    times: dict[str, list[float]] = {label: [] for label in cases}
    for i in range(repeat):
        for label, fn in cases.items():
            time.sleep(0.02)
            t0 = time.perf_counter()
            fn(i)
            times[label].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", default=None, help="directory for the files (default: temp)")
    args = parser.parse_args(argv)

    from paramarena import storage

    arrays = resnet50_arrays()
    nbytes = sum(a.nbytes for a in arrays.values())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)

        def fresh(stem: str, suffix: str, i: int) -> Path:
            path = d / f"{stem}-{i}{suffix}"
            path.unlink(missing_ok=True)
            return path

        def savez_fsync(i: int) -> None:
            path = fresh("np-fsync", ".npz", i)
            np.savez(path, **arrays)
            _fsync(path)
            _fsync(d)

        saves: dict[str, Callable[[int], object]] = {
            "np.savez (no fsync)": lambda i: np.savez(fresh("np", ".npz", i), **arrays),
            "np.savez + fsync": savez_fsync,
            "npz save": lambda i: storage.save(fresh("pd", ".npz", i), arrays),
            ".params save": lambda i: storage.save(fresh("pd", ".params", i), arrays),
        }
        save_times = interleaved(saves, args.repeat)
        np.savez(d / "base.npz", **arrays)
        storage.save(d / "pd.npz", arrays)
        storage.save(d / "pd.params", arrays)
        loads: dict[str, Callable[[int], object]] = {
            "np.load": lambda i: _np_load_all(d / "base.npz"),
            "npz load": lambda i: storage.load(d / "pd.npz"),
            ".params load": lambda i: storage.load(d / "pd.params"),
            ".params load of 10 names": lambda i: storage.load(
                d / "pd.params", names=list(arrays)[::16]
            ),
            ".params inspect": lambda i: storage.inspect(d / "pd.params"),
        }
        load_times = interleaved(loads, args.repeat)
    med = {k: statistics.median(v) for k, v in {**save_times, **load_times}.items()}
    print(f"ResNet-50 dict: {len(arrays)} arrays, {nbytes / 1e6:.1f} MB float32, "
          f"medians of {args.repeat} interleaved rounds, a new file per save")  # fmt: skip
    print()
    print("| case | seconds | vs np.savez / np.load | vs np.savez + fsync |")
    print("|---|---|---|---|")
    for label in saves:
        if label.startswith("np."):
            continue
        plain = med["np.savez (no fsync)"] / med[label]
        durable = med["np.savez + fsync"] / med[label]
        base = save_times["np.savez (no fsync)"]
        spread = [a / b for a, b in zip(base, save_times[label], strict=True)]
        print(f"| {label} | {med[label]:.4f} | {plain:.2f}x ({min(spread):.2f}-"
              f"{max(spread):.2f}) | {durable:.2f}x |")  # fmt: skip
    for label in ("np.savez (no fsync)", "np.savez + fsync"):
        print(f"| {label} | {med[label]:.4f} | | |")
    for label in loads:
        if label == "np.load":
            continue
        print(f"| {label} | {med[label]:.4f} | {med['np.load'] / med[label]:.2f}x | |")
    print(f"| np.load | {med['np.load']:.4f} | | |")
    return {**save_times, **load_times}


def _np_load_all(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


if __name__ == "__main__":
    main()
