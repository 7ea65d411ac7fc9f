"""``storage.columns.inspect_columns`` describes a checkpoint exactly as ``storage.inspect``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from paramarena import storage
from paramarena.storage.columns import inspect_columns


def _arrays() -> dict[str, np.ndarray]:
    return {
        "w": np.ones((3, 4), np.float32),
        "b": np.zeros(5, np.float64),
        "e": np.zeros((0, 2), np.int8),
    }


@pytest.mark.parametrize("suffix", [".zarr", ".npz", ".params", ".zarr.zip"])
def test_columns_are_the_arrays_of_inspect(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    storage.save(path, _arrays())
    info = storage.inspect(path)
    columns = inspect_columns(path)
    assert list(columns.names) == [a.name for a in info.arrays]
    assert [tuple(s) for s in columns.shapes] == [a.shape for a in info.arrays]
    assert list(columns.dtypes) == [a.dtype for a in info.arrays]
    assert columns.named == info.named
    assert dict(columns.init_key_map()) == dict(info.metadata.get("init_keys") or {})


@pytest.mark.parametrize("keys", [{"w": 1, "b": 2**64 - 1, "e": 0}, {"w": 5}])
def test_zarr_init_keys_as_a_column_or_a_mapping(tmp_path: Path, keys: dict[str, int]) -> None:
    path = tmp_path / "k.zarr"
    storage.save(path, _arrays(), init_keys=keys)
    columns = inspect_columns(path)
    assert dict(columns.init_key_map()) == keys == storage.inspect(path).metadata["init_keys"]
    if len(keys) == 3:  # every entry records one: kept as the uint64 column
        assert columns.init_keys is not None
        assert columns.init_keys.dtype == np.uint64
        assert "init_keys" not in columns.metadata
    else:
        assert columns.init_keys is None


def test_an_uncommitted_zarr_checkpoint_has_no_columns(tmp_path: Path) -> None:
    path = tmp_path / "u.zarr"
    storage.save(path, _arrays())
    (path / "COMMIT").unlink()
    columns = inspect_columns(path)
    assert list(columns.names) == []
    assert storage.inspect(path).committed is False
