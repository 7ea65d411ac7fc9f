"""Files written before the rename to paramarena (0.1.x, as ``paramdict``) still load."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import crc32c
import ml_dtypes
import numpy as np

from paramarena import storage


def _rewrite_npz_meta_key(src: Path, dst: Path, old: str, new: str) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            name = info.filename.replace(old + ".npy", new + ".npy")
            zout.writestr(name, zin.read(info.filename))


def test_npz_with_the_old_metadata_entry_loads_with_its_logical_dtypes(tmp_path: Path) -> None:
    arrays = {"w": np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16).reshape(2, 3)}
    storage.save(tmp_path / "new.npz", arrays)
    old = tmp_path / "old.npz"
    _rewrite_npz_meta_key(tmp_path / "new.npz", old, "__paramarena__", "__paramdict__")
    with zipfile.ZipFile(old) as zf:
        assert "__paramdict__.npy" in zf.namelist()
    loaded = storage.load(old)
    assert list(loaded) == ["w"]
    assert loaded["w"].dtype == arrays["w"].dtype
    np.testing.assert_array_equal(loaded["w"], arrays["w"])
    assert storage.verify(old).ok


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
