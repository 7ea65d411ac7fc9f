"""zarr checkpoints on a real S3-compatible server (moto_server on 127.0.0.1)."""

from __future__ import annotations

import uuid
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import paramdict as pd
from paramdict import storage
from paramdict.errors import CorruptCheckpointError, UncommittedCheckpointError
from paramdict.zarr_checkpoint import COMMIT_MARKER

pytestmark = pytest.mark.s3


def _url(moto_s3: dict[str, Any]) -> str:
    return f"s3://{moto_s3['bucket']}/{uuid.uuid4().hex}.zarr"


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "w": rng.standard_normal((32, 16)).astype(np.float32),
        "h": rng.standard_normal(5).astype(np.float16),
        "bf": rng.standard_normal(7).astype(ml_dtypes.bfloat16),
        "i": np.arange(4, dtype=np.int64),
        "m": np.array([True, False]),
        "s": np.array(1.25),
    }


def test_round_trip_partial_inspect_verify(moto_s3: dict[str, Any]) -> None:
    url, opts = _url(moto_s3), moto_s3["storage_options"]
    arrays = _arrays()
    storage.save(url, arrays, storage_options=opts)
    loaded = storage.load(url, storage_options=opts)
    assert isinstance(loaded, dict)
    for k, v in arrays.items():
        assert loaded[k].dtype == v.dtype
        assert loaded[k].tobytes() == v.tobytes()
    part = storage.load(url, names=["bf"], storage_options=opts)
    assert list(part) == ["bf"]
    info = storage.inspect(url, storage_options=opts)
    assert info.committed
    assert [a.name for a in info.arrays] == list(arrays)
    assert storage.verify(url, storage_options=opts).ok


def test_uncommitted_checkpoint_is_refused(moto_s3: dict[str, Any]) -> None:
    url, opts, fs = _url(moto_s3), moto_s3["storage_options"], moto_s3["fs"]
    storage.save(url, _arrays(), storage_options=opts)
    fs.rm(url.removeprefix("s3://") + "/" + COMMIT_MARKER)
    with pytest.raises(UncommittedCheckpointError):
        storage.load(url, storage_options=opts)


def test_corrupted_chunk_is_detected(moto_s3: dict[str, Any]) -> None:
    url, opts, fs = _url(moto_s3), moto_s3["storage_options"], moto_s3["fs"]
    storage.save(url, {"w": np.arange(1000, dtype=np.float32)}, storage_options=opts)
    chunks = [p for p in fs.find(url.removeprefix("s3://")) if "/c/" in p]
    assert chunks
    data = bytearray(fs.cat_file(chunks[0]))
    data[100] ^= 0xFF
    fs.pipe_file(chunks[0], bytes(data))
    with pytest.raises(CorruptCheckpointError):
        storage.load(url, storage_options=opts)
    assert not storage.verify(url, storage_options=opts).ok


def test_parameter_dict_save_load_and_object_count(moto_s3: dict[str, Any]) -> None:
    url, opts, fs = _url(moto_s3), moto_s3["storage_options"], moto_s3["fs"]
    params = pd.ParameterDict("net_")
    for i in range(10):
        params.get(f"w{i}", shape=(2_621_440,))  # 10 x 10 MiB float32 = 100 MiB
    params.initialize(pd.init.Uniform(), seed=0)
    params.save(url, storage_options=opts)
    objects = fs.find(url.removeprefix("s3://"))
    assert len(objects) <= 10  # chunked layout: not one object per parameter
    fresh = pd.ParameterDict("net_")
    for i in range(10):
        fresh.get(f"w{i}", shape=(2_621_440,))
    fresh.load(url, storage_options=opts)
    for a, b in zip(params.values(), fresh.values(), strict=True):
        np.testing.assert_array_equal(a.data(), b.data())
