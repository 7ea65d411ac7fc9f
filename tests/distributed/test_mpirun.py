"""Real MPI jobs started with ``mpirun``: save with N ranks, load with M ranks (N, M in 1-4),
and a rank SIGKILLed in the middle of a save. Each job is bounded by a timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dist_models import build, reference, same

import paramarena as pa
from paramarena.distributed.mpi import launched_by_mpirun

JOB = Path(__file__).with_name("mpi_job.py")
SIZES = [1, 2, 3, 4]

pytestmark = [
    pytest.mark.mpirun,
    pytest.mark.skipif(launched_by_mpirun(), reason="already inside an MPI job"),
]


def _mpirun() -> str:
    pytest.importorskip("mpi4py", reason="needs mpi4py (paramarena[mpi])")
    found = shutil.which("mpirun") or str(Path(sys.executable).with_name("mpirun"))
    if not Path(found).exists():
        pytest.skip("needs Open MPI's mpirun (paramarena[mpi])")
    return found


def run_job(n: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    src = str(Path(pa.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    cmd = [_mpirun(), "-n", str(n), "--oversubscribe", sys.executable, str(JOB), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.timeout(600)
def test_save_on_n_ranks_load_on_m_ranks(tmp_path: Path) -> None:
    """Jobs of 4, 3, 2, 1 ranks each load every checkpoint so far, then save their own; a last
    4-rank job loads the ones saved after it: every (N, M) pair in 1-4, plus the single-process
    and the converted-from-.params checkpoints at every M."""
    plain = build()
    plain.initialize(pa.init.Xavier(), seed=7)
    ref = str(tmp_path / "single.zarr")
    plain.save(ref)
    plain.save(str(tmp_path / "model.params"))
    converted = str(tmp_path / "converted.zarr")
    pa.storage.save(converted, pa.storage.load(str(tmp_path / "model.params")))
    sources = [ref, converted]
    for m in (4, 3, 2, 1):
        path = str(tmp_path / f"by{m}.zarr")
        done = run_job(m, "run", ref, path, *sources)
        assert done.returncode == 0, f"job of {m} ranks:\n{done.stdout}{done.stderr}"
        assert pa.storage.verify(path).ok
        sources.append(path)
    last = str(tmp_path / "again.zarr")
    done = run_job(4, "run", ref, last, *sources[3:])  # by3, by2, by1 on 4 ranks
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(300)
def test_rank_killed_mid_save_aborts_and_the_last_commit_loads(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.zarr"
    done = run_job(2, "kill", str(path), timeout=120)
    assert done.returncode != 0  # the launcher ended the job
    ref = reference(seed=1)
    loaded = pa.storage.load(str(path))
    assert all(same(loaded[n], ref[n]) for n in ref)
    assert pa.storage.verify(str(path)).ok
