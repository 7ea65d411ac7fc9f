"""The communicator hook: built-ins, the default choice, plugins, and MPI without mpi4py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from dist_threads import run_ranks, values

from paramarena.distributed.mpi import MPICommunicator, launched_by_mpirun
from paramarena.distributed.single import SingleProcessCommunicator
from paramarena.errors import ConfigurationError, UnknownNameError
from paramarena.hooks import manager
from paramarena.hooks.records import Communicator, CommunicatorSpec
from paramarena.hooks.specs import hookimpl


def test_builtins_are_registered() -> None:
    specs = manager.communicator_specs()
    assert {"single", "mpi"} <= set(specs)
    assert specs["mpi"].priority > specs["single"].priority


def test_default_is_single_outside_mpirun(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", manager.COMMUNICATOR_ENV):
        monkeypatch.delenv(var, raising=False)
    assert manager.default_communicator_name() == "single"
    assert not launched_by_mpirun()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert manager.default_communicator_name() == "mpi"
    monkeypatch.setenv(manager.COMMUNICATOR_ENV, "single")
    assert manager.default_communicator_name() == "single"


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(UnknownNameError, match="'single'") as info:
        manager.get_communicator("nccl")
    assert "'mpi'" in str(info.value)


def test_single_process_communicator() -> None:
    c = manager.get_communicator("single")
    assert isinstance(c, SingleProcessCommunicator)
    assert isinstance(c, Communicator)
    assert (c.rank, c.size) == (0, 1)
    buf = np.arange(4.0)
    c.allreduce_buffer(buf, "sum")
    c.broadcast_buffer(buf, 0)
    np.testing.assert_array_equal(buf, np.arange(4.0))
    assert c.allgather_bytes(b"x") == [b"x"]
    assert c.broadcast_bytes(b"y", 0) == b"y"
    with pytest.raises(ConfigurationError, match="root"):
        c.broadcast_buffer(buf, 1)
    assert manager.get_communicator(c) is c


def test_mpi_without_mpi4py_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    if "mpi4py.MPI" in sys.modules:
        pytest.skip("mpi4py is already initialized in this process")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ConfigurationError, match=r"paramarena\[mpi\]"):
        MPICommunicator()


class _ToyCommunicator(SingleProcessCommunicator):
    name = "toy"


class _ToyPlugin:
    @hookimpl
    def paramarena_communicators(self) -> Iterator[CommunicatorSpec]:
        yield CommunicatorSpec("toy", _ToyCommunicator, detect=lambda: True, priority=99)


@pytest.mark.usefixtures("fresh_plugin_manager")
def test_a_plugin_communicator_becomes_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(manager.COMMUNICATOR_ENV, raising=False)
    manager.get_plugin_manager().register(_ToyPlugin(), name="toy-plugin")
    manager.invalidate_caches()
    assert manager.default_communicator_name() == "toy"
    toy = manager.get_communicator("toy")
    assert isinstance(toy, _ToyCommunicator)
    assert manager.get_communicator("toy") is toy
    manager._communicators.pop("toy", None)


@pytest.mark.timeout(60)
def test_thread_communicator_collectives() -> None:
    def rank(comm: Any) -> tuple[list[bytes], bytes, list[float], list[float]]:
        got = comm.allgather_bytes(bytes([comm.rank]) * comm.rank)
        root = comm.broadcast_bytes(b"hello" if comm.rank == 1 else None, 1)
        buf = np.full(3, float(comm.rank))
        comm.allreduce_buffer(buf, "sum")
        other = np.full(2, float(comm.rank))
        comm.broadcast_buffer(other, 2)
        return got, root, buf.tolist(), other.tolist()

    for got, root, summed, bcast in values(run_ranks(3, rank)):
        assert got == [b"", b"\x01", b"\x02\x02"]
        assert root == b"hello"
        assert summed == [3.0] * 3
        assert bcast == [2.0, 2.0]


@pytest.mark.mpi
@pytest.mark.timeout(60)
def test_job_communicator_collectives(comm: Any) -> None:
    """The same with this job's communicator: MPI ranks under mpirun."""
    got = comm.allgather_bytes(str(comm.rank).encode())
    assert got == [str(r).encode() for r in range(comm.size)]
    assert comm.broadcast_bytes(b"r0" if comm.rank == 0 else None, 0) == b"r0"
    for dtype in (np.float32, np.float64, np.int64, np.float16):
        buf = np.full(5, comm.rank + 1, dtype=dtype)
        comm.allreduce_buffer(buf, "sum")
        assert buf.tolist() == [comm.size * (comm.size + 1) / 2] * 5
    import ml_dtypes

    bf = np.full(4, comm.rank, dtype=ml_dtypes.bfloat16)
    comm.broadcast_buffer(bf, comm.size - 1)
    assert bf.astype(np.float32).tolist() == [comm.size - 1.0] * 4
    comm.barrier()
