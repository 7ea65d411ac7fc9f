"""The header's own checksum: damage to names, shapes or offsets never skips a tensor's CRC."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import CorruptCheckpointError


def _save(path: Path) -> dict[str, np.ndarray]:
    arrays = {"alpha": np.arange(6, dtype=np.float32), "beta": np.ones((2, 2), np.int64)}
    storage.save(path, arrays)
    return arrays


def _header(path: Path) -> tuple[int, dict[str, object]]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8 : 8 + n])


def test_save_writes_a_header_checksum(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    _save(path)
    _n, header = _header(path)
    meta = header["__metadata__"]
    assert isinstance(meta, dict)
    assert len(meta["paramarena.header_crc32"]) == 8
    assert storage.inspect(path).metadata["metadata"] == {}  # own entries stay hidden


def _flip_in_name(path: Path, name: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(b'"' + name + b'"') + 1
    data[at] ^= 0x02  # "alpha" -> "clpha": still valid JSON, still a valid name
    path.write_bytes(bytes(data))


def test_one_flipped_bit_in_a_tensor_name_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    _save(path)
    _flip_in_name(path, b"alpha")
    with pytest.raises(CorruptCheckpointError, match="header fails its checksum"):
        storage.load(path)
    with pytest.raises(CorruptCheckpointError, match="header fails its checksum"):
        storage.inspect(path)
    report = storage.verify(path)
    assert not report.ok
    assert any("checksum" in why for _name, why in report.problems)


def test_flipped_name_without_header_checksum_still_fails_the_tensor_crc_listing(
    tmp_path: Path,
) -> None:
    # an older file: per-tensor CRCs but no header checksum; the renamed tensor has no CRC entry
    path = tmp_path / "a.safetensors"
    _save(path)
    n, header = _header(path)
    meta = header["__metadata__"]
    assert isinstance(meta, dict)
    del meta["paramarena.header_crc32"]
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + path.read_bytes()[8 + n :])
    assert set(storage.load(path)) == {"alpha", "beta"}  # loads without the header checksum
    _flip_in_name(path, b"alpha")
    with pytest.raises(CorruptCheckpointError, match="no checksum for tensor"):
        storage.load(path)


def test_file_written_without_paramarena_metadata_loads(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    text = json.dumps(header).encode()
    path = tmp_path / "plain.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + np.ones(2, "<f4").tobytes())
    np.testing.assert_array_equal(storage.load(path)["w"], np.ones(2, np.float32))
    assert storage.verify(path).ok


@pytest.mark.parametrize("value", ["[1, 2]", '{"alpha": "x", "beta": 1}', '{"alpha": -1}'])
def test_malformed_crc_map_is_corrupt(tmp_path: Path, value: str) -> None:
    path = tmp_path / "a.safetensors"
    _save(path)
    n, header = _header(path)
    meta = header["__metadata__"]
    assert isinstance(meta, dict)
    meta["paramarena.crc32"] = value
    del meta["paramarena.header_crc32"]
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + path.read_bytes()[8 + n :])
    with pytest.raises(CorruptCheckpointError):
        storage.load(path)


def test_empty_tensor_with_a_shape_numpy_cannot_describe_is_a_checkpoint_error(
    tmp_path: Path,
) -> None:
    from paramarena.errors import CheckpointError

    header = {"w": {"dtype": "F32", "shape": [0, 2**62], "data_offsets": [0, 0]}}
    text = json.dumps(header).encode()
    path = tmp_path / "empty.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    with pytest.raises(CheckpointError, match="too large"):
        storage.load(path)
