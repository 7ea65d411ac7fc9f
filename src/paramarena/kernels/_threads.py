"""paramarena's own worker threads for the large-array kernels (chunks handed out one at a time).

Numba's ``parallel=True`` layers split a loop into one equal share per thread (OpenMP's static
schedule, the workqueue layer) and then wait for the slowest share: when another process holds
one of the cores, a thread that shares that core holds up the whole call, and OpenMP threads
spin while they wait. Here the serial ``nogil`` kernels run on Python threads instead: the
calling thread and ``n - 1`` helpers take chunks from a shared counter until none is left, so a
thread slowed down by a busy core simply takes fewer chunks, and the call ends at most one chunk
after the work runs out. Values never depend on the thread count or on which thread ran a
chunk (each chunk is a pure function of its index).

This module must not import numba (``import paramarena`` imports it only through
:mod:`paramarena.kernels` functions).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Callable

__all__ = ["default_num_threads", "get_num_threads", "run_chunks", "set_num_threads"]


def default_num_threads() -> int:
    """Threads used unless :func:`set_num_threads` says otherwise.

    ``PARAMARENA_NUM_THREADS`` if set, else ``NUMBA_NUM_THREADS`` if set, else the number of
    CPUs this process may run on (``os.sched_getaffinity``, so ``taskset`` and container CPU
    sets are honoured).
    """
    for var in ("PARAMARENA_NUM_THREADS", "NUMBA_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class _Job:
    """One kernel call split into ``nchunks`` chunks; any thread may run any chunk."""

    __slots__ = ("_counter", "_done", "_lock", "error", "finished", "fn", "nchunks")

    def __init__(self, fn: Callable[[int], None], nchunks: int) -> None:
        self.fn = fn
        self.nchunks = nchunks
        self._counter = itertools.count()  # next() is atomic under the GIL
        self._lock = threading.Lock()
        self._done = 0
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def work(self) -> None:
        """Run chunks until none is left (called by the caller and by each helper)."""
        while True:
            i = next(self._counter)
            if i >= self.nchunks:
                return
            try:
                self.fn(i)
            except BaseException as exc:  # handed to the caller, which re-raises it
                with self._lock:
                    if self.error is None:
                        self.error = exc
            with self._lock:
                self._done += 1
                if self._done == self.nchunks:
                    self.finished.set()


class _Pool:
    def __init__(self) -> None:
        self.threads = default_num_threads()
        self._queues: list[queue.SimpleQueue[_Job | None]] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _helpers(self, wanted: int) -> list[queue.SimpleQueue[_Job | None]]:
        with self._lock:
            if self._pid != os.getpid():  # forked child: the parent's threads do not exist here
                self._queues = []
                self._pid = os.getpid()
            while len(self._queues) < wanted:
                q: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
                t = threading.Thread(
                    target=_helper_loop,
                    args=(q,),
                    name=f"paramarena-kernel-{len(self._queues)}",
                    daemon=True,
                )
                t.start()
                self._queues.append(q)
            return self._queues[:wanted]


def _helper_loop(q: queue.SimpleQueue[_Job | None]) -> None:
    while True:
        job = q.get()
        if job is None:
            return
        job.work()
        del job  # do not keep the last call's arrays alive while idle


_POOL = _Pool()


def get_num_threads() -> int:
    """Return how many threads (the caller included) the large-array kernels use."""
    return _POOL.threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (the caller included) for the large-array kernels from now on.

    Parameters
    ----------
    n : int
        At least 1.

    Raises
    ------
    paramarena.errors.ParameterValueError
        If ``n`` is not a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        from paramarena.errors import ParameterValueError

        raise ParameterValueError(f"the number of threads must be an int >= 1, got {n!r}.")
    _POOL.threads = n


def run_chunks(fn: Callable[[int], None], nchunks: int) -> None:
    """Call ``fn(i)`` for every ``i`` in ``range(nchunks)`` on the kernel threads; wait for all.

    ``fn`` must release the GIL for its work (a ``nogil`` Numba kernel) and write disjoint
    memory for different ``i``. The first exception raised by any chunk is re-raised here after
    every chunk has finished.
    """
    helpers = min(_POOL.threads, nchunks) - 1
    if helpers <= 0:
        for i in range(nchunks):
            fn(i)
        return
    job = _Job(fn, nchunks)
    for q in _POOL._helpers(helpers):
        q.put(job)
    job.work()
    job.finished.wait()
    if job.error is not None:
        raise job.error
