"""A communicator of N threads in one process: runs an N-rank job inside a plain test.

Only for tests (the product's engine is MPI): it lets the single-process sessions cover world
sizes 1-4 with the same code the MPI ranks run. Collectives meet at a barrier; a rank that
raises breaks the barrier, so the others fail at once instead of waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np


class _Barrier:
    """A reusable barrier; a rank whose barrier generation completed never sees a later abort."""

    def __init__(self, size: int, timeout: float = 60) -> None:
        self.size, self.timeout = size, timeout
        self.cond = threading.Condition()
        self.count = self.generation = 0
        self.broken = False

    def wait(self) -> None:
        with self.cond:
            generation = self.generation
            self.count += 1
            if self.count == self.size:
                self.count = 0
                self.generation += 1
                self.cond.notify_all()
                return
            while self.generation == generation:
                if self.broken or not self.cond.wait(self.timeout):
                    raise threading.BrokenBarrierError
            return

    def abort(self) -> None:
        with self.cond:
            self.broken = True
            self.cond.notify_all()


class _Group:
    def __init__(self, size: int) -> None:
        self.size = size
        self.barrier = _Barrier(size)
        self.slots: list[Any] = [None] * size


class ThreadCommunicator:
    name = "threads"

    def __init__(self, group: _Group, rank: int) -> None:
        self.group = group
        self.rank = rank
        self.size = group.size
        self.calls: dict[str, int] = {}

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    def _exchange(self, value: Any, then: Callable[[list[Any]], Any] = list) -> Any:
        g = self.group
        g.slots[self.rank] = value
        g.barrier.wait()
        result = then(list(g.slots))
        g.barrier.wait()
        return result

    def barrier(self) -> None:
        self._count("barrier")
        self.group.barrier.wait()

    def broadcast_buffer(self, buffer: np.ndarray, root: int) -> None:
        self._count("broadcast_buffer")

        def copy(slots: list[Any]) -> None:
            if self.rank != root:
                buffer[...] = slots[root]

        self._exchange(buffer, copy)

    def allreduce_buffer(self, buffer: np.ndarray, op: str) -> None:
        self._count("allreduce_buffer")
        assert op == "sum"

        def total(slots: list[Any]) -> np.ndarray:
            acc = slots[0].astype(buffer.dtype, copy=True)
            for other in slots[1:]:
                acc = acc + other
            return acc

        result = self._exchange(buffer, total)
        buffer[...] = result

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        self._count("allgather_bytes")
        return [bytes(x) for x in self._exchange(bytes(data))]

    def broadcast_bytes(self, data: bytes | None, root: int) -> bytes:
        self._count("broadcast_bytes")
        return bytes(self._exchange(data)[root] or b"")

    def abort(self, code: int) -> None:
        self.group.barrier.abort()
        raise SystemExit(code)


def run_ranks(
    size: int, fn: Callable[[ThreadCommunicator], Any], timeout: float = 120
) -> list[Any]:
    """Run ``fn(comm)`` on ``size`` thread ranks; return results or exceptions, in rank order."""
    group = _Group(size)
    results: list[Any] = [None] * size

    def main(rank: int) -> None:
        try:
            results[rank] = fn(ThreadCommunicator(group, rank))
        except BaseException as exc:
            results[rank] = exc
            group.barrier.abort()

    threads = [threading.Thread(target=main, args=(r,), daemon=True) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a rank did not finish: deadlock"
    return results


def values(results: list[Any]) -> list[Any]:
    """Re-raise the first exception of ``run_ranks`` results (a cause before a broken barrier)."""
    errors = [r for r in results if isinstance(r, BaseException)]
    causes = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if causes or errors:
        raise (causes or errors)[0]
    return results
