"""``paramarena demo``: the main job, end to end, on a ResNet-50-shaped dict.

Builds the 161 ResNet-50 parameters, initializes them (Xavier weights, ones/zeros for batch
norm), zeroes the gradients, saves a checkpoint, loads it into a fresh dict, verifies every
checksum and every value. Each step is printed as soon as it finishes, with two timings: the
first call in this process (which includes compiling the Numba kernels the first time the
package runs on a machine) and a warm repeat of the same step, which is what a training loop
sees. Long steps show a progress bar on standard error when it is a terminal.
"""

from __future__ import annotations

import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np

__all__ = ["FORMAT_SUFFIXES", "MODELS", "build_resnet50", "build_tiny", "run"]

#: ``--format`` choices and the file suffix each writes.
FORMAT_SUFFIXES: dict[str, str] = {"zarr": ".zarr", "npz": ".npz", "params": ".params"}

#: Number of small ``(4,)`` parameters of the ``zero_grad`` latency step.
TINY_COUNT = 1000

#: Warm repeats of the microsecond-scale ``zero_grad`` step (the median is printed).
TINY_REPEATS = 50

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
    from paramarena.resnet50 import resnet50_shapes

    return _build(prefix, resnet50_shapes())


def build_tiny(prefix: str = "tiny_") -> Any:
    """Return an uninitialized two-layer perceptron dict (4 parameters, 874 values).

    Used by ``run(model="tiny")``, for a quick run of every step (tests, slow machines).

    Parameters
    ----------
    prefix : str
        Prefix of every parameter name.

    Returns
    -------
    paramarena.ParameterDict
        ``dense0_weight`` (32, 16), ``dense0_bias`` (32,), ``dense1_weight`` (10, 32) and
        ``dense1_bias`` (10,).
    """
    shapes = [
        ("dense0_weight", (32, 16)),
        ("dense0_bias", (32,)),
        ("dense1_weight", (10, 32)),
        ("dense1_bias", (10,)),
    ]
    return _build(prefix, shapes)


#: ``model`` choices of :func:`run`: a title and the function building the dict.
MODELS: dict[str, tuple[str, Callable[[], Any]]] = {
    "resnet50": ("ResNet-50", build_resnet50),
    "tiny": ("a two-layer perceptron", build_tiny),
}


def _build(prefix: str, shapes: list[tuple[str, tuple[int, ...]]]) -> Any:
    from paramarena import ParameterDict, init

    params = ParameterDict(prefix)
    for name, shape in shapes:
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


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(_timed(fn)[1] for _ in range(repeats))


def _fmt_seconds(seconds: float | None) -> str:
    """Format a duration with a unit that keeps three significant digits (``4.2 µs``)."""
    if seconds is None:
        return "-"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if seconds >= scale:
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{seconds * 1e9:.0f} ns"


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


