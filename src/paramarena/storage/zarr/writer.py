"""The write side of a zarr checkpoint save, as small steps a save composes.

:meth:`ZarrCheckpointBackend.save <paramarena.storage.zarr.checkpoint.ZarrCheckpointBackend.save>`
runs, in order: :func:`save_settings` and :func:`save_items` (check the options and arrays),
:func:`claim_new_version`, :func:`write_version` (the packed arrays), :func:`write_manifest`,
:func:`~paramarena.storage.zarr.commit.commit_version` (compare-and-swap of ``COMMIT``) and
:func:`cleanup`; on failure :func:`~paramarena.storage.zarr.commit.abandon_version`. A save by
several writers (ranks) composes the same steps: every rank writes its part of one claimed
version, one writer writes the manifest and commits.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paramarena.errors import ConfigurationError, NetworkError, StorageError
from paramarena.hooks.records import ArraysLike
from paramarena.storage.fileio import progress_reporter
from paramarena.storage.remote import translate_error
from paramarena.storage.zarr.commit import (
    DEFAULT_CLEANUP_GRACE,
    DEFAULT_COMMIT_TIMEOUT,
    VersionClaim,
    abandon_version,
    claim_version,
    new_version_name,
    remove_superseded,
)
from paramarena.storage.zarr.location import Location, fsync_dir, fsync_tree, remote_concurrency
from paramarena.storage.zarr.pack import DirectPacker, ZarrPacker

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_CONCURRENCY",
    "FORMAT_VERSION",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "MANIFEST_FORMATS",
    "claim_new_version",
    "cleanup",
    "concurrency_option",
    "crc_hex",
    "logical_name",
    "save_failed",
    "save_items",
    "save_settings",
    "storage_dtype",
    "write_manifest",
    "write_version",
]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
#: The manifest's ``format`` marker this version writes.
MANIFEST_FORMAT = "paramarena-zarr"
#: Every marker a reader accepts: ``paramdict-zarr`` is what versions before the rename to
#: paramarena (0.1.x) wrote; compatibility reader, kept on purpose so those checkpoints load.
MANIFEST_FORMATS = frozenset({MANIFEST_FORMAT, "paramdict-zarr"})
DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024
DEFAULT_CONCURRENCY = 4


def crc_hex(data: np.ndarray) -> str:
    """Return the crc32c of an array's raw bytes as 8 hex digits."""
    import crc32c

    raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    return f"{crc32c.crc32c(raw.data):08x}"


_LOGICAL_NAMES: dict[tuple[Any, str], str] = {}


def logical_name(dtype: np.dtype[Any]) -> str:
    """Return the manifest's dtype name (numpy's, or ``bfloat16``)."""
    # cached: ``dtype.name`` is computed in Python on every access (microseconds per parameter)
    key = (dtype.type, dtype.str)
    name = _LOGICAL_NAMES.get(key)
    if name is None:
        name = _LOGICAL_NAMES[key] = "bfloat16" if dtype.name == "bfloat16" else dtype.name
    return name


@functools.lru_cache(maxsize=64)
def storage_dtype(logical: str) -> np.dtype[Any]:
    """Return the dtype a logical dtype is stored as (bfloat16: uint16, bool: uint8)."""
    if logical == "bfloat16":
        return np.dtype(np.uint16)
    if logical == "bool":
        return np.dtype(np.uint8)
    return np.dtype(logical)


def concurrency_option(uri: str, options: Mapping[str, Any]) -> int:
    """Return the ``concurrency`` option: chunk requests in flight at once (remote stores)."""
    value = options.get("concurrency", DEFAULT_CONCURRENCY)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"concurrency must be a positive int, got {value!r} for zarr checkpoint {uri!r}."
        )
    return value


