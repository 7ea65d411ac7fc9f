"""zarr checkpoints on a real S3-compatible server (moto_server on 127.0.0.1)."""

from __future__ import annotations

import uuid
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import paramarena as pa
from paramarena import storage
from paramarena.errors import CorruptCheckpointError, UncommittedCheckpointError
from paramarena.storage.zarr.checkpoint import COMMIT_MARKER

pytestmark = pytest.mark.s3


@pytest.fixture(params=["fsspec", "obstore"])
def client(request: pytest.FixtureRequest) -> str:
    """Every test runs through s3fs and through obstore (the ``client`` option)."""
    if request.param == "obstore":
        pytest.importorskip("obstore", reason="needs obstore (paramarena[s3])")
    return str(request.param)


def _kw(moto_s3: dict[str, Any], client: str) -> dict[str, Any]:
    return {"storage_options": moto_s3["storage_options"], "client": client}


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


def test_round_trip_partial_inspect_verify(moto_s3: dict[str, Any], client: str) -> None:
    url, opts = _url(moto_s3), _kw(moto_s3, client)
    arrays = _arrays()
    storage.save(url, arrays, **opts)
    loaded = storage.load(url, **opts)
    assert isinstance(loaded, dict)
    for k, v in arrays.items():
        assert loaded[k].dtype == v.dtype
        assert loaded[k].tobytes() == v.tobytes()
    part = storage.load(url, names=["bf"], **opts)
    assert list(part) == ["bf"]
    info = storage.inspect(url, **opts)
    assert info.committed
    assert [a.name for a in info.arrays] == list(arrays)
    assert storage.verify(url, **opts).ok


def test_uncommitted_checkpoint_is_refused(moto_s3: dict[str, Any], client: str) -> None:
    url, opts, fs = _url(moto_s3), _kw(moto_s3, client), moto_s3["fs"]
    storage.save(url, _arrays(), **opts)
    fs.rm(url.removeprefix("s3://") + "/" + COMMIT_MARKER)
    with pytest.raises(UncommittedCheckpointError):
        storage.load(url, **opts)


def test_corrupted_chunk_is_detected(moto_s3: dict[str, Any], client: str) -> None:
    url, opts, fs = _url(moto_s3), _kw(moto_s3, client), moto_s3["fs"]
    storage.save(url, {"w": np.arange(1000, dtype=np.float32)}, **opts)
    chunks = [p for p in fs.find(url.removeprefix("s3://")) if "/c/" in p]
    assert chunks
    data = bytearray(fs.cat_file(chunks[0]))
    data[100] ^= 0xFF
    fs.pipe_file(chunks[0], bytes(data))
    with pytest.raises(CorruptCheckpointError):
        storage.load(url, **opts)
    assert not storage.verify(url, **opts).ok


def test_parameter_dict_save_load_and_object_count(moto_s3: dict[str, Any], client: str) -> None:
    url, opts, fs = _url(moto_s3), _kw(moto_s3, client), moto_s3["fs"]
    params = pa.ParameterDict("net_")
    for i in range(10):
        params.get(f"w{i}", shape=(2_621_440,))  # 10 x 10 MiB float32 = 100 MiB
    params.initialize(pa.init.Uniform(), seed=0)
    params.save(url, **opts)
    objects = fs.find(url.removeprefix("s3://"))
    assert len(objects) <= 10  # chunked layout: not one object per parameter
    fresh = pa.ParameterDict("net_")
    for i in range(10):
        fresh.get(f"w{i}", shape=(2_621_440,))
    fresh.load(url, **opts)
    for a, b in zip(params.values(), fresh.values(), strict=True):
        np.testing.assert_array_equal(a.data(), b.data())
