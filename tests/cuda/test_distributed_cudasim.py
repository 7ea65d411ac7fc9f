"""Replicated collectives on GPU arenas: staged through the host, one call per arena.

The CUDA simulator is not thread-safe, so instead of thread ranks a stand-in communicator
plays rank 0 of two ranks whose other rank holds ones (gradients) and sevens (root's data).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import paramarena as pa
from paramarena.devices import gpu

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(
        not (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or gpu._cuda_available()[0]),
        reason="needs NUMBA_ENABLE_CUDASIM=1 or a GPU",
    ),
]


class OtherRankHoldsOnes:
    name, rank, size = "stand-in", 0, 2

    def __init__(self) -> None:
        self.calls = {"allreduce_buffer": 0, "broadcast_buffer": 0}

    def barrier(self) -> None:
        pass

    def allreduce_buffer(self, buffer: np.ndarray, op: str) -> None:
        assert isinstance(buffer, np.ndarray)  # staged on the host
        self.calls["allreduce_buffer"] += 1
        buffer += 1

    def broadcast_buffer(self, buffer: np.ndarray, root: int) -> None:
        assert isinstance(buffer, np.ndarray)
        assert root == 1
        self.calls["broadcast_buffer"] += 1
        buffer[...] = 7

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        return [data, data]

    def broadcast_bytes(self, data: bytes | None, root: int) -> bytes:
        return data or b""

    def abort(self, code: int) -> None:
        raise SystemExit(code)


@pytest.mark.timeout(300)
def test_gpu_arenas_are_staged_through_the_host() -> None:
    d = pa.ParameterDict("g_")
    d.get("a", shape=(3, 4))
    d.get("b", shape=(5,))
    d.initialize(ctx=pa.gpu(0), seed=10)
    comm = OtherRankHoldsOnes()
    d.broadcast(root=1, comm=comm)
    for p in d.values():
        p.grad().copy_to_device(np.full(p.shape, 2.0, np.float32))
    d.allreduce_grads("mean", comm=comm)
    assert comm.calls == {"allreduce_buffer": 1, "broadcast_buffer": 1}  # one per arena
    np.testing.assert_array_equal(d["g_a"].data().copy_to_host(), np.full((3, 4), 7.0))
    np.testing.assert_array_equal(d["g_b"].grad().copy_to_host(), np.full(5, 1.5))