@contextmanager
def _ticker(desc: str, enabled: bool) -> Iterator[None]:
    """Show a tqdm bar with the elapsed time of a step whose length is unknown (stderr)."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    done = threading.Event()
    with tqdm(desc=desc, bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False) as bar:

        def tick() -> None:
            while not done.wait(0.2):
                bar.refresh()

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


class _Table:
    """Print one row per step as soon as it finishes (flushed, so a pipe sees it too)."""

    STEP_WIDTH = 22

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def header(self) -> None:
        w = self.STEP_WIDTH
        self.out.write(f"| {'step':<{w}} | {'first':>9} | {'warm':>9} | detail\n")
        self.out.write(f"|{'-' * (w + 2)}|{'-' * 11}|{'-' * 11}|{'-' * 44}\n")
        self.out.flush()

    def row(self, step: str, first: float | None, warm: float | None, detail: str) -> None:
        w = self.STEP_WIDTH
        self.out.write(
            f"| {step:<{w}} | {_fmt_seconds(first):>9} | {_fmt_seconds(warm):>9} | {detail}\n"
        )
        self.out.flush()


def run(
    out_dir: str | None = None,
    fmt: str = "zarr",
    seed: int = 0,
    *,
    stream: TextIO | None = None,
    model: str = "resnet50",
    progress: bool | None = None,
) -> int:
    """Run the demo, printing each step with its first and warm timings as it finishes.

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
    model : {'resnet50', 'tiny'}
        The dict to build: ResNet-50's 161 parameters, or a 4-parameter perceptron.
    progress : bool, optional
        Show progress bars on standard error; ``None`` shows them when it is a terminal.

    Returns
    -------
    int
        0 when the loaded values equal the saved ones and the checkpoint verifies, else 1.
    """
    import paramarena
    from paramarena.errors import ConfigurationError

    out = stream if stream is not None else sys.stdout
    if fmt not in FORMAT_SUFFIXES:
        raise ConfigurationError(
            f"Unknown demo format {fmt!r}; choose one of {', '.join(FORMAT_SUFFIXES)}."
        )
    if model not in MODELS:
        raise ConfigurationError(
            f"Unknown demo model {model!r}; choose one of {', '.join(MODELS)}."
        )
    bars = progress if progress is not None else sys.stderr.isatty()
    title, build = MODELS[model]
    tmp = None
    if out_dir is None:
        tmp = tempfile.mkdtemp(prefix="paramarena-demo-")
        base = Path(tmp)
    else:
        base = Path(out_dir)
        base.mkdir(parents=True, exist_ok=True)
    path = base / f"{model}{FORMAT_SUFFIXES[fmt]}"
    out.write(f"paramarena {paramarena.__version__} demo: {title} ({fmt}, seed {seed})\n")
    out.write(
        "The first run after installing compiles the kernels it uses (about a second) and\n"
        "caches them on disk; later runs load them from the cache. 'first' is each step's\n"
        "first call in this process, 'warm' the same step repeated, as a training loop sees it.\n\n"
    )
    out.flush()
    table = _Table(out)
    table.header()
    try:
        ok = _steps(table, build, path, seed, bars)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    out.write(
        "\nOK: checkpoint verified, values round-trip exactly.\n"
        if ok
        else "\nFAILED: see the table above.\n"
    )
    if out_dir is not None:
        out.write(f"Checkpoint kept at {path}\n")
    out.flush()
    return 0 if ok else 1


def _steps(table: _Table, build: Callable[[], Any], path: Path, seed: int, bars: bool) -> bool:
    """Run and print every step; return whether every check passed."""
    from paramarena import ParameterDict, init, storage

    params, t = _timed(build)
    count = len(list(params.keys()))
    total = sum(math.prod(p.shape) for p in params.values())
    table.row("build", t, _timed(build)[1], f"{count} parameters, {total:,} values")

    def initialize() -> None:
        params.initialize(init.Xavier(), seed=seed, force_reinit=True)

    with _ticker("initialize (first call compiles the kernels)", bars):
        _, first = _timed(initialize)
    before = [p.data().copy() for p in params.values()]
    warm = _timed(initialize)[1]
    same_seed = all(
        np.array_equal(a, p.data()) for a, p in zip(before, params.values(), strict=True)
    )
    detail = "Xavier weights, ones/zeros for BN" + ("" if same_seed else "; NOT REPRODUCIBLE")
    table.row("initialize", first, warm, detail)

    def dirty_then_zero() -> float:
        for p in params.values():
            p.grad()[...] = 1.0
        return _timed(params.zero_grad)[1]

    first = dirty_then_zero()
    warm = statistics.median(dirty_then_zero() for _ in range(5))
    zeroed = all(not p.grad().any() for p in params.values())
    nbytes = sum(p.grad().nbytes for p in params.values())
    detail = f"{_fmt_bytes(nbytes)} of gradients, " + ("all zero" if zeroed else "NOT ZERO")
    table.row("zero_grad", first, warm, detail)

    tiny = ParameterDict("tiny_")
    for k in range(TINY_COUNT):
        tiny.get(f"p{k}", shape=(4,))
    tiny.initialize(init.Zero(), seed=seed)
    first = _timed(tiny.zero_grad)[1]
    warm = _median_time(tiny.zero_grad, TINY_REPEATS)
    table.row(f"zero_grad, {TINY_COUNT} x (4,)", first, warm, "one kernel call for all gradients")

    def save() -> None:
        params.save(str(path), progress=bars)

    _, first = _timed(save)
    size = _size_on_disk(path)  # before the repeat, whose superseded version may linger
    warm = _timed(save)[1]
    table.row("save", first, warm, f"{path.name}, {_fmt_bytes(size)}")

    fresh = build()

    def load() -> None:
        fresh.load(str(path), progress=bars)

    _, first = _timed(load)
    warm = _timed(load)[1]
    table.row("load", first, warm, "into a fresh ParameterDict")

    def verify() -> Any:
        return storage.verify(str(path))

    with _ticker("verify", bars):
        report, first = _timed(verify)
    warm = _timed(verify)[1]
    same = all(
        np.array_equal(a.data(), b.data())
        for a, b in zip(params.values(), fresh.values(), strict=True)
    )
    detail = f"{report.checked} arrays checked, values {'identical' if same else 'DIFFER'}"
    table.row("verify", first, warm, detail)
    return bool(report.ok and same and zeroed and same_seed)
