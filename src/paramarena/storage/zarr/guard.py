"""Checks of a committed zarr checkpoint version against what is really stored, before reading.

:func:`check_version` validates every ``zarr.json`` of the version (schemas in
:mod:`paramarena.storage.zarr.validate`), that each parameter lies inside its packed array, and
that the chunk objects present can back the sizes the metadata declares: an array never claims
more chunks than exist (a few missing ones are reported per parameter by the reader), and a
chunk never claims more bytes than its objects hold (zstd chunks: more than zstd's largest
expansion). On local disk it also refuses symbolic links that leave the checkpoint and anything
that is not a regular file where a chunk should be (a FIFO would block a read forever).

:func:`read_regular_file` is how local documents (``COMMIT``, ``manifest.json``) are read: never
through a link out of the checkpoint, never blocking on a FIFO or device.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

from paramarena.errors import CorruptCheckpointError, StorageError
from paramarena.storage.zarr import validate

__all__ = [
    "MAX_MISSING_CHUNKS",
    "ZIP_READ_ERRORS",
    "ZSTD_MAX_EXPANSION",
    "check_version",
    "check_zip_members",
    "inside",
    "open_group",
    "read_regular_file",
    "zarr_node",
]

#: What reading a damaged zip archive can raise inside :mod:`zipfile` (besides BadZipFile).
ZIP_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,  # also UnicodeDecodeError
    KeyError,
    NotImplementedError,  # "zip file version 25.5", "compressed patched data"
    RuntimeError,  # "File ... is encrypted, password required"
    OverflowError,
    struct.error,
    zlib.error,
)

#: Chunks an array may lack and still be read (the parameters they hold are reported missing).
MAX_MISSING_CHUNKS = 16
#: zstd cannot expand a frame by more than this (an RLE block: 3 bytes for 128 KiB).
ZSTD_MAX_EXPANSION = 2**16


def inside(root: str, path: str) -> bool:
    """Whether ``path``, with every symbolic link resolved, is ``root`` or below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def read_regular_file(root: str, path: str, what: str) -> bytes | None:
    """Read a local file below ``root``; None when it does not exist.

    Raises
    ------
    paramarena.errors.CorruptCheckpointError
        ``path`` leads out of ``root`` through a symbolic link, or is not a regular file.
    """
    if not os.path.lexists(path):
        return None
    if not inside(root, path):
        raise CorruptCheckpointError(f"{what} {path!r} is a link leading out of the checkpoint")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        raise CorruptCheckpointError(f"{what} {path!r} is a directory, not a file") from None
    except OSError as exc:
        raise CorruptCheckpointError(f"{what} {path!r} cannot be opened: {exc}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CorruptCheckpointError(f"{what} {path!r} is not a regular file")
        return f.read()


def _chunk_objects(loc: Any, version: str, array: str) -> dict[int, int]:
    """Return ``{chunk index: stored size}`` of the chunk objects present for ``array``."""
    found: dict[int, int] = {}
    if getattr(loc, "local", False):
        directory = loc.join(version, array, "c")
        if not os.path.lexists(directory):
            return found
        if os.path.islink(directory) or not os.path.isdir(directory):
            raise CorruptCheckpointError(
                f"zarr checkpoint {loc.uri!r}: {directory!r} is not a plain directory"
            )
        with os.scandir(directory) as it:
            for entry in it:
                if not entry.name.isdecimal():
                    continue
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    kind = "a symbolic link" if entry.is_symlink() else "not a regular file"
                    raise CorruptCheckpointError(
                        f"zarr checkpoint {loc.uri!r}: chunk {entry.path!r} is {kind}"
                    )
                found[int(entry.name)] = st.st_size
        return found
    if hasattr(loc, "_names"):  # a .zarr.zip archive
        prefix = f"{version}/{array}/c/"
        try:  # the archive the location holds open: a save replacing the path cannot interfere
            for info in loc.infolist():
                rest = info.filename[len(prefix) :]
                if info.filename.startswith(prefix) and rest.isdecimal():
                    found[int(rest)] = info.file_size
        except ZIP_READ_ERRORS as exc:
            raise CorruptCheckpointError(
                f"zarr checkpoint {loc.uri!r} is not a readable zip archive: {exc}"
            ) from None
        return found
    with contextlib.suppress(FileNotFoundError):
        for info in loc.fs.ls(loc.join(version, array, "c"), detail=True):
            name = str(info.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
            if name.isdecimal():
                found[int(name)] = int(info.get("size") or 0)
    return found


_MISSING = object()


def _document(loc: Any, where: str, *parts: str) -> Any:
    """Return the parsed JSON document at ``parts``, or ``_MISSING`` when there is none."""
    raw = loc.read_bytes(*parts)
    if raw is None:
        return _MISSING
    return validate.parse_json(raw, where)


def _check_backed(
    uri: str, array: str, meta: validate.ArrayMetadata, sizes: Mapping[int, int]
) -> None:
    where = f"zarr checkpoint {uri!r}: packed array {array!r}"
    present = [k for k in sizes if k < meta.n_chunks]
    if meta.n_chunks > len(present) + MAX_MISSING_CHUNKS:
        raise CorruptCheckpointError(
            f"{where} declares {meta.count} elements in {meta.n_chunks} chunks but only "
            f"{len(present)} chunk objects exist"
        )
    if meta.count == 0:
        return
    if not present:
        raise CorruptCheckpointError(
            f"{where}: all of its {meta.n_chunks} chunk(s) are missing (nothing stored backs its "
            f"{meta.count} elements)"
        )
    largest = max(sizes[k] for k in present)
    chunk_bytes = meta.chunk * meta.itemsize
    limit = largest * ZSTD_MAX_EXPANSION if meta.compressed else largest - 4
    if chunk_bytes > max(limit, 0):
        raise CorruptCheckpointError(
            f"{where} declares chunks of {chunk_bytes} bytes but its largest chunk object holds "
            f"{largest} bytes"
        )


def check_version(loc: Any, version: str, manifest: validate.Manifest) -> None:
    """Validate one committed version's zarr metadata against its manifest and stored objects.

    Parameters
    ----------
    loc : Location or ZipLocation
        The checkpoint root.
    version : str
        The committed version (a plain name, already validated).
    manifest : validate.Manifest
        Its validated manifest.

    Raises
    ------
    paramarena.errors.CorruptCheckpointError
        A document is malformed, a parameter lies outside its array, the stored objects cannot
        back the declared sizes, or (local disk) the version leaves the checkpoint or holds
        something other than regular files where chunks belong.
    """
    uri = loc.uri
    named = dict.fromkeys(manifest.arrays)  # each packed array once, in stored order
    # the dtype of each array's first parameter (check_entries_fit checks the others)
    dtypes = dict(zip(manifest.arrays[::-1], manifest.dtypes[::-1], strict=True))
    if getattr(loc, "local", False):
        for parts in [(version,), *((version, a) for a in named)]:
            path = loc.join(*parts)
            if os.path.lexists(path) and (os.path.islink(path) or not inside(loc.path, path)):
                raise CorruptCheckpointError(
                    f"zarr checkpoint {uri!r}: {path!r} is a symbolic link; refusing to follow it"
                )
    where = f"zarr checkpoint {uri!r}: {version}/zarr.json"
    group = _document(loc, where, version, "zarr.json")
    if group is _MISSING:
        raise CorruptCheckpointError(f"{where} is missing")
    validate.group_metadata(group, where)
    arrays: dict[str, validate.ArrayMetadata] = {}
    for array in named:
        where = f"zarr checkpoint {uri!r}: {version}/{array}/zarr.json"
        document = _document(loc, where, version, array, "zarr.json")
        if document is _MISSING:
            continue  # the reader reports the array's parameters as missing
        meta = validate.array_metadata(document, where, validate.storage_dtype_name(dtypes[array]))
        _check_backed(uri, array, meta, _chunk_objects(loc, version, array))
        arrays[array] = meta
    validate.check_entries_fit(manifest, arrays, f"zarr checkpoint {uri!r}: manifest of {version}")


def open_group(loc: Any, version: str) -> Any:
    """Open a version's zarr group (validated first); zarr's own errors become corruption."""
    try:
        return loc.open_group(version)
    except Exception as exc:  # zarr / zipfile / fsspec raise many types for damaged stores
        if isinstance(exc, StorageError):
            raise
        raise CorruptCheckpointError(
            f"zarr checkpoint {loc.uri!r}: version {version!r} cannot be opened as a zarr group: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def zarr_node(group: Any, name: str) -> Any:
    """Return ``group[name]``: KeyError when absent; metadata zarr refuses is corruption."""
    try:
        return group[name]
    except KeyError:
        raise
    except Exception as exc:  # validated first: this is a safety net
        raise CorruptCheckpointError(
            f"packed array {name!r} cannot be opened by zarr: {type(exc).__name__}: {exc}"
        ) from exc


def check_zip_members(archive: zipfile.ZipFile, archive_size: int, uri: str) -> None:
    """Check that every member's declared sizes fit in the archive, before any is read.

    zipfile reads a member's declared compressed size in one call, so a central directory
    claiming a gigabyte in a kilobyte archive would allocate the gigabyte.
    """
    for info in archive.infolist():
        stored = info.compress_type == zipfile.ZIP_STORED
        if (
            info.header_offset + info.compress_size > archive_size
            or (stored and info.file_size != info.compress_size)
            or info.file_size > info.compress_size * ZSTD_MAX_EXPANSION + 1024
        ):
            raise CorruptCheckpointError(
                f"zarr checkpoint {uri!r}: member {info.filename!r} claims {info.file_size} "
                f"bytes ({info.compress_size} stored) in a {archive_size}-byte archive"
            )
