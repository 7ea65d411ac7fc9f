"""Fixtures of the distributed tests: the job's communicator and a directory all ranks share.

In a plain ``pytest`` run the communicator is the one-rank ``"single"``; under
``mpirun -n N python -m pytest tests/distributed`` it is MPI and every rank runs every test
(collectives in the same order). Tests that start ``mpirun`` themselves skip under ``mpirun``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from paramarena.hooks.manager import get_communicator
from paramarena.hooks.records import Communicator


@pytest.fixture(scope="session")
def comm() -> Communicator:
    """The communicator of this job (``single`` or ``mpi``)."""
    return get_communicator()


@pytest.fixture
def shared_dir(comm: Communicator) -> Iterator[Path]:
    """A fresh directory made by rank 0 and known to every rank (same machine)."""
    made = tempfile.mkdtemp(prefix="paramarena-dist-") if comm.rank == 0 else None
    path = Path(comm.broadcast_bytes(made.encode() if made else None, 0).decode())
    yield path
    comm.barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)
