"""The checkpoint root is a zarr v3 group that plain zarr opens (issue 13 item 4)."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import zarr

from paramarena import storage
from paramarena.storage.zarr.commit import COMMIT_MARKER, ROOT_METADATA

ARRAYS = {
    "w": np.arange(60, dtype=np.float32).reshape(6, 10),
    "b": np.linspace(0, 1, 7),
    "bf": np.arange(5).astype(ml_dtypes.bfloat16),
}


def _join_cleanups() -> None:
    for t in threading.enumerate():
        if t.name == "paramarena-zarr-cleanup":
            t.join(timeout=30)


def test_plain_zarr_opens_the_checkpoint_and_reads_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "m.zarr"
    storage.save(path, {k: v * 0 for k, v in ARRAYS.items()})
    storage.save(path, ARRAYS)
    _join_cleanups()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr notes that COMMIT / manifest.json are not nodes
        group = zarr.open_group(str(path), mode="r")
        version = group.attrs["paramarena"]["current_version"]
        assert version == json.loads((path / COMMIT_MARKER).read_text())["version"]
        assert list(group.group_keys()) == [version]
        manifest = json.loads((path / version / "manifest.json").read_text())
        for entry in manifest["parameters"]:
            packed = group[version][entry["array"]]
            assert isinstance(packed, zarr.Array)
            flat = packed[entry["offset"] : entry["offset"] + entry["size"]]
            value = np.asarray(flat).view(
                ml_dtypes.bfloat16 if entry["dtype"] == "bfloat16" else entry["dtype"]
            )
            expected = ARRAYS[entry["name"]]
            assert value.reshape(entry["shape"]).tobytes() == expected.tobytes()


def test_plain_zarr_opens_a_zip_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "m.zarr.zip"
    storage.save(path, ARRAYS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = zarr.open_group(zarr.storage.ZipStore(str(path), mode="r"), mode="r")
        version = group.attrs["paramarena"]["current_version"]
        packed = group[version]["packed_float32"]
        assert isinstance(packed, zarr.Array)
        np.testing.assert_array_equal(packed[:], ARRAYS["w"].reshape(-1))


def test_checkpoints_without_a_root_group_still_load(tmp_path: Path) -> None:
    path = tmp_path / "old.zarr"
    storage.save(path, ARRAYS)
    (path / ROOT_METADATA).unlink()  # as written before the root became a group
    got = storage.load(path)
    assert isinstance(got, dict)
    for k, v in ARRAYS.items():
        assert got[k].tobytes() == v.tobytes()
    assert storage.verify(path).ok
    storage.save(path, ARRAYS)  # and the next save makes it a group
    assert json.loads((path / ROOT_METADATA).read_text())["node_type"] == "group"


def test_root_group_is_written_after_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "o.zarr"
    import paramarena.storage.zarr.location as zl

    order: list[tuple[str, ...]] = []
    real = zl.Location.write_bytes

    def record(self: zl.Location, data: bytes, *parts: str) -> None:
        order.append(parts)
        real(self, data, *parts)

    monkeypatch.setattr(zl.Location, "write_bytes", record)
    storage.save(path, ARRAYS)
    assert order.index((COMMIT_MARKER,)) < order.index((ROOT_METADATA,))
