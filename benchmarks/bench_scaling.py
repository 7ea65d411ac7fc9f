"""Dict-level operations at model scale: per-parameter overhead, in-place re-init/load, peak RSS.

Every case runs in a fresh child process (so that peak RSS belongs to it; the peak is reset with
``/proc/self/clear_refs`` before each measured step and read from ``VmHWM``). Within a child the
compared alternatives run interleaved; each case is repeated ``--repeat`` times and the table
gives the median time and the range of the speed ratio over the runs.

Rows:

* ``initialize`` of N parameters against a numpy ``Generator.random(out=)`` loop over the same
  float32 arrays (preallocated, so numpy pays no allocation): 1000 x (4,), ResNet-50, 10k and
  100k parameters, and the scaling sizes. Both run in 5 interleaved rounds on fresh memory
  (one round for models over 400 MiB) and the medians are compared: on a virtual machine the
  first touch of memory the process never had costs far more than the fill itself, and a
  single round would charge it to whichever side ran first;
* ``ParameterDict.save`` (zarr, a new path each time, fsync'd) against
  ``safetensors.numpy.save_file`` + fsync of the file (equal durability), and
  ``ParameterDict.load`` into a fresh dict against ``safetensors.numpy.load_file``;
* ``initialize(force_reinit=True)`` and ``load`` into the initialized dict against the same
  operation on a fresh dict, with the peak RSS each adds over the model. Every load finds its
  file in the page cache (read once, untimed, before it), and before the saves the model's
  size is written once to a scratch file (untimed), so that neither save is the first to take
  page-cache memory the machine never touched.

Run: ``python benchmarks/bench_scaling.py [--repeat N] [--max-elements E] [--write-docs]``;
``--write-docs`` replaces the table in docs/benchmarks.md between the scaling markers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- scaling:begin -->", "<!-- scaling:end -->"
MIB = 1 << 20


# --- child side --------------------------------------------------------------------------------


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _shapes(case: dict[str, Any]) -> list[tuple[int, ...]]:
    if case["kind"] == "resnet50":
        from paramarena.resnet50 import resnet50_shapes

        return [tuple(s) for _, s in resnet50_shapes()]
    count, elements = case["count"], case["elements"]
    each = max(1, elements // count)
    return [(each,) if i % 2 else (each // 16, 16) if each >= 16 else (each,) for i in range(count)]


def _build(shapes: list[tuple[int, ...]]) -> Any:
    import paramarena as pa

    d = pa.ParameterDict("net_")
    for i, shape in enumerate(shapes):
        d.get(f"layer{i}_weight", shape=shape)
    return d


def _write_and_drop(path: Path, nbytes: int) -> None:
    """Write ``nbytes`` to ``path`` in 8 MiB blocks, fsync, delete (untimed preparation)."""
    block = b"\1" * (8 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = nbytes
        while left > 0:
            left -= os.write(fd, block[: min(left, len(block))])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)


def _warm(path: Path) -> None:
    """Read ``path`` (a file, or every file under it) once: its pages are then cached."""
    files = (
        [str(path)]
        if path.is_file()
        else [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
    )
    for file in files:
        with open(file, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def child(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case; return its timings (s) and peak-RSS increases (bytes)."""
    import numpy as np

    from paramarena import init

    shapes = _shapes(case)
    out: dict[str, Any] = {"params": len(shapes), "elements": sum(int(np.prod(s)) for s in shapes)}
    model = out["elements"] * 4
    # compile / load the kernels this case uses outside the timings: a few big parameters take
    # the per-array parallel kernel, many small ones the batched one
    for few in (shapes[:4], shapes[:2000]):
        if sum(int(np.prod(s)) for s in few) <= 1e8:
            _build(few).initialize(init.Uniform(), seed=0)
    rng = np.random.default_rng(0)
    arrays: list[np.ndarray] = []

    def numpy_loop() -> None:
        for a in arrays:
            rng.random(out=a, dtype=np.float32)

    # interleaved rounds, fresh arrays on both sides each round (the first touch of new memory
    # is paid by both); fewer rounds for models that do not fit twice
    rounds = 5 if model <= 400 * MIB else 1
    inits, numpys = [], []
    for r in range(rounds):
        d = _build(shapes)
        inits.append(_timed(lambda d=d: d.initialize(init.Uniform(), seed=1)))
        arrays.extend(np.empty(s, np.float32) for s in shapes)
        numpys.append(_timed(numpy_loop))
        arrays.clear()
        if r < rounds - 1:
            del d
    out["init"] = statistics.median(inits)
    out["numpy"] = statistics.median(numpys)
    base = _rss("VmRSS")
    _reset_peak()
    out["reinit"] = _timed(lambda: d.initialize(init.Uniform(), seed=2, force_reinit=True))
    out["reinit_peak"] = _rss("VmHWM") - base
    if not case.get("storage", True):
        return out
    tmp = Path(tempfile.mkdtemp(prefix="paramarena-scaling-", dir=case.get("dir")))
    try:
        path = tmp / "ckpt.zarr"
        # untimed: write the model's size once, so that neither save below is the first to
        # take page-cache memory this machine has never touched (on this virtual machine that
        # costs ~1 ms per MiB, and it would be charged to whichever side ran first)
        _write_and_drop(tmp / "warm.bin", model)
        out["save"] = _timed(lambda: d.save(path))
        try:
            from safetensors.numpy import load_file, save_file

            flat = {n: p.data() for n, p in d.items()}

            def st_save() -> None:
                target = tmp / f"st{time.monotonic_ns()}.safetensors"
                save_file(flat, str(target))
                fd = os.open(target, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

            out["st_save"] = _timed(st_save)
            st_file = next(tmp.glob("st*.safetensors"))
            _warm(st_file)  # in the page cache, as the checkpoint is for the loads below
            out["st_load"] = _timed(lambda: load_file(str(st_file)))
            flat.clear()
        except ImportError:  # pragma: no cover - safetensors is a bench dependency
            pass
        # both loads below find the checkpoint in the page cache (as right after a save): the
        # safetensors runs above may have pushed it out, and a load from disk would measure
        # the disk, not the load (benchmarks/bench_load_inplace.py compares cold loads too)
        _warm(path)
        base = _rss("VmRSS")
        _reset_peak()
        out["load_inplace"] = _timed(lambda: d.load(path))
        out["load_inplace_peak"] = _rss("VmHWM") - base
        d = _build([])  # drop the model before the fresh load
        fresh = _build(shapes)
        _warm(path)
        base = _rss("VmRSS")
        _reset_peak()
        out["load_fresh"] = _timed(lambda: fresh.load(path))
        out["load_fresh_peak"] = _rss("VmHWM") - base
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    out["model_bytes"] = model
    return out


# --- parent side -------------------------------------------------------------------------------

CASES: list[dict[str, Any]] = [
    {"label": "1000 x (4,)", "kind": "flat", "count": 1000, "elements": 4000, "storage": False},
    {"label": "ResNet-50 (161 arrays)", "kind": "resnet50"},
    {"label": "10k params, 2.6M el.", "kind": "flat", "count": 10_000, "elements": 2_560_000},
    {"label": "100k params, 25.6M el.", "kind": "flat", "count": 100_000, "elements": 25_600_000},
    {"label": "10k params, 100M el.", "kind": "flat", "count": 10_000, "elements": 100_000_000},
    {"label": "1k params, 400M el.", "kind": "flat", "count": 1_000, "elements": 400_000_000},
    {"label": "1k params, 1.5B el.", "kind": "flat", "count": 1_000, "elements": 1_500_000_000},
]


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(case)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"case {case['label']} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _span(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2f}x" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}x"


