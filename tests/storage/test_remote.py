"""The network policy and error vocabulary shared by the object-store clients (no server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from paramarena.errors import (
    ConfigurationError,
    MissingDependencyError,
    NetworkError,
    RemoteStorageError,
    StorageError,
)
from paramarena.storage.remote import (
    NETWORK_OPTIONS,
    NetworkPolicy,
    is_transient,
    remote_errors,
    retrying_class,
    split_network_options,
    translate_error,
)

pytestmark = pytest.mark.timeout(30)

URL = "s3://bucket/ckpt.zarr"
FAST = NetworkPolicy(retries=3, retry_backoff=0.001, retry_backoff_max=0.002, retry_timeout=5)


def test_options_are_split_from_the_client_options() -> None:
    policy, rest = split_network_options({"key": "k", "retries": 2, "read_timeout": 1.5}, URL)
    assert rest == {"key": "k"}
    assert (policy.retries, policy.read_timeout) == (2, 1.5)
    assert policy.connect_timeout == NETWORK_OPTIONS["connect_timeout"] == 10
    default, rest = split_network_options(None, URL)
    assert default == NetworkPolicy()
    assert rest == {}


@pytest.mark.parametrize(
    "bad",
    [
        {"retries": -1},
        {"retries": 2.0},
        {"retries": True},
        {"read_timeout": 0},
        {"connect_timeout": "1"},
        {"retry_backoff": -0.1},
    ],
)
def test_bad_network_options_are_configuration_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(bad))) as caught:
        split_network_options(bad, URL)
    assert URL in str(caught.value)


def test_backoff_doubles_up_to_its_cap_with_bounded_jitter() -> None:
    policy = NetworkPolicy(retry_backoff=0.25, retry_backoff_max=4)
    for retry, base in enumerate([0.25, 0.5, 1, 2, 4, 4]):
        waits = [policy.delay(retry) for _ in range(50)]
        assert all(base / 2 <= w <= base for w in waits)
    assert NetworkPolicy().max_wait() == 0.25 + 0.5 + 1 + 2 + 4 + 4


class _Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


@pytest.mark.timeout(10)
def test_transient_failures_are_retried_until_success() -> None:
    call = _Flaky([ConnectionResetError(104, "reset"), TimeoutError("slow"), OSError("x")])
    call.failures[2].__cause__ = ConnectionRefusedError(111, "refused")
    assert asyncio.run(FAST.run(call, "get 'k'")) == "done"
    assert call.calls == 4


@pytest.mark.timeout(10)
def test_retries_are_bounded_and_end_in_a_network_error() -> None:
    call = _Flaky([ConnectionResetError(104, "reset")] * 10)
    with pytest.raises(NetworkError, match=r"get 'k'.*gave up after 4 attempt\(s\)"):
        asyncio.run(FAST.run(call, "get 'k'"))
    assert call.calls == 4


@pytest.mark.timeout(10)
def test_permanent_errors_are_not_retried() -> None:
    call = _Flaky([FileNotFoundError("no such key")])
    with pytest.raises(FileNotFoundError):
        asyncio.run(FAST.run(call, "get 'k'"))
    assert call.calls == 1


@pytest.mark.timeout(10)
def test_a_call_that_never_answers_is_cut_off_at_retry_timeout() -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    policy = NetworkPolicy(retries=50, retry_backoff=0.01, retry_timeout=0.3)
    loop = asyncio.new_event_loop()
    try:
        started = loop.time()
        with pytest.raises(NetworkError, match="TimeoutError"):
            loop.run_until_complete(policy.run(hang, "get 'k'"))
        assert loop.time() - started < 3
    finally:
        loop.close()


def test_transient_classification() -> None:
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    wrapped = OSError(5, "Service Unavailable")
    wrapped.__cause__ = ConnectionAbortedError()
    assert is_transient(wrapped)
    assert not is_transient(FileNotFoundError("x"))
    answered = FileNotFoundError("no such key")
    answered.__context__ = ConnectionResetError()  # raised while handling a reset: still final
    assert not is_transient(answered)
    assert not is_transient(ValueError("x"))
    assert not is_transient(PermissionError("x"))


def test_botocore_errors_are_classified() -> None:
    exceptions = pytest.importorskip("botocore.exceptions")
    assert is_transient(exceptions.EndpointConnectionError(endpoint_url="http://h"))
    assert is_transient(exceptions.ReadTimeoutError(endpoint_url="http://h"))

    def client_error(status: int, code: str) -> Exception:
        response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return exceptions.ClientError(response, "GetObject")  # type: ignore[arg-type]

    assert is_transient(client_error(503, "SlowDown"))
    assert is_transient(client_error(500, "InternalError"))
    assert not is_transient(client_error(404, "NoSuchKey"))
    assert not is_transient(client_error(403, "AccessDenied"))


def test_obstore_errors_are_classified_on_their_first_line() -> None:
    obstore_exceptions = pytest.importorskip("obstore.exceptions")
    generic = obstore_exceptions.GenericError
    assert is_transient(generic("GET http://h/b/k - HTTP error: error sending request"))
    assert is_transient(generic("GET http://h/b/k - Server returned non-2xx status code: 503 ..."))
    not_found = "status code: 404 Not Found: NoSuchBucket\n\nDebug source:\n retry_timeout: 180s"
    assert not is_transient(generic(not_found))


def test_translation_names_the_url() -> None:
    bucket = translate_error(URL, FileNotFoundError("The specified bucket does not exist"), "save")
    assert isinstance(bucket, RemoteStorageError)
    assert "bucket 'bucket' does not exist" in str(bucket)
    assert URL in str(bucket)
    denied = translate_error(URL, PermissionError("Access Denied"), "load")
    assert isinstance(denied, RemoteStorageError)
    assert "check the credentials" in str(denied)
    down = translate_error(URL, ConnectionRefusedError(111, "refused"), "load")
    assert isinstance(down, NetworkError)
    assert "check the endpoint" in str(down)
    missing = translate_error(URL, ModuleNotFoundError("no", name="s3fs"), "load")
    assert isinstance(missing, MissingDependencyError)
    assert "pip install 'paramarena[s3]'" in str(missing)
    assert translate_error(URL, ValueError("not ours"), "load") is None
    assert translate_error(URL, StorageError("already clean"), "load") is None


def test_remote_errors_context() -> None:
    with pytest.raises(NetworkError) as caught, remote_errors(URL, "load"):
        raise ConnectionResetError(104, "Connection reset by peer")
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    with pytest.raises(KeyError), remote_errors(URL, "load"):
        raise KeyError("not a client error")


class _FakeFS:
    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.inner_calls = 0

    async def _inner(self) -> str:
        self.inner_calls += 1
        if self.fail:
            self.fail -= 1
            raise ConnectionResetError(104, "reset")
        return "ok"

    async def _outer(self) -> str:
        return await self._inner()


@pytest.mark.timeout(10)
def test_nested_methods_retry_once_at_the_outermost_level() -> None:
    cls = retrying_class(_FakeFS, ("_inner", "_outer"))
    fs = cls(2, paramarena_policy=FAST)
    assert asyncio.run(fs._outer()) == "ok"
    assert fs.inner_calls == 3  # 2 failures + 1 success: not 3 x 3 nested attempts
    fs = cls(10, paramarena_policy=FAST)
    with pytest.raises(NetworkError):
        asyncio.run(fs._outer())
    assert fs.inner_calls == FAST.retries + 1
