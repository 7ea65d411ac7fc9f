"""Object-store clients with one network policy, and one set of errors for both.

Every remote checkpoint (``s3://`` through s3fs, or any object store through obstore) is reached
through a filesystem built here, with:

- connect and read timeouts: ``connect_timeout`` (default 10 s) and ``read_timeout`` (default
  30 s: s3fs waits that long for each read from the socket); for both clients no attempt of a
  request runs longer than ``connect_timeout + read_timeout`` as a whole (obstore's own
  ``timeout``, which bounds whole requests, is set to ``read_timeout``);
- bounded retries of transient failures (connection refused or reset, timeouts, HTTP 5xx and
  429, truncated responses) with exponential backoff: ``retries`` (default 6) more attempts,
  waiting ``retry_backoff * 2**k`` seconds (default 0.25 s, doubling) but at most
  ``retry_backoff_max`` (default 4 s) before retry ``k``, each wait scaled by a random factor
  in [0.5, 1];
- a hard deadline per request, retries included: ``retry_timeout`` (default 60 s). A stalled
  server therefore fails after 60 s with the defaults.

The clients' own retry loops are switched off (botocore's, s3fs's, obstore's), so that the
same loop, in Python, retries for both and the waits do not multiply. One error vocabulary:
:func:`remote_errors` turns what the clients raise into :class:`~paramarena.errors.StorageError`
subclasses that name the URL.

The six option names are read from ``storage_options`` (and removed before the rest goes to
the client).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, TypeVar

from paramarena.errors import (
    ConfigurationError,
    MissingDependencyError,
    NetworkError,
    ParamarenaError,
    RemoteStorageError,
    StorageError,
)

__all__ = [
    "NETWORK_OPTIONS",
    "NetworkPolicy",
    "call_with_retries",
    "install_hint",
    "is_transient",
    "remote_errors",
    "remote_filesystem",
    "retrying_class",
    "split_network_options",
    "translate_error",
]

#: The ``storage_options`` keys this module reads, with their defaults.
NETWORK_OPTIONS: Mapping[str, float] = {
    "connect_timeout": 10.0,
    "read_timeout": 30.0,
    "retries": 6,
    "retry_backoff": 0.25,
    "retry_backoff_max": 4.0,
    "retry_timeout": 60.0,
}

#: Packages that serve a URL scheme, for the "pip install" hint.
_SCHEME_PACKAGES = {
    "s3": ("s3fs", "pip install 'paramarena[s3]'"),
    "s3a": ("s3fs", "pip install 'paramarena[s3]'"),
    "gs": ("gcsfs", "pip install gcsfs"),
    "gcs": ("gcsfs", "pip install gcsfs"),
    "az": ("adlfs", "pip install adlfs"),
    "abfs": ("adlfs", "pip install adlfs"),
    "abfss": ("adlfs", "pip install adlfs"),
}

_HTTP_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_CODES_RETRYABLE = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
    }
)
_OBSTORE_TRANSIENT_TEXT = (
    "error sending request",
    "error decoding response body",
    "connection",
    "timed out",
    "status code: 5",
    "status code: 429",
    "incomplete",
)


@dataclasses.dataclass(frozen=True)
class NetworkPolicy:
    """Timeouts and retries of remote requests (see the module docstring)."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 6
    retry_backoff: float = 0.25
    retry_backoff_max: float = 4.0
    retry_timeout: float = 60.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), jitter included."""
        base = min(self.retry_backoff_max, self.retry_backoff * 2.0**retry)
        return base * (0.5 + random.random() / 2)

    def max_wait(self) -> float:
        """Return the longest total backoff wait of one request (without the requests' own time)."""
        return sum(
            min(self.retry_backoff_max, self.retry_backoff * 2.0**k) for k in range(self.retries)
        )

    async def run(self, call: Callable[[], Awaitable[Any]], what: str) -> Any:
        """Await ``call()`` with retries of transient failures; raise :class:`NetworkError`."""
        import asyncio  # not at module level: the plugin manager imports this module (20 ms)

        started = time.monotonic()
        for attempt in range(self.retries + 1):
            # each attempt ends after connect_timeout + read_timeout, and the request, retries
            # included, after retry_timeout: even a client that waits without a timer of its
            # own (aiohttp awaiting "100 Continue" from a stalled server) is cut off
            remaining = self.retry_timeout - (time.monotonic() - started)
            limit = min(self.connect_timeout + self.read_timeout, max(remaining, 0.001))
            try:
                return await asyncio.wait_for(call(), limit)
            except Exception as exc:
                if isinstance(exc, ParamarenaError) or not is_transient(exc):
                    raise
                elapsed = time.monotonic() - started
                wait = self.delay(attempt)
                if attempt == self.retries or elapsed + wait > self.retry_timeout:
                    raise NetworkError(
                        f"{what}: {_reason(exc)}; gave up after {attempt + 1} attempt(s) in "
                        f"{elapsed:.1f} s (storage option retries={self.retries}, "
                        f"connect_timeout={self.connect_timeout:g}, "
                        f"read_timeout={self.read_timeout:g}, "
                        f"retry_timeout={self.retry_timeout:g})"
                    ) from exc
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def split_network_options(
    storage_options: Mapping[str, Any] | None, uri: str
) -> tuple[NetworkPolicy, dict[str, Any]]:
    """Return the :class:`NetworkPolicy` in ``storage_options`` and the options left for the client.

    Raises
    ------
    paramarena.errors.ConfigurationError
        A network option is not a non-negative number (``retries``: a non-negative int).
    """
    rest = dict(storage_options or {})
    values: dict[str, Any] = {}
    for key in NETWORK_OPTIONS:
        if key not in rest:
            continue
        value = rest.pop(key)
        integral = key == "retries"
        ok = not isinstance(value, bool) and (
            isinstance(value, int) if integral else isinstance(value, int | float)
        )
        if not ok or value < 0 or (key.endswith("timeout") and value == 0):
            kind = "a non-negative int" if integral else "a positive number of seconds"
            raise ConfigurationError(f"storage option {key}={value!r} for {uri!r} must be {kind}.")
        values[key] = int(value) if integral else float(value)
    return NetworkPolicy(**values), rest


# -- what is transient ---------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status(exc: BaseException) -> tuple[int | None, str | None]:
    """Return the HTTP status and error code of a botocore ``ClientError``, if it is one."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None, None
    meta = response.get("ResponseMetadata") or {}
    status = meta.get("HTTPStatusCode") if isinstance(meta, Mapping) else None
    error = response.get("Error") or {}
    code = error.get("Code") if isinstance(error, Mapping) else None
    return (int(status) if isinstance(status, int) else None), (str(code) if code else None)


def _is_transient_one(exc: BaseException) -> bool:
    import http.client  # only when a request failed: kept out of the first initialize

    if isinstance(exc, ConnectionError | TimeoutError | http.client.IncompleteRead):
        return True
    module = type(exc).__module__
    names = {cls.__name__ for cls in type(exc).__mro__}
    if module.startswith(("botocore", "aiobotocore")):
        if names & {"ConnectionError", "HTTPClientError", "ResponseParserError"}:
            return True
        status, code = _status(exc)
        return (status in _HTTP_RETRYABLE) or (code in _CODES_RETRYABLE)
    if module.startswith("aiohttp"):
        return bool(
            names
            & {
                "ClientConnectionError",
                "ClientPayloadError",
                "ServerDisconnectedError",
                "ServerTimeoutError",
            }
        )
    if module.startswith("fsspec") and "FSTimeoutError" in names:
        return True
    if module.startswith("obstore") and "GenericError" in names:
        # the first line only: obstore's "Debug source" dump names retry_timeout every time
        text = str(exc).split("\n", 1)[0].lower()
        return any(marker in text for marker in _OBSTORE_TRANSIENT_TEXT)
    return False


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is worth retrying.

    A definite answer of the store (no such object, access denied, already exists) never is,
    whatever it was raised while handling.
    """
    if isinstance(exc, FileNotFoundError | PermissionError | FileExistsError):
        return False
    return any(_is_transient_one(e) for e in _chain(exc))


def _reason(exc: BaseException) -> str:
    """Return a short description of a client exception (the first line of its deepest message)."""
    for e in reversed(list(_chain(exc))):
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if text:
            return f"{type(e).__name__}: {text[:200]}"
    if isinstance(exc, TimeoutError):
        return "TimeoutError: no answer within the timeouts"
    return type(exc).__name__


# -- one retry loop for every client --------------------------------------------------------------

_RETRYING: ContextVar[bool] = ContextVar("paramarena_retrying", default=False)

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


def _with_retries(method: _F) -> _F:
    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _RETRYING.get():  # an outer call of this filesystem retries already
            return await method(self, *args, **kwargs)
        token = _RETRYING.set(True)
        try:
            what = f"{method.__name__.lstrip('_')} {args[0]!r}" if args else method.__name__
            policy: NetworkPolicy = self._paramarena_policy
            return await policy.run(lambda: method(self, *args, **kwargs), what)
        finally:
            _RETRYING.reset(token)

    return wrapper  # type: ignore[return-value]


_T = TypeVar("_T")


def call_with_retries(fs: Any, call: Callable[[], Awaitable[_T]], what: str) -> _T:
    """Run ``call()`` on the event loop of ``fs`` (a filesystem made here), under its policy.

    For requests sent past the filesystem's own methods (a conditional ``PUT`` of s3fs's
    ``put_object``, obstore's ``put_async`` with a ``mode``): the same timeouts and retries
    as every other request of ``fs``. Methods of ``fs`` that ``call`` awaits do not retry
    again (one loop). A request that is not idempotent may land and still be retried: the
    caller must recognise its own earlier success (see :mod:`paramarena.storage.zarr.commit`).
    """
    from fsspec.asyn import sync

    policy: NetworkPolicy = getattr(fs, "_paramarena_policy", None) or NetworkPolicy()

    async def run() -> _T:
        token = _RETRYING.set(True)
        try:
            result: _T = await policy.run(call, what)
            return result
        finally:
            _RETRYING.reset(token)

    result: _T = sync(fs.loop, run)
    return result


_CLASSES: dict[tuple[type[Any], tuple[str, ...]], type[Any]] = {}


def retrying_class(
    base: type[Any], methods: tuple[str, ...], attributes: Mapping[str, Any] | None = None
) -> type[Any]:
    """Return a subclass of the async filesystem ``base`` whose ``methods`` retry.

    Instances need a ``_paramarena_policy`` attribute (a :class:`NetworkPolicy`), which is
    also a constructor keyword of the subclass. Nested calls (``_cat_file`` calling
    ``_call_s3``) retry once, at the outermost level. ``attributes`` are set on the subclass.
    """
    key = (base, methods)
    if key not in _CLASSES:
        namespace: dict[str, Any] = {
            name: _with_retries(getattr(base, name)) for name in methods if hasattr(base, name)
        }

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            self._paramarena_policy = kwargs.pop("paramarena_policy", NetworkPolicy())
            base.__init__(self, *args, **kwargs)

        namespace["__init__"] = init
        namespace.update(attributes or {})
        _CLASSES[key] = type(f"Retrying{base.__name__}", (base,), namespace)
    return _CLASSES[key]


#: s3fs methods that send requests: every request goes through ``_call_s3`` except listings
#: (``_lsdir``) and body reads (``_cat_file`` reads after ``_call_s3`` returns).
_S3FS_METHODS = ("_call_s3", "_cat_file", "_lsdir", "_find")


def _s3fs_filesystem(
    uri: str, policy: NetworkPolicy, options: dict[str, Any], asynchronous: bool
) -> tuple[Any, str]:
    from s3fs import S3FileSystem

    config = dict(options.pop("config_kwargs", None) or {})
    config.setdefault("connect_timeout", policy.connect_timeout)
    config.setdefault("read_timeout", policy.read_timeout)
    config.setdefault("retries", {"total_max_attempts": 1})  # the retries are ours
    cls = retrying_class(S3FileSystem, _S3FS_METHODS, {"retries": 1})  # s3fs's loop: 1 attempt
    fs = cls(
        config_kwargs=config,
        asynchronous=asynchronous,
        paramarena_policy=policy,
        **cls._get_kwargs_from_urls(uri),
        **options,
    )
    return fs, str(cls._strip_protocol(uri))


def remote_filesystem(
    uri: str, storage_options: Mapping[str, Any] | None, *, asynchronous: bool = False
) -> tuple[Any, str]:
    """Return ``(fsspec filesystem, path)`` for a remote ``uri`` with the network policy applied.

    ``s3://`` URLs get s3fs with the timeouts and the retry loop of this module; other
    protocols get fsspec's filesystem for them as it is (the network options are still
    removed from ``storage_options``).

    Raises
    ------
    paramarena.errors.MissingDependencyError
        fsspec or the package serving the URL's scheme is not installed.
    paramarena.errors.StorageError
        fsspec cannot make sense of the URL or the options.
    """
    policy, options = split_network_options(storage_options, uri)
    scheme = uri.partition("://")[0].lower()
    try:
        import fsspec

        if scheme in ("s3", "s3a"):
            return _s3fs_filesystem(uri, policy, options, asynchronous)
        if asynchronous:
            options = {"asynchronous": True, **options}
        fs, path = fsspec.core.url_to_fs(uri, **options)
        return fs, str(path)
    except ImportError as exc:
        raise missing_dependency(uri, exc) from None
    except (TypeError, ValueError) as exc:
        raise StorageError(f"cannot open {uri!r}: {exc}") from exc


def install_hint(uri: str) -> str:
    """Return what to install to reach ``uri`` (``pip install 'paramarena[s3]'`` for S3)."""
    scheme = uri.partition("://")[0].lower()
    return _SCHEME_PACKAGES.get(scheme, ("fsspec", "pip install fsspec"))[1]


def missing_dependency(uri: str, exc: BaseException) -> MissingDependencyError:
    """Return the error for a client package that cannot be imported."""
    scheme = uri.partition("://")[0].lower()
    package = _SCHEME_PACKAGES.get(scheme, ("fsspec", ""))[0]
    missing = getattr(exc, "name", None) or package
    return MissingDependencyError(
        f"cannot open {uri!r}: {scheme}:// URLs need {package}, and {missing!r} cannot be "
        f"imported here; install it with: {install_hint(uri)}"
    )


# -- one error vocabulary -------------------------------------------------------------------------


def _bucket(uri: str) -> str:
    return uri.partition("://")[2].split("/", 1)[0]


def translate_error(uri: str, exc: BaseException, action: str = "access") -> ParamarenaError | None:
    """Return the paramarena error for a client exception met reaching ``uri``, or ``None``.

    ``None`` means ``exc`` is not a client or network error (or is already a paramarena
    error) and should propagate as it is.
    """
    if isinstance(exc, NetworkError):
        text = str(exc)
        if uri in text:
            return None
        return NetworkError(f"cannot {action} {uri!r}: {text}; check the endpoint and the network")
    if isinstance(exc, ParamarenaError):
        return None
    if isinstance(exc, ImportError):
        return missing_dependency(uri, exc)
    if is_transient(exc):
        return NetworkError(
            f"cannot {action} {uri!r}: the store is unreachable or failing ({_reason(exc)}); "
            "check the endpoint (endpoint_url) and the network"
        )
    text = " ".join(str(e) for e in _chain(exc)).lower()
    if "bucket" in text and ("does not exist" in text or "nosuchbucket" in text):
        return RemoteStorageError(
            f"cannot {action} {uri!r}: bucket {_bucket(uri)!r} does not exist"
        )
    if isinstance(exc, PermissionError) or "accessdenied" in text or "forbidden" in text:
        return RemoteStorageError(
            f"cannot {action} {uri!r}: access denied ({_reason(exc)}); check the credentials"
        )
    module = type(exc).__module__
    if isinstance(exc, OSError) or module.startswith(("botocore", "aiobotocore", "obstore")):
        return RemoteStorageError(f"cannot {action} {uri!r}: {_reason(exc)}")
    return None


@contextlib.contextmanager
def remote_errors(uri: str, action: str = "access") -> Iterator[None]:
    """Turn client exceptions raised inside the block into errors that name ``uri``.

    Use around any remote operation: raw botocore, aiohttp, obstore and ``OSError``
    exceptions become :class:`~paramarena.errors.NetworkError` (unreachable, resets, timeouts,
    5xx after the retries) or :class:`~paramarena.errors.RemoteStorageError` (missing
    bucket, access denied, anything else the store refused); paramarena errors pass through.
    """
    try:
        yield
    except Exception as exc:
        mapped = translate_error(uri, exc, action)
        if mapped is None:
            raise
        raise mapped from exc


def obstore_timeouts(policy: NetworkPolicy) -> dict[str, Any]:
    """Return obstore ``client_options`` for the policy's timeouts.

    obstore has no read timeout of its own: ``read_timeout`` bounds each whole request there.
    """
    return {
        "connect_timeout": timedelta(seconds=policy.connect_timeout),
        "timeout": timedelta(seconds=policy.read_timeout),
    }
