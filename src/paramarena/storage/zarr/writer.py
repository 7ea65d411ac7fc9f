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
import os
import threading
import time
from collections.abc import Mapping, Sequence
from operator import attrgetter, itemgetter
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
from paramarena.storage.zarr.crc import crc32c
from paramarena.storage.zarr.direct import (
    ChunkFileWriters,
    PackedColumns,
    PackedWrite,
    SinkAdapter,
    write_file_durably,
    write_packed,
)
from paramarena.storage.zarr.local import GROUP_METADATA, RawLayout, array_metadata, metadata_bytes
from paramarena.storage.zarr.location import (
    Location,
    RemoteChunkObjects,
    fsync_dir,
    fsync_tree,
    remote_concurrency,
)
from paramarena.storage.zarr.manifest import ManifestEntries, PackedGroup, encode_manifest
from paramarena.storage.zarr.pack import ZarrPacker

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
    raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    return f"{crc32c(raw.data):08x}"


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
    checked: set[np.dtype[Any]] = set()
    for name, value in items:
        if type(value) is not np.ndarray and not isinstance(value, np.ndarray):
            raise StorageError(
                f"cannot save {name!r} to {uri!r}: expected a numpy array, got "
                f"{type(value).__name__}."
            )
        dtype = value.dtype
        if dtype in checked:
            continue
        if dtype.kind not in "biufc" and dtype.name != "bfloat16":
            raise StorageError(
                f"cannot save {name!r} to {uri!r}: dtype {value.dtype} is not supported "
                f"(numeric, bool and bfloat16 only)."
            )
        checked.add(dtype)
    return items, named


def claim_new_version(loc: Location) -> tuple[str, VersionClaim]:
    """Pick a new version name and claim it (:func:`~.commit.claim_version`)."""
    version = new_version_name()
    return version, claim_version(loc, version)


def _groups(arrays: Sequence[np.ndarray]) -> dict[str, list[int]]:
    """Positions of the arrays of each logical dtype, in order (one packed array each)."""
    dtypes = list(map(_DTYPE, arrays))
    names = {dt: logical_name(dt) for dt in set(dtypes)}
    if len(set(names.values())) == 1:
        return {next(iter(names.values())): list(range(len(arrays)))}
    groups: dict[str, list[int]] = {}
    for i, dt in enumerate(dtypes):
        groups.setdefault(names[dt], []).append(i)
    return groups


_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_DTYPE, _SHAPE = attrgetter("dtype"), attrgetter("shape")
_SIZE, _NBYTES = attrgetter("size"), attrgetter("nbytes")


