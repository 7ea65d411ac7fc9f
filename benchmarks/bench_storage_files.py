"""Save/load timings of the file formats on a ResNet-50-shaped float32 dict (~102 MB).

Compares, in one process with a warm page cache, like with like:

- ``paramarena.storage`` with ``.params`` (MXNet format) and ``.npz``;
- plain ``np.savez`` / ``np.load`` (the baseline; not atomic), timed without fsync and with an
  fsync of the file and its directory (the durability paramarena's saves have);
- paramarena's saves with ``durable=False`` (atomic, no fsync), compared with ``np.savez``
  without fsync only: like with like.

The saves are timed on a second dict too, 10,000 float32 arrays of shape (4,) (per-entry
overhead).

Every save writes a **new file** (as training writes checkpoints; the file is deleted, untimed,
right after the save), and the cases are timed in turn within each round (medians over the rounds),
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

#: Arrays of shape (4,) in the second, per-entry-overhead table.
TINY_COUNT = 10_000


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
    """Seconds of each case in each round; ``fn(i)`` gets the round number (new file names).

    A case that returns a :class:`~pathlib.Path` (a save: the file it wrote) has that file
    deleted right after it is timed, so that the written files do not pile up in the page
    cache (gigabytes of dirty pages make the kernel throttle every writer that follows).
    """
    for fn in cases.values():
        _discard(fn(-1))  # warm-up (page cache, imports)
    times: dict[str, list[float]] = {label: [] for label in cases}
    for i in range(repeat):
        for label, fn in cases.items():
            time.sleep(0.02)
            t0 = time.perf_counter()
            result = fn(i)
            times[label].append(time.perf_counter() - t0)
            _discard(result)
    return times


def _discard(result: object) -> None:
    if isinstance(result, Path):
        result.unlink(missing_ok=True)


def save_cases(arrays: dict[str, np.ndarray], d: Path) -> dict[str, Callable[[int], object]]:
    """The timed saves of ``arrays`` into ``d``, each to a new file that it returns."""
    from paramarena import storage

    def fresh(stem: str, suffix: str, i: int) -> Path:
        path = d / f"{stem}-{i}{suffix}"
        path.unlink(missing_ok=True)
        return path

    def savez(stem: str, fsync: bool) -> Callable[[int], Path]:
        def save(i: int) -> Path:
            path = fresh(stem, ".npz", i)
            np.savez(path, **arrays)
            if fsync:
                _fsync(path)
                _fsync(d)
            return path

        return save

    def ours(suffix: str, **options: object) -> Callable[[int], Path]:
        stem = "pd" if not options else "pd-nd"

        def save(i: int) -> Path:
            path = fresh(stem, suffix, i)
            storage.save(path, arrays, **options)
            return path

        return save

    return {
        "np.savez (no fsync)": savez("np", fsync=False),
        "np.savez + fsync": savez("np-fsync", fsync=True),
        "npz save": ours(".npz"),
        ".params save": ours(".params"),
        "npz save (durable=False)": ours(".npz", durable=False),
        ".params save (durable=False)": ours(".params", durable=False),
    }


def save_rows(times: dict[str, list[float]]) -> list[str]:
    """Table rows of the saves: against ``np.savez``, and (durable saves) ``np.savez`` + fsync."""
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for label in times:
        if label.startswith("np."):
            continue
        plain = med["np.savez (no fsync)"] / med[label]
        durable = med["np.savez + fsync"] / med[label]
        base = times["np.savez (no fsync)"]
        spread = [a / b for a, b in zip(base, times[label], strict=True)]
        # a save without fsync is compared with np.savez without fsync only (like with like)
        with_fsync = "" if "durable=False" in label else f"{durable:.2f}x"
        rows.append(f"| {label} | {med[label]:.4f} | {plain:.2f}x ({min(spread):.2f}-"
                    f"{max(spread):.2f}) | {with_fsync} |")  # fmt: skip
    for label in ("np.savez (no fsync)", "np.savez + fsync"):
        rows.append(f"| {label} | {med[label]:.4f} | | |")
    return rows


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", default=None, help="directory for the files (default: temp)")
    args = parser.parse_args(argv)

    from paramarena import storage

    arrays = resnet50_arrays()
    tiny = {f"tiny{i}": np.full(4, i, np.float32) for i in range(TINY_COUNT)}
    nbytes = sum(a.nbytes for a in arrays.values())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        save_times = interleaved(save_cases(arrays, d), args.repeat)
        tiny_times = interleaved(save_cases(tiny, d), args.repeat)
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
    med = {k: statistics.median(v) for k, v in load_times.items()}
    print(f"ResNet-50 dict: {len(arrays)} arrays, {nbytes / 1e6:.1f} MB float32, "
          f"medians of {args.repeat} interleaved rounds, a new file per save")  # fmt: skip
    print()
    print("| case | seconds | vs np.savez / np.load | vs np.savez + fsync |")
    print("|---|---|---|---|")
    print("\n".join(save_rows(save_times)))
    for label in loads:
        if label == "np.load":
            continue
        print(f"| {label} | {med[label]:.4f} | {med['np.load'] / med[label]:.2f}x | |")
    print(f"| np.load | {med['np.load']:.4f} | | |")
    print()
    print(f"{TINY_COUNT:,} float32 arrays of shape (4,), saves only:")
    print()
    print("| case | seconds | vs np.savez | vs np.savez + fsync |")
    print("|---|---|---|---|")
    print("\n".join(save_rows(tiny_times)))
    return {**save_times, **{f"tiny: {k}": v for k, v in tiny_times.items()}, **load_times}


def _np_load_all(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


if __name__ == "__main__":
    main()
