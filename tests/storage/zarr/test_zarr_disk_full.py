"""A zarr save that fails with an OSError (disk full) cleans up and names the path (issue 9.3)."""

from __future__ import annotations

import errno
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import StorageError
from paramarena.storage.zarr.commit import is_version_name

OLD = {"w": np.arange(3000, dtype=np.float32), "b": np.ones(5)}
NEW = {"w": np.zeros(3000, dtype=np.float32), "b": np.full(5, 2.0)}


def _enospc(*_args: Any, **_kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _join_cleanups() -> None:
    for t in threading.enumerate():
        if t.name == "paramarena-zarr-cleanup":
            t.join(timeout=30)


def _same(got: object, expected: dict[str, np.ndarray]) -> bool:
    return isinstance(got, dict) and all(np.array_equal(got[k], v) for k, v in expected.items())


@pytest.mark.parametrize(
    ("module", "attribute"),
    [
        ("paramarena.storage.zarr.direct", "_write_all"),  # every file of the version
        ("paramarena.storage.zarr.direct", "_write_chunk_file"),  # a chunk file
        ("paramarena.storage.zarr.writer", "write_file_durably"),  # the manifest
        ("paramarena.storage.zarr.location.Location", "write_bytes"),  # COMMIT
    ],
)
def test_disk_full_during_save_cleans_up_and_the_next_save_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, attribute: str
) -> None:
    path = tmp_path / "d.zarr"
    storage.save(path, OLD, chunk_bytes=1024)
    _join_cleanups()
    before = sorted(p.name for p in path.iterdir())
    monkeypatch.setattr(f"{module}.{attribute}", _enospc)
    with pytest.raises(StorageError, match=r"d\.zarr.*No space left on device") as info:
        storage.save(path, NEW, chunk_bytes=1024)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    monkeypatch.undo()
    assert sorted(p.name for p in path.iterdir()) == before  # the partial version is gone
    assert _same(storage.load(path), OLD)
    storage.save(path, NEW, chunk_bytes=1024)  # not wedged
    _join_cleanups()
    assert _same(storage.load(path), NEW)
    assert len([p for p in path.iterdir() if is_version_name(p.name)]) == 1


def test_disk_full_during_compressed_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "z.zarr"
    storage.save(path, OLD, compression="zstd")
    import zarr.storage

    async def full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr.storage.LocalStore, "set", full)
    with pytest.raises(StorageError, match=r"z\.zarr.*No space left"):
        storage.save(path, NEW, compression="zstd")
    monkeypatch.undo()
    _join_cleanups()
    assert len([p for p in path.iterdir() if is_version_name(p.name)]) == 1
    assert _same(storage.load(path), OLD)


def test_disk_full_during_zip_save_keeps_the_old_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "d.zarr.zip"
    storage.save(path, OLD)
    before = path.read_bytes()
    monkeypatch.setattr(zipfile._ZipWriteFile, "write", _enospc)  # every member write
    with pytest.raises(StorageError, match=r"d\.zarr\.zip.*No space left on device"):
        storage.save(path, NEW)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.zarr.zip"]  # no temporaries
    storage.save(path, NEW)
    assert _same(storage.load(path), NEW)


@pytest.mark.parametrize("suffix", [".npz", ".params"])
def test_disk_full_during_file_save_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    import os

    path = tmp_path / f"f{suffix}"
    storage.save(path, OLD)
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(StorageError, match=rf"f\{suffix}.*No space left on device"):
        storage.save(path, NEW)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert _same(storage.load(path), OLD)
