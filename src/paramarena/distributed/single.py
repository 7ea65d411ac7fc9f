"""The one-rank communicator: every collective is the identity (no library, no processes).

It makes every distributed code path run in a plain ``python`` process: a sharded dict of one
rank holds whole parameters, a sharded save is an ordinary save, an allreduce leaves the
gradients as they are (``"mean"`` over one rank).
"""

from __future__ import annotations

import numpy as np

from paramarena.errors import ConfigurationError

__all__ = ["SingleProcessCommunicator"]


def _check_root(root: int, size: int) -> None:
    if not 0 <= root < size:
        raise ConfigurationError(f"root must be a rank in [0, {size}), got {root!r}.")


class SingleProcessCommunicator:
    """A job of one rank (``rank == 0``, ``size == 1``)."""

    name = "single"
    rank = 0
    size = 1

    def barrier(self) -> None:
        """Nothing to wait for."""

    def broadcast_buffer(self, buffer: np.ndarray, root: int) -> None:
        """Leave ``buffer`` as it is (this rank is the root)."""
        _check_root(root, 1)

    def allreduce_buffer(self, buffer: np.ndarray, op: str) -> None:
        """Leave ``buffer`` as it is (the sum over one rank)."""

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Return ``[data]``."""
        return [bytes(data)]

    def broadcast_bytes(self, data: bytes | None, root: int) -> bytes:
        """Return ``data``."""
        _check_root(root, 1)
        return b"" if data is None else bytes(data)

    def abort(self, code: int) -> None:
        """End this process (there is no other rank to stop)."""
        import os

        os._exit(code)

    def __repr__(self) -> str:
        return "SingleProcessCommunicator(rank=0, size=1)"
