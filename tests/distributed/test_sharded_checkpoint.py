"""Sharded zarr checkpoints: N ranks write one ordinary checkpoint that loads on M ranks (and in
one process), equal to the single-process reference; a failing rank makes every rank raise and
commits nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dist_models import SHARD_OPTIONS, build, reference, same
from dist_threads import run_ranks, values

import paramarena as pa
from paramarena.distributed import checkpoint as dckpt
from paramarena.distributed import shard
from paramarena.errors import (
    ConfigurationError,
    CorruptCheckpointError,
    DistributedError,
    ShapeMismatchError,
    ShardedCheckpointError,
)

SIZES = [1, 2, 3, 4]


def _save(path: Path, size: int, seed: int = 7) -> None:
    def rank(comm: Any) -> None:
        sd = shard(build(), comm, **SHARD_OPTIONS)
        sd.initialize(pa.init.Xavier(), seed=seed)
        sd.save(str(path))

    values(run_ranks(size, rank))


def _load(path: Path, size: int, **options: Any) -> list[dict[str, np.ndarray]]:
    def rank(comm: Any) -> dict[str, np.ndarray]:
        sd = shard(build(), comm, **SHARD_OPTIONS)
        sd.load(str(path), **options)
        return sd.gather()

    return values(run_ranks(size, rank))


def _equal_to_reference(gathered: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    assert set(gathered) == set(ref)
    for name in ref:
        assert same(gathered[name], ref[name]), name


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Path]:
    """Checkpoints saved by 1-4 thread ranks, by one process, and converted from .params."""
    root = tmp_path_factory.mktemp("sharded")
    out: dict[Any, Path] = {}
    for n in SIZES:
        out[n] = root / f"by{n}.zarr"
        _save(out[n], n)
    plain = build()
    plain.initialize(pa.init.Xavier(), seed=7)
    out["single"] = root / "single.zarr"
    plain.save(str(out["single"]))
    params_file = root / "model.params"
    plain.save(str(params_file))
    out["params"] = params_file
    out["converted"] = root / "converted.zarr"
    pa.storage.save(str(out["converted"]), pa.storage.load(str(params_file)))
    return out


@pytest.mark.timeout(300)
@pytest.mark.parametrize("source", [*SIZES, "single", "converted", "params"])
@pytest.mark.parametrize("m", SIZES)
def test_load_at_any_world_size(saved: dict[Any, Path], source: Any, m: int) -> None:
    ref = reference(seed=7)
    for gathered in _load(saved[source], m):
        _equal_to_reference(gathered, ref)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", SIZES)
def test_one_process_inspects_verifies_and_loads(saved: dict[Any, Path], n: int) -> None:
    path = str(saved[n])
    ref = reference(seed=7)
    info = pa.storage.inspect(path)
    assert info.committed
    assert [a.name for a in info.arrays] == list(ref)
    assert pa.storage.verify(path).ok
    loaded = pa.storage.load(path)
    _equal_to_reference(loaded, ref)
    plain = build()
    plain.load(path)
    _equal_to_reference({k: p.data() for k, p in plain.items()}, ref)


@pytest.mark.timeout(120)
def test_chunks_are_written_once_and_rows_arrays_chunked_by_block(saved: dict[Any, Path]) -> None:
    path = saved[3]
    (version,) = [p for p in path.iterdir() if p.name.startswith("v")]
    manifest = json.loads((version / "manifest.json").read_text())
    entries = {e["name"]: e for e in manifest["parameters"]}
    assert entries["net_fc_weight"]["array"].startswith("rows_")
    assert entries["net_gamma"]["array"] == "packed_float32"  # replicated: packed by rank 0
    meta = json.loads((version / entries["net_fc_weight"]["array"] / "zarr.json").read_text())
    (chunk,) = meta["chunk_grid"]["configuration"]["chunk_shape"]
    assert chunk % 29 == 0  # whole rows per chunk


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_job_communicator_round_trip(comm: Any, shared_dir: Path) -> None:
    """Save and load with this job's communicator (MPI ranks under mpirun)."""
    path = str(shared_dir / "job.zarr")
    sd = shard(build(), comm, **SHARD_OPTIONS)
    sd.initialize(pa.init.Xavier(), seed=7)
    sd.save(path)
    again = shard(build(), comm, **SHARD_OPTIONS)
    again.load(path)
    _equal_to_reference(again.gather(), reference(seed=7))
    if comm.rank == 0:
        _equal_to_reference(pa.storage.load(path), reference(seed=7))
    comm.barrier()


