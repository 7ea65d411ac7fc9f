"""npz: metadata out of numpy's way, damaged central directories, names the format cannot hold."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import CheckpointError, CorruptCheckpointError, ParameterValueError
from paramarena.storage import npz as npz_backend


def _arrays() -> dict[str, np.ndarray]:
    return {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "bf": np.ones((2, 3), ml_dtypes.bfloat16),
        "s": np.array(2.5),
    }


@pytest.mark.parametrize("compress", [False, True])
def test_numpy_sees_exactly_the_saved_names(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "a.npz"
    storage.save(path, _arrays(), compress=compress)
    with np.load(path, allow_pickle=False) as raw:
        assert raw.files == list(_arrays())
        plain = {k: v for k, v in raw.items()}  # the naive recipe meets no junk entry
    assert list(plain) == list(_arrays())
    assert storage.load(path)["bf"].dtype == ml_dtypes.bfloat16


def test_list_saved_to_npz_has_only_array_entries_and_loads_as_a_list(tmp_path: Path) -> None:
    path = tmp_path / "l.npz"
    storage.save(path, [np.ones(2), np.zeros(3)])
    with np.load(path, allow_pickle=False) as raw:
        assert raw.files == ["arr_0", "arr_1"]
    assert isinstance(storage.load(path), list)


def test_metadata_too_large_for_the_zip_comment_goes_to_an_entry(tmp_path: Path) -> None:
    arrays = {f"bf_{i:05d}_" + "x" * 60: np.ones(1, ml_dtypes.bfloat16) for i in range(1200)}
    path = tmp_path / "big.npz"
    storage.save(path, arrays)
    with zipfile.ZipFile(path) as zf:
        assert zf.comment == b""
        assert npz_backend.META_KEY + ".npy" in zf.namelist()
    loaded = storage.load(path)
    assert list(loaded) == list(arrays)
    assert all(a.dtype == ml_dtypes.bfloat16 for a in loaded.values())


def _eocd_offset(data: bytes) -> int:
    at = data.rfind(b"PK\x05\x06")
    assert at >= 0
    return at


@pytest.mark.timeout(30)
def test_zeroed_central_directory_size_is_corruption_not_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    storage.save(path, _arrays())
    data = bytearray(path.read_bytes())
    at = _eocd_offset(bytes(data))
    data[at + 12 : at + 16] = struct.pack("<I", 0)  # size of the central directory
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="central directory"):
        storage.load(path)
    with pytest.raises(CheckpointError, match="central directory"):
        storage.verify(path)
    with pytest.raises(CheckpointError, match="central directory"):
        storage.inspect(path)


def test_an_empty_dict_still_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "e.npz"
    storage.save(path, {})
    assert storage.load(path) == {}
    assert storage.verify(path).ok


def _with_comment(path: Path, comment: bytes) -> None:
    with zipfile.ZipFile(path, "a") as zf:
        zf.comment = comment


@pytest.mark.parametrize(
    "document",
    [
        b"{not json",
        b"[]",
        json.dumps({"named": "yes"}).encode(),
        json.dumps({"dtypes": {"w": 7}}).encode(),
        json.dumps({"dtypes": {"nope": "bfloat16"}}).encode(),
        json.dumps({"version": 99}).encode(),
        json.dumps({"dtypes": {"w": "not_a_dtype"}}).encode(),
    ],
)
def test_malformed_metadata_comment_is_a_corrupt_checkpoint(
    tmp_path: Path, document: bytes
) -> None:
    path = tmp_path / "a.npz"
    storage.save(path, _arrays())
    _with_comment(path, npz_backend.COMMENT_PREFIX + document)
    with pytest.raises(CheckpointError):
        storage.load(path)
    assert not storage.verify(path).ok


def test_foreign_zip_comment_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, w=np.ones(3))
    _with_comment(path, b"written by some other tool")
    np.testing.assert_array_equal(storage.load(path)["w"], np.ones(3))


def test_name_over_the_zip_limit_is_a_parameter_value_error(tmp_path: Path) -> None:
    with pytest.raises(ParameterValueError, match="zip limit"):
        storage.save(tmp_path / "a.npz", {"w" * 70_000: np.ones(1)})
    assert not (tmp_path / "a.npz").exists()
    storage.save(tmp_path / "b.npz", {"w" * 65_000: np.ones(1)})  # under the limit: fine
    assert list(storage.load(tmp_path / "b.npz")) == ["w" * 65_000]


@pytest.mark.parametrize("suffix", [".npz", ".params", ".zarr", ".zarr.zip", ".safetensors"])
def test_lone_surrogate_in_a_name_is_refused_by_every_format(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(ParameterValueError, match="surrogate"):
        storage.save(tmp_path / f"a{suffix}", {"w\ud800": np.ones(1, np.float32)})
    assert not (tmp_path / f"a{suffix}").exists()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("suffix", [".npz", ".params", ".safetensors", ".zarr.zip"])
def test_fifo_in_place_of_a_checkpoint_file_never_blocks(tmp_path: Path, suffix: str) -> None:
    import os

    from paramarena.errors import ParamarenaError

    if not hasattr(os, "mkfifo"):
        pytest.skip("needs FIFOs")
    path = tmp_path / f"f{suffix}"
    os.mkfifo(path)
    with pytest.raises(ParamarenaError, match=r"regular file|zip"):
        storage.load(path)
