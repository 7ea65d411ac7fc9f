"""Replicated mode: broadcast and allreduce_grads, one collective per arena, in place."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from dist_threads import run_ranks, values

import paramarena as pa
from paramarena.errors import ConfigurationError, NotInitializedError, RankMismatchError


def _dict(n: int = 40, dtype: str = "float32") -> pa.ParameterDict:
    d = pa.ParameterDict("m_")
    for i in range(n):
        d.get(f"w{i}", shape=(3, 5 + i % 4), dtype=dtype)
    return d


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_broadcast_gives_every_rank_roots_values(size: int) -> None:
    def rank(comm: Any) -> dict[str, np.ndarray]:
        d = _dict()
        d.initialize(seed=100 + comm.rank)
        d.broadcast(root=size - 1, comm=comm)
        assert comm.calls["broadcast_buffer"] == 1  # one data arena, one call
        return {k: p.data().copy() for k, p in d.items()}

    results = values(run_ranks(size, rank))
    root = _dict()
    root.initialize(seed=100 + size - 1)
    for r in results:
        for k, p in root.items():
            np.testing.assert_array_equal(r[k], p.data())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("op", ["mean", "sum"])
def test_allreduce_grads_one_call_per_arena(dtype: str, op: str) -> None:
    size = 3

    def rank(comm: Any) -> list[np.ndarray]:
        d = _dict(dtype=dtype)
        d.initialize(seed=0)
        arrays = [p.grad() for p in d.values()]
        for i, g in enumerate(arrays):
            g[...] = (comm.rank + 1) * (i + 1)
        d.allreduce_grads(op, comm=comm)
        assert comm.calls["allreduce_buffer"] == 1  # 40 parameters, one arena: one call
        assert all(p.grad() is g for p, g in zip(d.values(), arrays, strict=True))  # in place
        return [np.asarray(g, dtype=np.float64) for g in arrays]

    total = sum(r + 1 for r in range(size))
    expect = total / size if op == "mean" else total
    for grads in values(run_ranks(size, rank)):
        for i, g in enumerate(grads):
            np.testing.assert_allclose(g, expect * (i + 1), rtol=1e-2)


@pytest.mark.timeout(60)
def test_plan_is_reused_and_follows_new_gradients() -> None:
    def rank(comm: Any) -> float:
        d = _dict(5)
        d.initialize(seed=0)
        d.allreduce_grads(comm=comm)
        d.allreduce_grads(comm=comm)
        assert comm.calls["allgather_bytes"] == 2  # the digest check ran once, not per call
        d["m_w0"].grad_req = "null"
        d["m_w0"].grad_req = "write"  # a new gradient view: the plan is rebuilt
        d["m_w0"].grad()[...] = comm.rank
        d.allreduce_grads("sum", comm=comm)
        return float(d["m_w0"].grad()[0, 0])

    assert values(run_ranks(2, rank)) == [1.0, 1.0]


@pytest.mark.timeout(60)
def test_foreign_parameters_are_reduced_too() -> None:
    def rank(comm: Any) -> float:
        d = _dict(2)
        d.initialize(seed=0)
        lone = pa.Parameter("m_lone", shape=(4,))
        lone.initialize(seed=0)
        d.update({"m_lone": lone})
        lone.grad()[...] = comm.rank + 1
        d.allreduce_grads("sum", comm=comm)
        return float(lone.grad()[0])

    assert values(run_ranks(2, rank)) == [3.0, 3.0]


@pytest.mark.timeout(60)
def test_different_dicts_raise_on_every_rank_naming_the_parameter() -> None:
    def rank(comm: Any) -> None:
        d = _dict(4)
        if comm.rank == 2:
            d.get("extra", shape=(2,))
        d.initialize(seed=0)
        d.allreduce_grads(comm=comm)

    for r in run_ranks(3, rank):
        assert isinstance(r, RankMismatchError), r
        assert "m_extra" in str(r)
        assert "rank 2" in str(r)

    def shapes(comm: Any) -> None:
        d = pa.ParameterDict("m_")
        d.get("a", shape=(2, 2))
        d.get("b", shape=(2, 3 + comm.rank))
        d.initialize(seed=0)
        d.broadcast(comm=comm)

    for r in run_ranks(2, shapes):
        assert isinstance(r, RankMismatchError)
        assert "'m_b'" in str(r)
        assert "shape" in str(r)


@pytest.mark.mpi
@pytest.mark.timeout(60)
def test_job_communicator(comm: Any) -> None:
    d = _dict()
    d.initialize(seed=comm.rank)
    d.broadcast(0, comm=comm)
    ref = _dict()
    ref.initialize(seed=0)
    for k, p in ref.items():
        np.testing.assert_array_equal(d[k].data(), p.data())
    for p in d.values():
        p.grad()[...] = comm.rank
    d.allreduce_grads("mean", comm=comm)
    expect = sum(range(comm.size)) / comm.size
    for p in d.values():
        np.testing.assert_allclose(p.grad(), expect)


@pytest.mark.mpi
@pytest.mark.timeout(60)
def test_bad_arguments(comm: Any) -> None:
    d = _dict(2)
    with pytest.raises(NotInitializedError, match="m_w0"):
        d.broadcast(comm=comm)
    d.initialize(seed=0)
    with pytest.raises(ConfigurationError, match="'max'"):
        d.allreduce_grads("max", comm=comm)
    with pytest.raises(ConfigurationError, match="root"):
        d.broadcast(root=comm.size, comm=comm)
