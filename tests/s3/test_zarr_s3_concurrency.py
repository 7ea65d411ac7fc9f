"""Concurrent writers and readers of one zarr checkpoint on S3 (moto_server): COMMIT by CAS."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import ConcurrentWriteError
from paramarena.storage.zarr.commit import (
    COMMIT_MARKER,
    CommitRecord,
    _put_commit,
    committed_version,
    is_version_name,
    read_commit,
)
from paramarena.storage.zarr.location import Location

pytestmark = pytest.mark.s3


@pytest.fixture(params=["fsspec", "obstore"])
def client(request: pytest.FixtureRequest) -> str:
    """Every test runs through s3fs and through obstore (the ``client`` option)."""
    if request.param == "obstore":
        pytest.importorskip("obstore", reason="needs obstore (paramarena[s3])")
    return str(request.param)


def _kw(moto_s3: dict[str, Any], client: str) -> dict[str, Any]:
    return {"storage_options": moto_s3["storage_options"], "client": client}


def _url(moto_s3: dict[str, Any]) -> str:
    return f"s3://{moto_s3['bucket']}/{uuid.uuid4().hex}.zarr"


@pytest.mark.timeout(120)
def test_commit_is_a_conditional_write(moto_s3: dict[str, Any], client: str) -> None:
    url, opts = _url(moto_s3), _kw(moto_s3, client)
    loc = Location(url, opts["storage_options"], client)
    assert read_commit(loc).raw is None
    assert _put_commit(loc, b"first", CommitRecord(None))  # If-None-Match: * on a new path
    assert not _put_commit(loc, b"second", CommitRecord(None))  # exists now: refused
    record = read_commit(loc)
    assert record.raw == b"first"
    assert record.etag
    assert not _put_commit(loc, b"third", CommitRecord(b"old", '"0123456789abcdef"'))
    assert _put_commit(loc, b"fourth", record)  # If-Match on the ETag read
    assert not _put_commit(loc, b"fifth", record)  # that ETag is gone now
    assert read_commit(loc).raw == b"fourth"


@pytest.mark.timeout(300)
def test_two_writers_leave_one_complete_version(moto_s3: dict[str, Any], client: str) -> None:
    url, opts, fs = _url(moto_s3), _kw(moto_s3, client), moto_s3["fs"]
    sets = {
        k: {f"p{i}": np.full(300 + i, 10 * k + i, np.float32) for i in range(3)} for k in (1, 2)
    }
    outcomes: dict[int, list[str]] = {1: [], 2: []}

    def write(k: int) -> None:
        for _ in range(3):
            try:
                storage.save(url, sets[k], chunk_bytes=512, **opts)
                outcomes[k].append("ok")
            except ConcurrentWriteError:
                outcomes[k].append("conflict")

    threads = [threading.Thread(target=write, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert all(o == "ok" for o in outcomes[1] + outcomes[2]), outcomes
    got = storage.load(url, **opts)
    assert isinstance(got, dict)
    assert any(all(np.array_equal(got[n], v) for n, v in s.items()) for s in sets.values()), (
        "the committed version is neither writer's"
    )
    assert storage.verify(url, **opts).ok
    current = committed_version(fs.cat_file(url.removeprefix("s3://") + "/" + COMMIT_MARKER))
    versions = [
        p.rsplit("/", 1)[-1]
        for p in fs.ls(url.removeprefix("s3://"), detail=False, refresh=True)
        if is_version_name(p.rsplit("/", 1)[-1])
    ]
    assert current in versions
    root = json.loads(fs.cat_file(url.removeprefix("s3://") + "/zarr.json"))
    assert root["node_type"] == "group"  # the root is a zarr group naming the current version
    assert root["attributes"]["paramarena"]["current_version"] == current
    assert len(versions) <= 2  # the replaced versions were removed (at most one race left)


@pytest.mark.timeout(300)
def test_readers_racing_a_writer_see_no_false_errors(moto_s3: dict[str, Any], client: str) -> None:
    url, opts = _url(moto_s3), _kw(moto_s3, client)
    sets = [{"w": np.full(200, k, np.float32), f"x{k}": np.arange(k + 1.0)} for k in range(2)]
    storage.save(url, sets[0], chunk_bytes=256, **opts)
    stop = threading.Event()

    def write() -> None:
        k = 0
        while not stop.is_set():
            k ^= 1
            storage.save(url, sets[k], chunk_bytes=256, **opts)

    writer = threading.Thread(target=write)
    writer.start()
    errors: list[BaseException] = []
    loads = 0
    try:
        for _ in range(40):
            try:
                got = storage.load(url, **opts)
            except Exception as exc:
                errors.append(exc)
                continue
            loads += 1
            assert isinstance(got, dict)
            assert any(set(got) == set(s) for s in sets)
    finally:
        stop.set()
        writer.join(timeout=120)
    assert errors == []
    assert loads == 40
