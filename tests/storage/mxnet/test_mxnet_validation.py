"""MXNet .params: shapes numpy cannot hold and sparse records that would expand too far."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import CheckpointError, ConfigurationError
from paramarena.storage.mxnet.format import DEFAULT_MAX_DENSE_BYTES, MAGIC_V2


def _one_record(shape: tuple[int, ...], name: bytes = b"w") -> bytes:
    head = struct.pack("<QQQ", 0x112, 0, 1)
    record = struct.pack("<Ii", MAGIC_V2, 0) + struct.pack(f"<i{len(shape)}q", len(shape), *shape)
    record += struct.pack("<iii", 1, 0, 0)  # cpu(0), float32, then no data (empty array)
    names = struct.pack("<QQ", 1, len(name)) + name
    return head + record + names


@pytest.mark.parametrize("shape", [(0, 2**62), (2**62, 0, 4), (0, 2**61, 2**3)])
def test_empty_shape_too_large_for_numpy_is_a_checkpoint_error(
    tmp_path: Path, shape: tuple[int, ...]
) -> None:
    path = tmp_path / "big.params"
    path.write_bytes(_one_record(shape))
    with pytest.raises(CheckpointError, match="too large"):
        storage.load(path)
    with pytest.raises(CheckpointError, match="too large"):
        storage.inspect(path)


def test_empty_array_with_a_sane_zero_shape_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "zero.params"
    path.write_bytes(_one_record((0, 5)))
    assert storage.load(path)["w"].shape == (0, 5)


def test_sparse_expansion_is_capped_and_the_error_names_array_and_size(
    mxnet_fixtures: Path,
) -> None:
    path = mxnet_fixtures / "ndarray_sparse.params"
    info = storage.inspect(path)
    sparse = [a for a in info.arrays if a.stype != "default"]
    assert sparse, "fixture holds sparse records"
    with pytest.raises(CheckpointError, match=r"max_dense_bytes=8\b") as caught:
        storage.load(path, max_dense_bytes=8)
    message = str(caught.value)
    assert any(repr(a.name) in message for a in sparse)
    assert "dense bytes" in message
    full = storage.load(path)  # the default cap (1 GiB) loads it
    assert isinstance(full, dict)
    assert full
    assert not storage.verify(path, max_dense_bytes=8).ok
    assert DEFAULT_MAX_DENSE_BYTES == 2**30


def test_sparse_record_claiming_a_huge_dense_shape_is_refused_before_allocating(
    tmp_path: Path,
) -> None:
    # row_sparse: 1 stored row of 2 float64 values, logical shape (2**30 - 1, 2): 16 GiB dense
    rows, cols = 2**30 - 1, 2
    head = struct.pack("<QQQ", 0x112, 0, 1)
    rec = struct.pack("<Ii", MAGIC_V2, 1)
    rec += struct.pack("<iqq", 2, 1, cols)  # storage shape (1, 2)
    rec += struct.pack("<iqq", 2, rows, cols)  # logical shape
    rec += struct.pack("<iii", 1, 0, 1)  # cpu, float64
    rec += struct.pack("<iiq", 6, 1, 1)  # aux: int64 row indices, shape (1,)
    rec += np.ones(2, "<f8").tobytes() + np.zeros(1, "<i8").tobytes()
    path = tmp_path / "sparse.params"
    path.write_bytes(head + rec + struct.pack("<QQ", 1, 1) + b"e")
    with pytest.raises(CheckpointError, match=r"'e'.*17179869168 dense bytes"):
        storage.load(path)


def test_bad_max_dense_bytes_is_a_configuration_error(mxnet_fixtures: Path) -> None:
    with pytest.raises(ConfigurationError, match="max_dense_bytes"):
        storage.load(mxnet_fixtures / "ndarray_sparse.params", max_dense_bytes=-1)
