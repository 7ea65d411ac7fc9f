"""Both object-store clients through a fault-injecting proxy in front of moto_server.

Transient faults (connection resets, 503 answers, a stalled connection, a short outage) are
ridden out by the retry policy of :mod:`paramarena.storage.remote`; permanent ones end in a
:class:`~paramarena.errors.NetworkError` that names the URL, after a bounded time. The tests
set small timeouts and backoffs so that the session stays quick.
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faultproxy import FaultProxy

from paramarena import cli, storage
from paramarena.errors import NetworkError, RemoteStorageError, StorageError
from paramarena.storage.zarr.commit import CommitRecord, _put_commit, read_commit
from paramarena.storage.zarr.location import Location

pytestmark = [pytest.mark.s3, pytest.mark.timeout(90)]  # every test here could hang

FIXTURE = Path(__file__).parents[1] / "fixtures" / "mxnet" / "ndarray_list.params"

#: small timeouts and backoffs: a permanent fault fails within a few seconds
QUICK = {
    "connect_timeout": 1,
    "read_timeout": 1,
    "retries": 4,
    "retry_backoff": 0.05,
    "retry_backoff_max": 0.2,
}


@pytest.fixture(params=["fsspec", "obstore"])
def client(request: pytest.FixtureRequest) -> str:
    """Every test runs through s3fs and through obstore (the ``client`` option)."""
    if request.param == "obstore":
        pytest.importorskip("obstore", reason="needs obstore (paramarena[s3])")
    return str(request.param)


def _options(moto_s3: dict[str, Any], endpoint: str, **network: Any) -> dict[str, Any]:
    base = moto_s3["storage_options"]
    return {
        "key": base["key"],
        "secret": base["secret"],
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        **QUICK,
        **network,
    }


def _url(moto_s3: dict[str, Any], suffix: str = ".zarr") -> str:
    return f"s3://{moto_s3['bucket']}/{uuid.uuid4().hex}{suffix}"


def _arrays() -> dict[str, np.ndarray]:
    return {"w": np.arange(3000, dtype=np.float32), "b": np.ones(7, np.int64)}


def _same(loaded: Any, arrays: dict[str, np.ndarray]) -> None:
    assert isinstance(loaded, dict)
    assert list(loaded) == list(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded[name], value)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("fault", "count"), [("reset", 2), ("503", 2), ("stall", 1)])
def test_transient_faults_are_ridden_out(
    moto_s3: dict[str, Any], fault_proxy: FaultProxy, client: str, fault: str, count: int
) -> None:
    url = _url(moto_s3)
    kw = {"storage_options": _options(moto_s3, fault_proxy.endpoint), "client": client}
    arrays = _arrays()
    fault_proxy.inject(fault, count)
    storage.save(url, arrays, **kw)
    assert fault_proxy.faults_served == count  # the save really met the faults
    fault_proxy.inject(fault, count)
    _same(storage.load(url, **kw), arrays)
    assert fault_proxy.faults_served == 2 * count
    fault_proxy.inject(fault, count)
    assert storage.verify(url, **kw).ok


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", ["reset", "503", "lost-reply"])
def test_conditional_commit_rides_out_faults(
    moto_s3: dict[str, Any], fault_proxy: FaultProxy, client: str, fault: str
) -> None:
    """The compare-and-swap of COMMIT has the same retries as every request.

    ``lost-reply``: the first PUT lands but its answer is lost, so the retry is refused (412);
    that is this writer's own success, not a lost race. A real lost race is still one.
    """
    loc = Location(_url(moto_s3), _options(moto_s3, fault_proxy.endpoint), client)
    fault_proxy.inject(fault)
    assert _put_commit(loc, b"first", CommitRecord(None))  # If-None-Match: *
    assert fault_proxy.faults_served == 1
    record = read_commit(loc)
    assert record.raw == b"first"
    fault_proxy.inject(fault)
    assert _put_commit(loc, b"second", record)  # If-Match on the ETag read
    assert fault_proxy.faults_served == 2
    assert read_commit(loc).raw == b"second"
    fault_proxy.inject(fault)
    assert not _put_commit(loc, b"third", record)  # that ETag is gone: another writer won
    assert fault_proxy.faults_served == 3
    assert read_commit(loc).raw == b"second"


@pytest.mark.timeout(90)
def test_npz_over_s3_rides_out_resets(moto_s3: dict[str, Any], fault_proxy: FaultProxy) -> None:
    url = _url(moto_s3, ".npz")
    kw = {"storage_options": _options(moto_s3, fault_proxy.endpoint)}
    fault_proxy.inject("reset", 2)
    storage.save(url, _arrays(), **kw)
    fault_proxy.inject("reset", 2)
    _same(storage.load(url, **kw), _arrays())
    assert fault_proxy.faults_served == 4


@pytest.mark.timeout(90)
def test_short_outage_is_ridden_out(
    moto_s3: dict[str, Any], fault_proxy: FaultProxy, client: str
) -> None:
    url = _url(moto_s3)
    # waits of at least 0.5 * (0.25 + 0.5 + 1 + 1 + 1) = 1.9 s cover a 1 s outage
    options = _options(moto_s3, fault_proxy.endpoint, retries=5, retry_backoff=0.25)
    options["retry_backoff_max"] = 1.0
    kw = {"storage_options": options, "client": client}
    storage.save(url, _arrays(), **kw)
    fault_proxy.outage(1.0)
    _same(storage.load(url, **kw), _arrays())


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fault", ["reset", "503", "stall", "outage"])
@pytest.mark.parametrize("operation", ["save", "load"])
def test_permanent_faults_fail_cleanly_and_in_bounded_time(
    moto_s3: dict[str, Any], fault_proxy: FaultProxy, client: str, fault: str, operation: str
) -> None:
    url = _url(moto_s3)
    options = _options(moto_s3, fault_proxy.endpoint, retries=2)
    kw = {"storage_options": options, "client": client}
    if operation == "load":
        storage.save(url, _arrays(), **kw)
    if fault == "outage":
        fault_proxy.outage(3600)
    else:
        fault_proxy.always(fault)

    def call() -> Any:
        if operation == "save":
            return storage.save(url, _arrays(), **kw)
        return storage.load(url, **kw)

    started = time.monotonic()
    with pytest.raises(NetworkError) as caught:
        call()
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert url in message
    assert "check the endpoint" in message
    assert "3 attempt(s)" in message  # retries=2: three attempts, then the error
    # bound: 3 attempts of at most read_timeout (1 s) plus waits of at most 0.25 s, with
    # generous slack for a loaded machine (the defaults give up on a stall after 60 s)
    assert elapsed < 30, elapsed


@pytest.mark.timeout(60)
def test_permanent_fault_is_one_cli_error_line(
    moto_s3: dict[str, Any], fault_proxy: FaultProxy
) -> None:
    url = _url(moto_s3)
    options = _options(moto_s3, fault_proxy.endpoint)
    storage.save(url, _arrays(), storage_options=options)
    fault_proxy.always("reset")
    argv = ["verify", url, "-o", f"endpoint_url={fault_proxy.endpoint}"]
    argv += [item for k, v in QUICK.items() for item in ("-o", f"{k}={v}")]
    argv += ["-o", "key=testing", "-o", "secret=testing"]
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, stdout=out, stderr=err)
    assert code == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, err.getvalue()
    assert lines[0].startswith("error: ")
    assert url in lines[0]
    assert "check the endpoint" in lines[0]
    assert out.getvalue() == ""


@pytest.mark.timeout(60)
def test_unreachable_endpoint(moto_s3: dict[str, Any], client: str) -> None:
    proxy = FaultProxy(1)
    endpoint = proxy.endpoint
    proxy.stop()  # nothing listens there any more: connection refused
    url = _url(moto_s3)
    kw = {"storage_options": _options(moto_s3, endpoint), "client": client}
    for call in (lambda: storage.load(url, **kw), lambda: storage.save(url, _arrays(), **kw)):
        with pytest.raises(NetworkError, match="check the endpoint") as caught:
            call()
        assert url in str(caught.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("suffix", [".zarr", ".npz"])
def test_missing_bucket_is_named(moto_s3: dict[str, Any], client: str, suffix: str) -> None:
    if client == "obstore" and suffix == ".npz":
        pytest.skip("client= is a zarr option")
    url = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/ckpt{suffix}"
    kw: dict[str, Any] = {"storage_options": _options(moto_s3, moto_s3["endpoint_url"])}
    if suffix == ".zarr":
        kw["client"] = client
    with pytest.raises(RemoteStorageError) as caught:
        storage.save(url, _arrays(), **kw)
    assert url in str(caught.value)
    assert "bucket" in str(caught.value)
    assert "does not exist" in str(caught.value)
    with pytest.raises(StorageError) as read:
        storage.load(url, **kw)
    assert url in str(read.value)
    assert "does not exist" in str(read.value)
    argv = ["convert", str(FIXTURE), url, "-o", f"endpoint_url={moto_s3['endpoint_url']}"]
    argv += ["-o", "key=testing", "-o", "secret=testing"]
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(argv, stdout=out, stderr=err) == 2
    assert err.getvalue().count("\n") == 1
    assert err.getvalue().startswith("error: ")
    assert url in err.getvalue()
    assert "bucket" in err.getvalue()


def test_network_options_are_validated(moto_s3: dict[str, Any]) -> None:
    from paramarena.errors import ConfigurationError

    url = _url(moto_s3)
    for bad in ({"retries": -1}, {"retries": 1.5}, {"read_timeout": 0}, {"connect_timeout": "x"}):
        options = {**moto_s3["storage_options"], **bad}
        with pytest.raises(ConfigurationError, match=next(iter(bad))):
            storage.load(url, storage_options=options)
