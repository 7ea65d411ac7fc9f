"""Run mutated checkpoints through every reader and count what is not a clean error.

For each case: ``storage.load`` (all arrays, then one name), ``storage.inspect`` and
``storage.verify``, and for every ``cli_every``-th case the CLI's ``inspect`` and ``verify``.
A case fails when an operation

- raises anything but :class:`paramarena.errors.ParamarenaError` ("bug"),
- runs over the per-input timeout ("hang"; SIGALRM interrupts blocking calls such as opening
  a FIFO), or
- makes Python / numpy allocate more than ``ALLOC_SLACK + ALLOC_FACTOR x`` the input's bytes
  ("alloc", measured with :mod:`tracemalloc`, which numpy reports its buffers to),
- or the CLI prints a traceback ("cli").

Full run (the ``fuzz`` nox session)::

    python tests/fuzz/fuzz_harness.py --cases 10000 --timeout 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from fuzz_corpus import FORMATS, build_seeds, make_case

__all__ = ["Campaign", "run_campaign"]

ALLOC_SLACK = 32 * 2**20
ALLOC_FACTOR = 8
#: Options the fuzzer passes per format: sparse MXNet records may expand to dense arrays up to
#: this cap (the default cap is larger; the fuzz inputs are a few KiB).
LOAD_OPTIONS: dict[str, dict[str, Any]] = {"params": {"max_dense_bytes": 2**20}}


class Hang(BaseException):
    """Raised by the alarm when one input runs past the timeout."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    def on_alarm(_signum: int, _frame: Any) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _input_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                total += st.st_size
    return total


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


@dataclass
class Campaign:
    """Counts of one format's run."""

    fmt: str
    cases: int = 0
    operations: int = 0
    clean_errors: int = 0
    succeeded: int = 0
    bugs: Counter[str] = field(default_factory=Counter)
    hangs: list[int] = field(default_factory=list)
    allocations: list[tuple[int, int]] = field(default_factory=list)
    cli_tracebacks: list[int] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        """Everything that is not a success or a clean error."""
        return (
            sum(self.bugs.values())
            + len(self.hangs)
            + len(self.allocations)
            + len(self.cli_tracebacks)
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary."""
        return {
            "format": self.fmt,
            "cases": self.cases,
            "operations": self.operations,
            "succeeded": self.succeeded,
            "clean_errors": self.clean_errors,
            "non_paramarena_exceptions": sum(self.bugs.values()),
            "distinct_bugs": dict(self.bugs.most_common(20)),
            "bug_examples": self.examples,
            "hangs": self.hangs[:20],
            "over_allocations": self.allocations[:20],
            "cli_tracebacks": self.cli_tracebacks[:20],
        }


def _operations(fmt: str, path: Path) -> list[tuple[str, Callable[[], Any]]]:
    from paramarena import storage

    options = LOAD_OPTIONS.get(fmt, {})
    ops: list[tuple[str, Callable[[], Any]]] = [
        ("load", lambda: storage.load(path, **options)),
        ("inspect", lambda: storage.inspect(path)),
        ("verify", lambda: storage.verify(path)),
    ]

    def partial() -> Any:
        info = storage.inspect(path)
        if info.arrays:
            return storage.load(path, names=[info.arrays[-1].name], **options)
        return None

    ops.append(("partial load", partial))
    return ops


def _cli(path: Path) -> bool:
    """Run ``paramarena inspect`` and ``verify``; return True when either printed a traceback."""
    from paramarena import cli

    for command in ("inspect", "verify"):
        out, err = io.StringIO(), io.StringIO()
        try:
            cli.main([command, str(path)], stdout=out, stderr=err)
        except Hang:
            raise
        except BaseException:
            return True
        if "Traceback" in out.getvalue() + err.getvalue():
            return True
    return False


def run_case(campaign: Campaign, path: Path, number: int, timeout: float, with_cli: bool) -> None:
    """Run every operation on one input, recording failures in ``campaign``."""
    from paramarena.errors import ParamarenaError

    limit = ALLOC_SLACK + ALLOC_FACTOR * _input_bytes(path)
    campaign.cases += 1
    for name, op in _operations(campaign.fmt, path):
        campaign.operations += 1
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        try:
            with _deadline(timeout):
                op()
            campaign.succeeded += 1
        except Hang:
            campaign.hangs.append(number)
            continue
        except ParamarenaError:
            campaign.clean_errors += 1
        except Exception as exc:
            sig = f"{name}: {_signature(exc)}"
            campaign.bugs[sig] += 1
            campaign.examples.setdefault(sig, f"case {number}: {str(exc)[:200]}")
        peak = tracemalloc.get_traced_memory()[1] - base
        if peak > limit:
            campaign.allocations.append((number, peak))
    if with_cli:
        try:
            with _deadline(timeout * 2):
                if _cli(path):
                    campaign.cli_tracebacks.append(number)
        except Hang:
            campaign.hangs.append(number)


def run_campaign(
    fmt: str,
    cases: int,
    *,
    seed: int = 0,
    timeout: float = 5.0,
    cli_every: int = 10,
    workdir: Path | None = None,
    first: int = 0,
    progress: int = 0,
) -> Campaign:
    """Fuzz ``fmt`` with ``cases`` seeded inputs (numbers ``first`` .. ``first + cases - 1``)."""
    campaign = Campaign(fmt)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            root = Path(tmp)
            seeds = build_seeds(root / "seeds")
            work = root / "work"
            work.mkdir()
            for number in range(first, first + cases):
                path = make_case(fmt, seeds, seed, number, work)
                run_case(campaign, path, number, timeout, cli_every > 0 and number % cli_every == 0)
                if progress and campaign.cases % progress == 0:
                    print(
                        f"{fmt}: {campaign.cases}/{cases} inputs, {campaign.failures} failures",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        if started:
            tracemalloc.stop()
    return campaign


def main(argv: list[str] | None = None) -> int:
    """Command line: fuzz every format and print a JSON summary; exit 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="inputs per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per input")
    parser.add_argument("--first", type=int, default=0, help="first case number")
    parser.add_argument("--formats", nargs="*", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--cli-every", type=int, default=10)
    parser.add_argument("--progress", type=int, default=1000, help="report every N inputs")
    parser.add_argument("--report", type=Path, help="write the JSON summary here too")
    args = parser.parse_args(argv)
    summaries = []
    failed = False
    for fmt in args.formats:
        t0 = time.perf_counter()
        campaign = run_campaign(
            fmt,
            args.cases,
            seed=args.seed,
            timeout=args.timeout,
            cli_every=args.cli_every,
            first=args.first,
            progress=args.progress,
        )
        summary = campaign.summary()
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        summaries.append(summary)
        print(json.dumps(summary, indent=1), flush=True)
        failed = failed or campaign.failures > 0
    if args.report:
        args.report.write_text(json.dumps(summaries, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