def _chunk_elements(count: int, chunk_bytes: int, itemsize: int) -> int:
    """Equal chunks of at most ``chunk_bytes``: the last chunk is not padded out."""
    limit = max(1, min(chunk_bytes // itemsize, max(count, 1)))
    return max(1, -(-count // -(-count // limit))) if count else 1


def write_version(
    loc: Location,
    version: str,
    items: Sequence[tuple[str, np.ndarray]],
    settings: Mapping[str, Any],
    progress: bool | None,
    named: bool | None = None,
) -> ManifestEntries:
    """Write the packed arrays of ``items`` into ``version``; return the manifest entries.

    Uncompressed (:mod:`paramarena.storage.zarr.direct`): on local disk every chunk file is
    written and fsync'd by writer threads, so the entries come back ``synced`` (the manifest
    step then flushes only the manifest, the ``zarr.json`` files and the directories). Given
    ``named`` (what :func:`write_manifest` will be told), a local save whose crc32c are all
    known before the last chunks are on disk (only staged parameters) writes and fsyncs the
    manifest then, beside the chunks; :func:`write_manifest` then only flushes the rest.
    """
    arrays = list(map(_SECOND, items))
    groups = _groups(arrays)
    entries = ManifestEntries(
        list(map(_FIRST, items)),
        list(map(_SHAPE, arrays)),
        [],
        settings.get("init_keys") or {},
    )
    total = sum(map(_NBYTES, arrays))
    with (
        remote_concurrency(loc.local, settings["concurrency"]),
        progress_reporter(total, f"save {loc.uri}", progress) as update,
    ):
        if settings["compression"] in (None, "none"):
            _write_direct(loc, version, arrays, groups, settings, update, entries, named)
        else:
            _write_compressed(loc, version, arrays, groups, settings, update, entries)
    return entries


def _write_direct(
    loc: Location,
    version: str,
    arrays: Sequence[np.ndarray],
    groups: Mapping[str, list[int]],
    settings: Mapping[str, Any],
    update: Any,
    entries: ManifestEntries,
    named: bool | None,
) -> None:
    writers = ChunkFileWriters() if loc.local else None
    pending: list[PackedWrite] = []
    try:
        _put_metadata(loc, entries, GROUP_METADATA, version, "zarr.json")
        for logical, idx in groups.items():
            members = arrays if len(idx) == len(arrays) else [arrays[i] for i in idx]
            sdtype = storage_dtype(logical)
            sizes = list(map(_SIZE, members))
            count = sum(sizes)
            chunk = _chunk_elements(count, settings["chunk_bytes"], sdtype.itemsize)
            name = f"packed_{logical}"
            meta = array_metadata(count, chunk, sdtype)
            _put_metadata(loc, entries, meta, version, name, "zarr.json")
            layout = RawLayout(loc.join(version, name), chunk, count, sdtype.itemsize)
            submit: Any
            if writers is not None:
                os.makedirs(os.path.join(layout.directory, "c"), exist_ok=True)
                entries.to_flush += [os.path.join(layout.directory, "c"), layout.directory]

                def submit(k: int, pieces: Any, pad: int, staged: int, lay: Any = layout) -> Any:
                    return writers.submit(lay.path(k), pieces, pad, staged)

            else:
                remote = RemoteChunkObjects(loc, version, name, settings["concurrency"])
                adapter = SinkAdapter(remote)

                def submit(k: int, pieces: Any, pad: int, staged: int, ad: Any = adapter) -> Any:
                    return ad.submit(k, pieces, pad)

            packed = write_packed(members, sizes, logical, layout.chunk_bytes, submit, update)
            if writers is None:
                remote.finish()
            entries.groups.append(PackedGroup(logical, name, idx, packed.columns))
            pending.append(packed)
        # encoded while the last chunks are written; the crc32c of the parameters written from
        # their own memory (pending) are encoded again once known
        entries.prepare()
        known = not any(g.columns.pending for g in entries.groups)
        if writers is not None and named is not None and known:
            # every crc32c is known already: the manifest is written and fsync'd beside the
            # last chunks (only COMMIT must come after both)
            entries.manifest_raw = _encode(entries, named, settings)
            entries.manifest_named = named
            path = loc.join(version, MANIFEST)
            writers.run(write_file_durably, path, [memoryview(entries.manifest_raw)])
        for packed in pending:
            packed.finish()
        if writers is not None:
            writers.finish()
            entries.synced = True
    except BaseException:
        if writers is not None:
            writers.stop()  # no thread still creating files while the save cleans up
        raise


def _put_metadata(
    loc: Location, entries: ManifestEntries, document: dict[str, Any], *parts: str
) -> None:
    """Write a ``zarr.json`` (local disk: flushed with the directories before the commit)."""
    loc.put_bytes(metadata_bytes(document), *parts)
    if loc.local:
        entries.to_flush.append(loc.join(*parts))


def _write_compressed(
    loc: Location,
    version: str,
    arrays: Sequence[np.ndarray],
    groups: Mapping[str, list[int]],
    settings: Mapping[str, Any],
    update: Any,
    entries: ManifestEntries,
) -> None:
    packer = ZarrPacker(loc, version, settings["concurrency"])
    for logical, idx in groups.items():
        sdtype = storage_dtype(logical)
        members = [arrays[i] for i in idx]
        count = sum(a.size for a in members)
        chunk = _chunk_elements(count, settings["chunk_bytes"], sdtype.itemsize)
        name = f"packed_{logical}"
        writer = packer.array(name, count, chunk, sdtype)
        columns = PackedColumns([], [], [], [])
        offset = 0
        for a in members:
            flat = _stored(a, sdtype)
            columns.offsets.append(offset)
            columns.sizes.append(a.size)
            columns.nbytes.append(a.nbytes)
            columns.crcs.append(crc32c(flat))
            offset += a.size
            writer.add(flat)
            update(a.nbytes)
        writer.close()
        entries.groups.append(PackedGroup(logical, name, idx, columns))


def _stored(a: np.ndarray, sdtype: np.dtype[Any]) -> np.ndarray:
    """Return ``a`` as stored: C order, little endian, viewed as the storage dtype."""
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a).reshape(-1).view(sdtype)


def _encode(
    entries: ManifestEntries | Sequence[Mapping[str, Any]], named: bool, settings: Mapping[str, Any]
) -> bytes:
    """Return the manifest's bytes: compact JSON, the entries encoded from their columns."""
    header = {
        "format": MANIFEST_FORMAT,
        "format_version": FORMAT_VERSION,
        "named": named,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "chunk_bytes": settings["chunk_bytes"],
    }
    # compact, and without a dict per parameter (storage.zarr.manifest): an indented manifest
    # costs json's pure-Python encoder
    return encode_manifest(header, entries)


def write_manifest(
    loc: Location,
    version: str,
    entries: ManifestEntries | Sequence[Mapping[str, Any]],
    named: bool,
    settings: Mapping[str, Any],
) -> bytes:
    """Write ``manifest.json`` and make the version durable (local disk); return its bytes.

    When ``entries`` come from :func:`write_version` with every chunk file already fsync'd
    (``synced``), the manifest is written and fsync'd, then the ``zarr.json`` files and the
    directories the save created, the version directory and the root (their entries);
    otherwise every file and directory of the version is fsync'd (a compressed save, a
    sharded save's rank 0).
    """
    synced = isinstance(entries, ManifestEntries) and entries.synced
    if loc.local and synced:
        assert isinstance(entries, ManifestEntries)
        manifest_raw = entries.manifest_raw  # written and fsync'd during write_version
        if manifest_raw is None or entries.manifest_named != named:
            manifest_raw = _encode(entries, named, settings)
            write_file_durably(loc.join(version, MANIFEST), [memoryview(manifest_raw)])
        for written in entries.to_flush:
            fsync_dir(written)  # a zarr.json or a directory (fsync_dir opens it read-only)
        fsync_dir(loc.join(version))
        fsync_dir(loc.path)
        return manifest_raw
    manifest_raw = _encode(entries, named, settings)
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
