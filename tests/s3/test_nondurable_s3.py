"""``durable=False`` on S3 (docs/storage.md): single-file saves accept it and change nothing (a
PUT is durable once acknowledged); a zarr checkpoint refuses it, as on local disk."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import ConfigurationError

pytestmark = [pytest.mark.s3, pytest.mark.timeout(120)]

WANT = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(4, np.float64)}


def _url(moto_s3: dict[str, Any], suffix: str) -> str:
    return f"s3://{moto_s3['bucket']}/nondurable-{uuid.uuid4().hex}{suffix}"


@pytest.mark.parametrize("suffix", [".npz", ".params"])
def test_single_file_save_to_s3_accepts_durable_false(moto_s3: dict[str, Any], suffix: str) -> None:
    url = _url(moto_s3, suffix)
    options = moto_s3["storage_options"]
    storage.save(url, WANT, durable=False, storage_options=options)
    got = storage.load(url, storage_options=options)
    assert isinstance(got, dict)
    assert list(got) == list(WANT)
    for name, value in WANT.items():
        np.testing.assert_array_equal(got[name], value)


def test_zarr_on_s3_refuses_durable_false(moto_s3: dict[str, Any]) -> None:
    url = _url(moto_s3, ".zarr")
    options = moto_s3["storage_options"]
    with pytest.raises(ConfigurationError, match="cannot be saved with durable=False"):
        storage.save(url, WANT, durable=False, storage_options=options)
    assert not moto_s3["fs"].exists(url)  # nothing was written
    storage.save(url, WANT, durable=True, storage_options=options)
    np.testing.assert_array_equal(storage.load(url, storage_options=options)["w"], WANT["w"])