@pytest.mark.timeout(120)
def test_a_rank_raising_makes_every_rank_raise_and_commits_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.zarr"
    _save(path, 3, seed=1)  # the previous checkpoint
    real = dckpt._write_array_part
    failing = {"rank": 1}

    def write(*args: Any, **kwargs: Any) -> Any:
        import threading

        if threading.current_thread().name.endswith(f"-{failing['rank']}"):
            raise OSError(28, "No space left on device (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(dckpt, "_write_array_part", write)

    def rank(comm: Any) -> None:
        import threading

        threading.current_thread().name = f"rank-{comm.rank}"
        sd = shard(build(), comm, **SHARD_OPTIONS)
        sd.initialize(pa.init.Xavier(), seed=2)
        sd.save(str(path))

    results = run_ranks(3, rank)
    for r in results:
        assert isinstance(r, ShardedCheckpointError), r
        assert "rank 1" in str(r)
        assert "injected" in str(r)
        assert "nothing was committed" in str(r)
    monkeypatch.undo()
    # the previous checkpoint is still the committed one, and the failed version is gone
    versions = [p for p in path.iterdir() if p.name.startswith("v")]
    assert len(versions) == 1
    _equal_to_reference(pa.storage.load(str(path)), reference(seed=1))


@pytest.mark.timeout(60)
def test_load_errors_reach_every_rank(saved: dict[Any, Path], tmp_path: Path) -> None:
    def wrong_shape(comm: Any) -> None:
        d = pa.ParameterDict("net_")
        d.update({n: p for n, p in build().items() if n != "net_fc_weight"})
        d.get("fc_weight", shape=(100, 29))
        shard(d, comm, **SHARD_OPTIONS).load(str(saved[2]))

    for r in run_ranks(2, wrong_shape):
        assert isinstance(r, ShapeMismatchError)
        assert "net_fc_weight" in str(r)

    damaged = tmp_path / "damaged.zarr"
    _save(damaged, 2)
    (version,) = [p for p in damaged.iterdir() if p.name.startswith("v")]
    chunk = sorted((version / "rows_0001" / "c").iterdir())[-1]  # held by rank 1 only
    raw = bytearray(chunk.read_bytes())
    raw[0] ^= 0xFF
    chunk.write_bytes(bytes(raw))

    def load(comm: Any) -> None:
        shard(build(), comm, **SHARD_OPTIONS).load(str(damaged))

    results = run_ranks(2, load)
    assert isinstance(results[0], DistributedError)
    assert "rank 1" in str(results[0])
    assert isinstance(results[1], CorruptCheckpointError)


def test_sharded_save_refuses_options_it_cannot_honour(tmp_path: Path) -> None:
    sd = shard(build(), **SHARD_OPTIONS)
    sd.initialize(seed=0, init=pa.init.Xavier())
    with pytest.raises(ConfigurationError, match="compression"):
        sd.save(str(tmp_path / "x.zarr"), compression="zstd")


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_job_rank_raising_makes_every_rank_raise(
    comm: Any, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under mpirun: the last rank's writer raises OSError; no rank hangs, every rank raises."""
    path = str(shared_dir / "ckpt.zarr")
    sd = shard(build(), comm, **SHARD_OPTIONS)
    sd.initialize(pa.init.Xavier(), seed=1)
    sd.save(path)
    if comm.rank == comm.size - 1:

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise OSError(5, "Input/output error (injected)")

        monkeypatch.setattr(dckpt, "_write_array_part", broken)
    sd.initialize(pa.init.Xavier(), seed=2, force_reinit=True)
    with pytest.raises(ShardedCheckpointError, match=f"rank {comm.size - 1}.*injected"):
        sd.save(path)
    monkeypatch.undo()
    again = shard(build(), comm, **SHARD_OPTIONS)
    again.load(path)
    _equal_to_reference(again.gather(), reference(seed=1))


@pytest.mark.timeout(60)
def test_damage_inside_a_partly_read_chunk_is_caught_by_the_combined_crc(tmp_path: Path) -> None:
    """Ranks read byte ranges, not whole chunks; their rows' crc32c, combined, must match."""
    path = tmp_path / "single.zarr"
    plain = build()
    plain.initialize(pa.init.Xavier(), seed=7)
    plain.save(str(path), chunk_bytes=1 << 20)  # one chunk holds many parameters
    (version,) = [p for p in path.iterdir() if p.name.startswith("v")]
    manifest = json.loads((version / "manifest.json").read_text())
    entry = next(e for e in manifest["parameters"] if e["name"] == "net_fc_weight")
    chunk_file = version / entry["array"] / "c" / "0"
    raw = bytearray(chunk_file.read_bytes())
    raw[(entry["offset"] + entry["size"] // 2) * 4] ^= 0x40  # the middle of net_fc_weight
    chunk_file.write_bytes(bytes(raw))

    def load(comm: Any) -> None:
        shard(build(), comm, **SHARD_OPTIONS).load(str(path))

    results = run_ranks(3, load)
    for r in results:
        assert isinstance(r, CorruptCheckpointError), r
        assert "net_fc_weight" in str(r)
        assert "combined" in str(r)
