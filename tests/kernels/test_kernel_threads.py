"""The kernel threads: every chunk runs once, errors reach the caller, settings are honoured."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from paramarena import kernels
from paramarena.kernels import _threads


@pytest.mark.timeout(60)
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_run_chunks_runs_every_chunk_exactly_once(threads):
    previous = kernels.get_num_threads()
    kernels.set_num_threads(threads)
    try:
        seen = np.zeros(1000, np.int64)
        names = set()

        def chunk(i: int) -> None:
            seen[i] += 1
            names.add(threading.current_thread().name)

        _threads.run_chunks(chunk, 1000)
    finally:
        kernels.set_num_threads(previous)
    np.testing.assert_array_equal(seen, np.ones(1000, np.int64))
    assert len(names) <= threads


@pytest.mark.timeout(60)
def test_run_chunks_reraises_after_all_chunks_finished():
    previous = kernels.get_num_threads()
    kernels.set_num_threads(2)
    done = []

    def chunk(i: int) -> None:
        if i == 3:
            raise RuntimeError("chunk 3 failed")
        done.append(i)

    try:
        with pytest.raises(RuntimeError, match="chunk 3"):
            _threads.run_chunks(chunk, 20)
    finally:
        kernels.set_num_threads(previous)
    assert sorted(done) == [i for i in range(20) if i != 3]


def test_default_thread_count_from_environment(monkeypatch):
    monkeypatch.setenv("PARAMARENA_NUM_THREADS", "3")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "5")
    assert _threads.default_num_threads() == 3
    monkeypatch.delenv("PARAMARENA_NUM_THREADS")
    assert _threads.default_num_threads() == 5
    monkeypatch.delenv("NUMBA_NUM_THREADS")
    assert _threads.default_num_threads() >= 1
