"""Sharded initialize: each rank fills only its rows; gathered, the values are bit-identical to
a single-process ``initialize(seed=s)`` at world sizes 1-4 (thread ranks here; MPI ranks in the
``mpi`` nox session)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dist_models import SHARD_OPTIONS, build, reference, same
from dist_threads import run_ranks, values

import paramarena as pa
from paramarena.distributed import shard
from paramarena.distributed.layout import layout_from_description, plan_layout
from paramarena.errors import RankMismatchError, ShardingError


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_gathered_initialize_equals_single_process(size: int) -> None:
    ref = reference(seed=7)

    def rank(comm: object) -> dict[str, np.ndarray]:
        sd = shard(build(), comm, **SHARD_OPTIONS)  # type: ignore[arg-type]
        sd.initialize(pa.init.Xavier(), seed=7)
        for s in sd.layout:  # each rank holds only its rows
            assert sd[s.name].data().shape == s.local_shape(sd.comm.rank)
        return sd.gather()

    for gathered in values(run_ranks(size, rank)):
        assert set(gathered) == set(ref)
        for name in ref:
            assert same(gathered[name], ref[name]), name


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_initialize_in_the_job(comm: object) -> None:
    """The same check with this job's communicator (single, or MPI under mpirun)."""
    sd = shard(build(), comm, **SHARD_OPTIONS)  # type: ignore[arg-type]
    sd.initialize(pa.init.Xavier(), seed=7)
    ref = reference(seed=7)
    gathered = sd.gather()
    for name in ref:
        assert same(gathered[name], ref[name]), name


@pytest.mark.timeout(60)
def test_seed_none_uses_rank_0_global_seed() -> None:
    def rank(comm: object) -> dict[str, np.ndarray]:
        pa.seed(1000 + comm.rank)  # type: ignore[attr-defined]  # differs per rank (global!)
        sd = shard(build(), comm, **SHARD_OPTIONS)  # type: ignore[arg-type]
        sd.initialize(pa.init.Xavier())
        return sd.gather()

    results = values(run_ranks(2, rank))
    assert all(same(results[0][n], results[1][n]) for n in results[0])


@pytest.mark.timeout(60)
def test_different_seeds_raise_on_every_rank() -> None:
    def rank(comm: object) -> None:
        sd = shard(build(), comm, **SHARD_OPTIONS)  # type: ignore[arg-type]
        sd.initialize(seed=comm.rank)  # type: ignore[attr-defined]

    results = run_ranks(3, rank)
    assert all(isinstance(r, ShardingError) and "seed" in str(r) for r in results)


@pytest.mark.timeout(60)
def test_whole_array_initializer_over_the_limit_names_the_parameter() -> None:
    def rank(comm: object) -> None:
        sd = shard(build(), comm, whole_limit_bytes=100, **SHARD_OPTIONS)  # type: ignore[arg-type]
        sd.initialize(pa.init.Xavier(), seed=1)

    for r in run_ranks(2, rank):
        assert isinstance(r, ShardingError)
        assert "net_orth_weight" in str(r)
        assert "Orthogonal" in str(r)


@pytest.mark.timeout(60)
def test_ranks_with_different_dicts_raise_naming_the_parameter() -> None:
    def rank(comm: object) -> None:
        d = build()
        if comm.rank == 1:  # type: ignore[attr-defined]
            d = pa.ParameterDict("net_")
            d.update({n: p for n, p in build().items() if n != "net_half_weight"})
            d.get("half_weight", shape=(50, 9), dtype="float32")
        shard(d, comm, **SHARD_OPTIONS)  # type: ignore[arg-type]

    for r in run_ranks(3, rank):
        assert isinstance(r, RankMismatchError), r
        assert "net_half_weight" in str(r)
        assert "rank 1" in str(r)


def test_layout_rules() -> None:
    rows = [
        ("a", (10, 4), "float32", False),
        ("small", (3,), "float32", False),
        ("scalar", (), "float32", False),
        ("c", (100, 4), "float32", True),
        ("big", (1001, 1000), "float32", False),
    ]
    lay = plan_layout(rows, 4, 2, min_bytes=100, chunk_bytes=400_000)
    a = lay["a"]
    assert a.bounds == (0, 3, 6, 9, 10)
    assert a.block == 3
    assert a.local_shape(3) == (1, 4)
    assert a.elements(1) == (12, 24)
    assert lay["small"].replicated
    assert lay["scalar"].replicated
    assert lay["c"].replicated
    big = lay["big"]
    assert big.block == 100  # 400 kB chunks of 4000-byte rows
    assert big.bounds == (0, 300, 600, 900, 1001)  # 11 blocks: the first ranks take one more
    assert plan_layout(rows, 4, 0, min_bytes=100)["big"].block == 251  # ceil(rows / size)
    doc = json.loads(json.dumps(lay.describe()))
    assert layout_from_description(doc, 2) == lay
    assert "rows [0:3, 3:6, 6:9, 9:10]" in str(lay)
    # more ranks than blocks: the last ranks hold no rows
    tiny = plan_layout([("t", (2, 400), "float32", False)], 4, 0, min_bytes=0)
    assert tiny["t"].bounds == (0, 1, 2, 2, 2)
    with pytest.raises(ShardingError, match="axis 0"):
        plan_layout(rows, 2, 0, axis=1)


def test_shard_one_parameter_and_unknown_shapes() -> None:
    p = pa.Parameter("w", shape=(8, 8))
    sd = shard(p, min_bytes=0)
    sd.initialize(seed=3)
    q = pa.Parameter("w", shape=(8, 8))
    q.initialize(seed=3)
    assert same(sd["w"].data(), q.data())
    d = pa.ParameterDict()
    d.get("x", shape=(0, 3), allow_deferred_init=True)
    with pytest.raises(ShardingError, match="'x'"):
        shard(d)


def test_local_parameters_share_one_arena_segment() -> None:
    d = pa.ParameterDict()
    for i in range(6):  # 180k values: more than an arena's first segment
        d.get(f"w{i}_weight", shape=(100, 300))
    sd = shard(d, min_bytes=0)
    sd.initialize(pa.init.Xavier(), seed=1)
    grads = sd.local._storage.grad.arenas()
    assert grads
    assert all(len(a.segments()) == 1 for a in grads)  # zero_grad: one kernel per arena
