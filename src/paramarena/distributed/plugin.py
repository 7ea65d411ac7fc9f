"""The built-in communicators, registered through the ``paramarena_communicators`` hook.

``"single"`` (one process, always available) and ``"mpi"`` (mpi4py, detected when an MPI
launcher started the process). Importing this module imports neither mpi4py nor Numba.
"""

from __future__ import annotations

from collections.abc import Iterator

from paramarena.hooks.records import Communicator, CommunicatorSpec
from paramarena.hooks.specs import hookimpl

__all__ = ["paramarena_communicators"]


def _single() -> Communicator:
    from paramarena.distributed.single import SingleProcessCommunicator

    return SingleProcessCommunicator()


def _mpi() -> Communicator:
    from paramarena.distributed.mpi import MPICommunicator

    return MPICommunicator()


def _under_mpirun() -> bool:
    from paramarena.distributed.mpi import launched_by_mpirun

    return launched_by_mpirun()


@hookimpl
def paramarena_communicators() -> Iterator[CommunicatorSpec]:
    """Yield the ``single`` and ``mpi`` communicators."""
    yield CommunicatorSpec(
        "single", _single, detect=lambda: True, priority=0, description="one process"
    )
    yield CommunicatorSpec(
        "mpi", _mpi, detect=_under_mpirun, priority=10, description="MPI through mpi4py"
    )
