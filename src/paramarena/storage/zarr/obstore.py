"""obstore as the object-store client of zarr checkpoints (``client="obstore"``).

obstore (Rust ``object_store`` bindings) ships an fsspec-compatible filesystem, so a checkpoint
location works the same through it as through s3fs / gcsfs / adlfs. ``storage_options`` may be
written in s3fs's vocabulary (``key``, ``secret``, ``token``, ``endpoint_url``,
``client_kwargs={"endpoint_url", "region_name"}``), which is translated, or in obstore's own
config keys (``aws_access_key_id``, ``aws_endpoint``, ``google_service_account``, ...), which
pass through. Credentials not given are read from the usual environment variables by obstore.

The network options of :mod:`paramarena.storage.remote` (``connect_timeout``, ``read_timeout``,
``retries``, ``retry_backoff``, ``retry_backoff_max``) apply as they do for s3fs: obstore's own
retries are switched off and the same retry loop runs around each request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paramarena.errors import ConfigurationError
from paramarena.storage.remote import (
    NetworkPolicy,
    obstore_timeouts,
    remote_errors,
    retrying_class,
    split_network_options,
)

__all__ = [
    "CLIENTS",
    "client_option",
    "obstore_filesystem",
    "obstore_object_store",
    "obstore_options",
]

#: Values of the zarr backend's ``client`` option.
CLIENTS = ("fsspec", "obstore")

_S3FS_KEYS = {
    "key": "aws_access_key_id",
    "secret": "aws_secret_access_key",
    "token": "aws_session_token",
    "endpoint_url": "aws_endpoint",
}
_CLIENT_KWARGS = {"endpoint_url": "aws_endpoint", "region_name": "aws_region"}
#: obstore's fsspec methods that send requests (each one request, or one batch of ranges).
_OBSTORE_METHODS = (
    "_cat_file",
    "_cat_ranges",
    "_pipe_file",
    "_info",
    "_ls",
    "_rm_file",
    "_cp_file",
    "_put_file",
    "_get_file",
)
_OBSTORE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "azure"})
#: obstore's own retries are off: paramarena's loop retries (one loop for both clients).
_NO_RETRIES = {"max_retries": 0}


def client_option(uri: str, options: Mapping[str, Any]) -> str:
    """Return the zarr backend's ``client`` option: ``"fsspec"`` (default) or ``"obstore"``."""
    client = options.get("client", "fsspec")
    if client not in CLIENTS:
        raise ConfigurationError(
            f"client must be one of {', '.join(map(repr, CLIENTS))}, got {client!r} for zarr "
            f"checkpoint {uri!r}."
        )
    return str(client)


def obstore_options(
    storage_options: Mapping[str, Any], uri: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return obstore ``(config, client_options)`` for ``storage_options``.

    Raises
    ------
    paramarena.errors.ConfigurationError
        An s3fs option that has no obstore equivalent.
    """
    config: dict[str, Any] = {}
    client: dict[str, Any] = {}
    for key, value in storage_options.items():
        if key in _S3FS_KEYS:
            config[_S3FS_KEYS[key]] = value
        elif key == "client_kwargs":
            for ck, cv in dict(value).items():
                if ck not in _CLIENT_KWARGS:
                    raise ConfigurationError(
                        f"client_kwargs[{ck!r}] has no obstore equivalent (zarr checkpoint "
                        f"{uri!r}); supported: {sorted(_CLIENT_KWARGS)}, or use client='fsspec'."
                    )
                config[_CLIENT_KWARGS[ck]] = cv
        elif key == "client_options":
            client.update(dict(value))
        elif isinstance(key, str) and key.startswith(("aws_", "google_", "azure_")):
            config[key] = value
        else:
            raise ConfigurationError(
                f"storage option {key!r} has no obstore equivalent (zarr checkpoint {uri!r}); "
                "give s3fs-style key/secret/token/endpoint_url/client_kwargs, obstore config "
                "keys (aws_*, google_*, azure_*), client_options, or use client='fsspec'."
            )
    endpoint = str(config.get("aws_endpoint", ""))
    if endpoint.startswith("http://"):
        client.setdefault("allow_http", True)
    return config, client


def obstore_filesystem(
    scheme: str, storage_options: Mapping[str, Any], uri: str, *, asynchronous: bool = False
) -> Any:
    """Return an fsspec filesystem backed by obstore for ``scheme``.

    Raises
    ------
    paramarena.errors.ConfigurationError
        obstore is not installed, does not serve ``scheme``, or an option has no equivalent.
    """
    if scheme not in _OBSTORE_SCHEMES:
        raise ConfigurationError(
            f"client='obstore' does not serve {scheme}:// URLs ({uri!r}); use client='fsspec'."
        )
    try:
        from obstore.fsspec import FsspecStore
    except ImportError:
        raise ConfigurationError(
            f"client='obstore' needs obstore (zarr checkpoint {uri!r}): "
            "pip install 'paramarena[s3]' or pip install obstore."
        ) from None
    policy, config, client = _client_settings(storage_options, uri)
    make: Any = retrying_class(FsspecStore, _OBSTORE_METHODS)
    with remote_errors(uri, "open"):
        return make(
            scheme,
            config=config or None,
            client_options=client,
            retry_config=_NO_RETRIES,
            asynchronous=asynchronous,
            paramarena_policy=policy,
        )


def _client_settings(
    storage_options: Mapping[str, Any], uri: str
) -> tuple[NetworkPolicy, dict[str, Any], dict[str, Any]]:
    """Return the network policy, obstore ``config`` and ``client_options`` of the options."""
    policy, rest = split_network_options(storage_options, uri)
    config, client = obstore_options(rest, uri)
    for key, value in obstore_timeouts(policy).items():
        client.setdefault(key, value)
    return policy, config, client


def obstore_object_store(storage_options: Mapping[str, Any], uri: str, bucket: str) -> Any:
    """Return an obstore store of ``bucket``, configured as :func:`obstore_filesystem`'s.

    For requests the fsspec interface cannot send (conditional ``put`` with a ``mode``): the
    same credentials and timeouts, obstore's retries off; run its requests through
    :func:`paramarena.storage.remote.call_with_retries` with the filesystem of that URL.
    """
    from obstore.store import from_url

    _policy, config, client = _client_settings(storage_options, uri)
    make: Any = from_url
    scheme = uri.partition("://")[0]
    return make(
        f"{scheme}://{bucket}",
        config=config or None,
        client_options=client,
        retry_config=_NO_RETRIES,
    )
