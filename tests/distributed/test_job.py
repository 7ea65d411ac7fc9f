"""More checks with this job's communicator: under ``mpirun -n N`` they run on real MPI ranks
(the ``mpi`` nox session), in a plain run on the one-rank communicator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dist_models import SHARD_OPTIONS, build, reference, same

import paramarena as pa
from paramarena.distributed import shard
from paramarena.errors import RankMismatchError

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]


class Counting:
    """Wraps a communicator and counts its calls."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, {"allreduce_buffer": 0}
        self.name, self.rank, self.size = inner.name, inner.rank, inner.size

    def allreduce_buffer(self, buffer: np.ndarray, op: str) -> None:
        self.calls["allreduce_buffer"] += 1
        self.inner.allreduce_buffer(buffer, op)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_resnet50_gradients_take_one_allreduce(comm: Any) -> None:
    from paramarena.resnet50 import resnet50_shapes

    d = pa.ParameterDict()
    for name, shape in resnet50_shapes():
        d.get(name, shape=shape, init="zeros")
    d.initialize(seed=0)
    counting = Counting(comm)
    for p in d.values():
        p.grad()[...] = comm.rank + 1
    d.allreduce_grads("sum", comm=counting)
    assert counting.calls["allreduce_buffer"] == 1  # 161 gradients, one arena
    expect = comm.size * (comm.size + 1) / 2
    assert all(float(p.grad().reshape(-1)[-1]) == expect for p in d.values())


def test_mismatched_dicts_raise_on_every_rank(comm: Any) -> None:
    if comm.size == 1:
        pytest.skip("needs several ranks")
    d = pa.ParameterDict("m_")
    d.get("a", shape=(4, 4))
    d.get("b", shape=(4, 4 + (comm.rank == comm.size - 1)))
    d.initialize(seed=0)
    with pytest.raises(RankMismatchError, match=rf"rank {comm.size - 1}.*'m_b'"):
        d.allreduce_grads(comm=comm)
    with pytest.raises(RankMismatchError, match="'m_b'"):
        shard(d, comm, min_bytes=0)


def test_single_process_checkpoint_loads_on_every_rank(comm: Any, shared_dir: Path) -> None:
    path = str(shared_dir / "single.zarr")
    if comm.rank == 0:
        plain = build()
        plain.initialize(pa.init.Xavier(), seed=7)
        plain.save(path)
        plain.save(str(shared_dir / "single.params"))
    comm.barrier()
    ref = reference(seed=7)
    for source in (path, str(shared_dir / "single.params")):
        sd = shard(build(), comm, **SHARD_OPTIONS)
        sd.load(source)
        gathered = sd.gather()
        assert all(same(gathered[n], ref[n]) for n in ref), source


@pytest.mark.parametrize("init", ["uniform", "normal", "orthogonal"])
def test_global_initializers(comm: Any, init: str) -> None:
    sd = shard(build(), comm, **SHARD_OPTIONS)
    sd.initialize(init, seed=3)
    plain = build()
    plain.initialize(init, seed=3)
    gathered = sd.gather()
    assert all(same(gathered[n], np.asarray(p.data())) for n, p in plain.items())
