"""``paramarena demo``: the main job, end to end, on a ResNet-50-shaped dict.

Builds the 161 ResNet-50 parameters, initializes them (Xavier weights, ones/zeros for batch
norm), zeroes the gradients, saves a checkpoint, loads it into a fresh dict, verifies every
checksum and every value, and prints a short table with timings.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np

__all__ = ["FORMAT_SUFFIXES", "build_resnet50", "run"]

#: ``--format`` choices and the file suffix each writes.
FORMAT_SUFFIXES: dict[str, str] = {"zarr": ".zarr", "npz": ".npz", "params": ".params"}

T = TypeVar("T")


def build_resnet50(prefix: str = "resnet50_") -> Any:
    """Return an uninitialized :class:`~paramarena.ParameterDict` with ResNet-50's parameters.

    Parameters
    ----------
    prefix : str
        Prefix of every parameter name.

    Returns
    -------
    paramarena.ParameterDict
        161 parameters; ``gamma`` initialized to one, ``beta``/``bias`` to zero, weights by the
        global initializer given to ``initialize``.
    """
    from paramarena import ParameterDict, init
    from paramarena.resnet50 import resnet50_shapes

    params = ParameterDict(prefix)
    for name, shape in resnet50_shapes():
        if name.endswith("gamma"):
            params.get(name, shape=shape, init=init.One())
        elif name.endswith(("beta", "bias")):
            params.get(name, shape=shape, init=init.Zero())
        else:
            params.get(name, shape=shape)
    return params


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(
    out_dir: str | None = None, fmt: str = "zarr", seed: int = 0, *, stream: TextIO | None = None
) -> int:
    """Run the demo and print a table of steps and timings.

    Parameters
    ----------
    out_dir : str, optional
        Directory for the checkpoint (kept afterwards). A temporary directory, removed at the
        end, when ``None``.
    fmt : {'zarr', 'npz', 'params'}
        Checkpoint format.
    seed : int
        Seed for the initial values.
    stream : file-like, optional
        Where to print (default ``sys.stdout``).

    Returns
    -------
    int
        0 when the loaded values equal the saved ones and the checkpoint verifies, else 1.
    """
    import paramarena
    from paramarena import init, storage
    from paramarena.errors import ConfigurationError

    out = stream if stream is not None else sys.stdout
    if fmt not in FORMAT_SUFFIXES:
        raise ConfigurationError(
            f"Unknown demo format {fmt!r}; choose one of {', '.join(FORMAT_SUFFIXES)}."
        )
    tmp = None
    if out_dir is None:
        tmp = tempfile.mkdtemp(prefix="paramarena-demo-")
        base = Path(tmp)
    else:
        base = Path(out_dir)
        base.mkdir(parents=True, exist_ok=True)
    path = base / f"resnet50{FORMAT_SUFFIXES[fmt]}"
    rows: list[tuple[str, float, str]] = []
    try:
        params, t = _timed(build_resnet50)
        count = len(list(params.keys()))
        total = sum(math.prod(p.shape) for p in params.values())
        rows.append(("build", t, f"{count} parameters, {total:,} values"))

        _, t = _timed(lambda: params.initialize(init.Xavier(), seed=seed))
        rows.append(("initialize", t, "Xavier weights, ones/zeros for BN (incl. first-call JIT)"))

        for p in params.values():
            p.grad()[...] = 1.0
        _, t = _timed(params.zero_grad)
        zeroed = all(not p.grad().any() for p in params.values())
        rows.append(("zero_grad", t, "all gradients zero" if zeroed else "NOT ZERO"))

        _, t = _timed(lambda: params.save(str(path)))
        rows.append(("save", t, f"{path.name}, {_fmt_bytes(_size_on_disk(path))}"))

        fresh = build_resnet50()
        _, t = _timed(lambda: fresh.load(str(path)))
        rows.append(("load", t, "into a fresh ParameterDict"))

        report, t = _timed(lambda: storage.verify(str(path)))
        same = all(
            np.array_equal(a.data(), b.data())
            for a, b in zip(params.values(), fresh.values(), strict=True)
        )
        ok = report.ok and same and zeroed
        detail = f"{report.checked} arrays checked, values {'identical' if same else 'DIFFER'}"
        rows.append(("verify", t, detail))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    out.write(f"paramarena {paramarena.__version__} demo: ResNet-50 ({fmt}, seed {seed})\n\n")
    out.write(f"| {'step':<10} | {'time (ms)':>10} | detail\n")
    out.write(f"|{'-' * 12}|{'-' * 12}|{'-' * 50}\n")
    for step, seconds, detail in rows:
        out.write(f"| {step:<10} | {seconds * 1e3:>10.1f} | {detail}\n")
    out.write(
        "\n"
        + (
            "OK: checkpoint verified, values round-trip exactly.\n"
            if ok
            else "FAILED: see the table above.\n"
        )
    )
    if out_dir is not None:
        out.write(f"Checkpoint kept at {path}\n")
    return 0 if ok else 1