def _positive_seconds(uri: str, options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(
            f"{key} must be a number of seconds >= 0, got {value!r} for zarr checkpoint {uri!r}."
        )
    return float(value)


def save_settings(uri: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check and return the options of a save (with their defaults)."""
    concurrency = concurrency_option(uri, options)
    chunk_bytes = int(options.get("chunk_bytes", DEFAULT_CHUNK_BYTES))
    if chunk_bytes <= 0:
        raise ConfigurationError(f"chunk_bytes must be positive, got {chunk_bytes}.")
    compression = options.get("compression")
    if compression not in (None, "none", "zstd"):
        raise ConfigurationError(
            f"compression must be None or 'zstd', got {compression!r} for {uri!r}."
        )
    return {
        "concurrency": concurrency,
        "chunk_bytes": chunk_bytes,
        "compression": compression,
        "cleanup_grace": _positive_seconds(uri, options, "cleanup_grace", DEFAULT_CLEANUP_GRACE),
        "commit_timeout": _positive_seconds(uri, options, "commit_timeout", DEFAULT_COMMIT_TIMEOUT),
        # name -> 64-bit key the values were drawn with (Parameter.init_key), kept per entry
        "init_keys": dict(options.get("init_keys") or {}),
    }


def save_items(uri: str, arrays: ArraysLike) -> tuple[list[tuple[str, np.ndarray]], bool]:
    """Return ``(name, array)`` pairs to save and whether they were named; refuse non-arrays."""
    named = isinstance(arrays, Mapping)
    items = (
        list(arrays.items())
        if isinstance(arrays, Mapping)
        else [(f"arr_{i}", a) for i, a in enumerate(arrays)]
    )
    for name, value in items:
        if not isinstance(value, np.ndarray):
            raise StorageError(
                f"cannot save {name!r} to {uri!r}: expected a numpy array, got "
                f"{type(value).__name__}."
            )
        if value.dtype.kind not in "biufc" and value.dtype.name != "bfloat16":
            raise StorageError(
                f"cannot save {name!r} to {uri!r}: dtype {value.dtype} is not supported "
                f"(numeric, bool and bfloat16 only)."
            )
    return items, named


def claim_new_version(loc: Location) -> tuple[str, VersionClaim]:
    """Pick a new version name and claim it (:func:`~.commit.claim_version`)."""
    version = new_version_name()
    return version, claim_version(loc, version)


def write_version(
    loc: Location,
    version: str,
    items: Sequence[tuple[str, np.ndarray]],
    settings: Mapping[str, Any],
    progress: bool | None,
) -> list[dict[str, Any]]:
    """Write the packed arrays of ``items`` into ``version``; return the manifest entries."""
    concurrency, chunk_bytes = settings["concurrency"], settings["chunk_bytes"]
    init_keys: Mapping[str, int] = settings.get("init_keys") or {}
    groups: dict[str, list[int]] = {}
    for i, (_name, a) in enumerate(items):
        groups.setdefault(logical_name(a.dtype), []).append(i)
    entries: list[dict[str, Any]] = [{} for _ in items]
    total = sum(int(a.nbytes) for _, a in items)
    packer: DirectPacker | ZarrPacker = (
        DirectPacker(loc, version, concurrency)
        if settings["compression"] in (None, "none")
        else ZarrPacker(loc, version, concurrency)
    )
    with (
        remote_concurrency(loc.local, concurrency),
        progress_reporter(total, f"save {loc.uri}", progress) as update,
    ):
        for logical, idx in groups.items():
            sdtype = storage_dtype(logical)
            count = sum(int(items[i][1].size) for i in idx)
            limit = max(1, min(chunk_bytes // sdtype.itemsize, max(count, 1)))
            # equal chunks no larger than the limit: the last chunk is not padded out
            chunk = max(1, -(-count // -(-count // limit))) if count else 1
            arr_name = f"packed_{logical}"
            writer = packer.array(arr_name, count, chunk, sdtype)
            offset = 0
            for i in idx:
                name, a = items[i]
                flat = np.ascontiguousarray(a).reshape(-1).view(sdtype)
                entries[i] = {
                    "name": name,
                    "shape": list(a.shape),
                    "dtype": logical,
                    "array": arr_name,
                    "offset": offset,
                    "size": int(a.size),
                    "nbytes": int(a.nbytes),
                    "crc32c": crc_hex(flat),
                }
                if name in init_keys:
                    entries[i]["init_key"] = f"{int(init_keys[name]):016x}"
                offset += int(a.size)
                writer.add(flat)
                update(int(a.nbytes))
            writer.close()
    return entries


def write_manifest(
    loc: Location,
    version: str,
    entries: Sequence[Mapping[str, Any]],
    named: bool,
    settings: Mapping[str, Any],
) -> bytes:
    """Write ``manifest.json`` (local disk: then fsync the version); return its bytes."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": FORMAT_VERSION,
        "named": named,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "chunk_bytes": settings["chunk_bytes"],
        "parameters": list(entries),
    }
    # compact: an indented manifest costs json's pure-Python encoder (half of the save of
    # 10k small parameters); the C encoder writes this form
    manifest_raw = json.dumps(manifest, separators=(",", ":")).encode()
    loc.write_bytes(manifest_raw, version, MANIFEST)
    if loc.local:
        fsync_tree(loc.join(version))
        fsync_dir(loc.path)
    return manifest_raw


def cleanup(loc: Location, current: str, replaced: str | None, grace: float) -> None:
    """Delete superseded and abandoned versions (:func:`~.commit.remove_superseded`).

    On local disk in a background thread (not a daemon: the interpreter finishes it before
    exiting), overlapping the caller's work; on object stores before returning.
    """
    if loc.local:
        threading.Thread(
            target=remove_superseded,
            args=(loc, current, replaced, grace),
            name="paramarena-zarr-cleanup",
        ).start()
    else:
        remove_superseded(loc, current, replaced, grace)


def save_failed(loc: Location, version: str, exc: BaseException) -> BaseException | None:
    """Clean up after a failed save; return the error it raises (None: re-raise ``exc``).

    What the save wrote is removed (:func:`~.commit.abandon_version`), except after a
    :class:`~paramarena.errors.NetworkError`: the store stayed unreachable through every retry,
    and cleanup requests with retries of their own would multiply the time a failing save takes
    (``retry_timeout`` each); that version is then removed by a later save once it is older than
    ``cleanup_grace``. Remote failures are translated as every remote request's
    (:func:`paramarena.storage.remote.translate_error`: a missing bucket, access denied or the
    network, naming the URL); another ``OSError`` (disk full, ...) becomes a
    :class:`~paramarena.errors.StorageError` naming the checkpoint.
    """
    translated = None if loc.local else translate_error(loc.uri, exc, "save")
    if not isinstance(translated or exc, NetworkError):
        abandon_version(loc, version)
    if translated is not None:
        return translated
    if isinstance(exc, OSError) and not isinstance(exc, StorageError):
        return StorageError(
            f"cannot save zarr checkpoint {loc.uri!r}: {exc}. What this save wrote was "
            "removed; the previous checkpoint (if any) is still committed."
        )
    return None
