"""What ``storage.load(names=..., out=...)`` leaves in ``out`` when it raises (docs/storage.md)."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import CheckpointError, ShapeMismatchError


def _arrays() -> dict[str, np.ndarray]:
    return {"a": np.arange(64, dtype=np.float32), "b": np.full(64, 3.0, np.float32)}


def _sentinels() -> dict[str, np.ndarray]:
    return {"a": np.full(64, -7.0, np.float32), "b": np.full(64, -9.0, np.float32)}


def _damage_middle_of(path: Path, needle: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(needle) + len(needle) // 2
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


def _damage_zip_member(path: Path) -> None:
    """Flip a byte inside the data of the first packed chunk of a .zarr.zip."""
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if "/c/" in i.filename)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + 8
    data[start] ^= 0x40
    path.write_bytes(bytes(data))


_NO_SAFETENSORS = importlib.util.find_spec("paramarena_safetensors") is None


@pytest.mark.parametrize(
    "suffix",
    [
        ".npz",
        pytest.param(
            ".safetensors",
            marks=pytest.mark.skipif(
                _NO_SAFETENSORS, reason="paramarena-safetensors not installed"
            ),
        ),
        ".zarr.zip",
    ],
)
def test_out_is_untouched_when_a_checked_format_raises(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"m{suffix}"
    storage.save(path, _arrays())
    if suffix == ".zarr.zip":
        _damage_zip_member(path)
    else:
        _damage_middle_of(path, _arrays()["b"].tobytes())
    out = _sentinels()
    with pytest.raises(CheckpointError):
        storage.load(path, names=["a", "b"], out=out)
    for name, want in _sentinels().items():
        np.testing.assert_array_equal(out[name], want)


def test_out_is_untouched_when_a_later_array_does_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    storage.save(path, _arrays())
    out = {"a": np.full(64, -7.0, np.float32), "b": np.zeros(3, np.float32)}
    with pytest.raises(ShapeMismatchError, match="'b'"):
        storage.load(path, names=["a", "b"], out=out)
    np.testing.assert_array_equal(out["a"], np.full(64, -7.0, np.float32))


def test_local_zarr_reads_in_place_and_names_the_damaged_array(tmp_path: Path) -> None:
    # documented: uncompressed local zarr reads straight into out=, so after an error the
    # contents of the out arrays are unspecified; the arrays themselves are the caller's
    path = tmp_path / "m.zarr"
    storage.save(path, _arrays(), chunk_bytes=64)
    chunk = sorted(path.glob("v*/packed_float32/c/*"), key=lambda p: int(p.name))[-1]
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0x40
    chunk.write_bytes(bytes(data))
    out = _sentinels()
    before = {k: v.__array_interface__["data"][0] for k, v in out.items()}
    with pytest.raises(CheckpointError, match="'b'"):
        storage.load(path, names=["a", "b"], out=out)
    assert {k: v.__array_interface__["data"][0] for k, v in out.items()} == before
    assert all(v.shape == (64,) and v.dtype == np.float32 for v in out.values())
    # the undamaged array loads on its own, in place
    got = storage.load(path, names=["a"], out={"a": out["a"]})
    assert got["a"] is out["a"]
    np.testing.assert_array_equal(out["a"], _arrays()["a"])
