"""Files written before the rename to paramarena (0.1.x, as ``paramdict``) still load."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import crc32c
import ml_dtypes
import numpy as np
import pytest

from paramarena import storage


def _write_npz_with_meta_entry(src: Path, dst: Path, key: str, dtypes: dict[str, str]) -> None:
    """Copy ``src`` without its zip comment, adding the metadata as an entry ``key``."""
    meta = np.frombuffer(json.dumps({"version": 1, "named": True, "dtypes": dtypes}).encode(), "u1")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        with zout.open(key + ".npy", "w") as member:
            np.lib.format.write_array(member, meta, allow_pickle=False)


@pytest.mark.parametrize("key", ["__paramdict__", "__paramarena__"])
def test_npz_with_a_metadata_entry_loads_with_its_logical_dtypes(tmp_path: Path, key: str) -> None:
    # files written before 0.2 kept the metadata in an entry: __paramdict__ before the rename
    # to paramarena, __paramarena__ after it
    arrays = {"w": np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16).reshape(2, 3)}
    storage.save(tmp_path / "new.npz", arrays)
    old = tmp_path / "old.npz"
    _write_npz_with_meta_entry(tmp_path / "new.npz", old, key, {"w": "bfloat16"})
    with zipfile.ZipFile(old) as zf:
        assert f"{key}.npy" in zf.namelist()
        assert zf.comment == b""
    loaded = storage.load(old)
    assert list(loaded) == ["w"]
    assert loaded["w"].dtype == arrays["w"].dtype
    np.testing.assert_array_equal(loaded["w"], arrays["w"])
    assert storage.verify(old).ok
    assert [a.name for a in storage.inspect(old).arrays] == ["w"]


def test_zarr_checkpoint_with_the_old_format_marker_loads(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.zarr"
    arrays = {"a": np.arange(10, dtype=np.float64)}
    storage.save(path, arrays)
    manifests = list(path.rglob("manifest.json"))
    assert len(manifests) == 1
    doc = json.loads(manifests[0].read_text())
    assert doc["format"] == "paramarena-zarr"
    doc["format"] = "paramdict-zarr"
    raw = json.dumps(doc).encode()
    manifests[0].write_bytes(raw)
    commit = json.loads((path / "COMMIT").read_text())
    commit["manifest_crc32c"] = f"{crc32c.crc32c(raw):08x}"
    (path / "COMMIT").write_text(json.dumps(commit))
    np.testing.assert_array_equal(storage.load(path)["a"], arrays["a"])
