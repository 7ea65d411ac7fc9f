"""Sharded checkpoints on S3 (moto): ranks upload their own chunk objects, rank 0 commits; the
checkpoint loads at another world size and in one process; a failing rank commits nothing."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import paramarena as pa
from paramarena.distributed import checkpoint as dckpt
from paramarena.distributed import shard
from paramarena.errors import ShardedCheckpointError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))

from dist_models import SHARD_OPTIONS, build, reference, same
from dist_threads import run_ranks, values

pytestmark = pytest.mark.s3


def _save(url: str, n: int, seed: int, opts: dict[str, Any]) -> list[Any]:
    def rank(comm: Any) -> None:
        sd = shard(build(), comm, **SHARD_OPTIONS)
        sd.initialize(pa.init.Xavier(), seed=seed)
        sd.save(url, **opts)

    return run_ranks(n, rank)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("client", ["fsspec", "obstore"])
def test_sharded_save_and_resharded_load_on_s3(moto_s3: dict[str, Any], client: str) -> None:
    url = f"s3://{moto_s3['bucket']}/{uuid.uuid4().hex}.zarr"
    opts = {"storage_options": moto_s3["storage_options"], "client": client}
    values(_save(url, 3, 7, opts))
    ref = reference(seed=7)
    loaded = pa.storage.load(url, **opts)
    assert all(same(loaded[n], ref[n]) for n in ref)
    assert pa.storage.verify(url, **opts).ok

    def rank(comm: Any) -> dict[str, Any]:
        sd = shard(build(), comm, **SHARD_OPTIONS)
        sd.load(url, **opts)
        return sd.gather()

    for gathered in values(run_ranks(2, rank)):
        assert all(same(gathered[n], ref[n]) for n in ref)


@pytest.mark.timeout(300)
def test_failing_rank_on_s3_commits_nothing(
    moto_s3: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{moto_s3['bucket']}/{uuid.uuid4().hex}.zarr"
    opts = {"storage_options": moto_s3["storage_options"]}
    values(_save(url, 2, 1, opts))
    real = dckpt._write_array_part

    def write(*args: Any, **kwargs: Any) -> Any:
        import threading

        if threading.current_thread().name == "rank-1":
            raise OSError("connection reset (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(dckpt, "_write_array_part", write)

    def rank(comm: Any) -> None:
        import threading

        threading.current_thread().name = f"rank-{comm.rank}"
        sd = shard(build(), comm, **SHARD_OPTIONS)
        sd.initialize(pa.init.Xavier(), seed=2)
        sd.save(url, **opts)

    for r in run_ranks(2, rank):
        assert isinstance(r, ShardedCheckpointError)
        assert "injected" in str(r)
    monkeypatch.undo()
    ref = reference(seed=1)
    loaded = pa.storage.load(url, **opts)
    assert all(same(loaded[n], ref[n]) for n in ref)