def _med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def table(results: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> str:
    lines = [
        "| model | initialize s (vs numpy loop) | save s (vs safetensors+fsync) | "
        "load s (vs safetensors) | re-init s (vs fresh init) | re-init peak RSS | "
        "load into initialized s (vs fresh load) | its peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, runs in results:
        init = f"{_med(runs, 'init'):.3f} ({_span([r['numpy'] / r['init'] for r in runs])})"
        reinit = f"{_med(runs, 'reinit'):.3f} ({_span([r['reinit'] / r['init'] for r in runs])})"
        peak = f"+{max(r['reinit_peak'] for r in runs) / MIB:.0f} MiB"
        if "save" in runs[0]:
            save = f"{_med(runs, 'save'):.3f} ({_span([r['st_save'] / r['save'] for r in runs])})"
            load = (
                f"{_med(runs, 'load_fresh'):.3f} "
                f"({_span([r['st_load'] / r['load_fresh'] for r in runs])})"
            )
            into = (
                f"{_med(runs, 'load_inplace'):.3f} "
                f"({_span([r['load_inplace'] / r['load_fresh'] for r in runs])} the time)"
            )
            into_peak = f"+{max(r['load_inplace_peak'] for r in runs) / MIB:.0f} MiB"
        else:
            save = load = into = into_peak = "–"
        model = runs[0]["elements"] * 4 / MIB
        lines.append(
            f"| {case['label']} ({runs[0]['params']} params, {model:.0f} MiB) | {init} | {save} | "
            f"{load} | {reinit} (x the time) | {peak} | {into} | {into_peak} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-elements", type=float, default=4e8)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    results = []
    for case in CASES:
        if case.get("elements", 0) > args.max_elements:
            continue
        runs = [run_case(case) for _ in range(args.repeat)]
        results.append((case, runs))
        print(case["label"], "done", file=sys.stderr, flush=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = (
        f"Measured {stamp}, {os.cpu_count()} CPUs, median of {args.repeat} runs (ratio range "
        f"over the runs; a speed ratio > 1 means paramarena is faster).\n\n{table(results)}\n"
    )
    print(text)
    if args.write_docs:
        doc = DOC.read_text()
        start, stop = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        DOC.write_text(doc[:start] + "\n" + text + doc[stop:])


if __name__ == "__main__":
    main()
