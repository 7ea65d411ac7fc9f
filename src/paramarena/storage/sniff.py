"""Telling a checkpoint's format from its content (MXNet loads any file name, so do we).

Loading asks, in order: the plugins' ``paramarena_sniff_format(head, uri)`` hook, then the
built-in rules below; the path suffix is only a hint, used when the content says nothing
(a missing file, a remote URL, an uncommitted zarr directory).

Built-in rules:

- MXNet ``.params`` / ``nd.save``: the first 8 bytes are the list magic ``0x112`` (u64 LE).
- safetensors: a u64 LE header length ``N`` (``N + 8`` within the data) followed by ``{``.
- a zip archive (a local file header, or the end record of an empty zip): a zarr checkpoint when
  a member is ``zarr.json`` or ``COMMIT`` (at the root or one level down), else npz when every
  member ends in ``.npy``.
- a directory holding ``COMMIT`` or ``zarr.json``: a zarr checkpoint.

A detected format is used only if a backend of that name is registered.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Callable

from paramarena.storage.fileio import local_path

__all__ = ["HEAD_BYTES", "detect_local", "is_local_zip_file", "sniff_bytes", "sniff_head"]

#: How many leading bytes sniffers receive.
HEAD_BYTES = 64

_MXNET_MAGIC = struct.pack("<Q", 0x112)
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_ZARR_MARKERS = ("zarr.json", "COMMIT")


def _zip_format(names: list[str]) -> str | None:
    for name in names:
        parts = name.strip("/").split("/")
        if parts[-1] in _ZARR_MARKERS and len(parts) <= 2:
            return "zarr"
    if all(name.endswith(".npy") for name in names):
        return "npz"
    return None


def _safetensors(head: bytes, size: int | None) -> bool:
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return length >= 2 and (size is None or length + 8 <= size)


def sniff_head(
    head: bytes, size: int | None, zip_names: Callable[[], list[str] | None]
) -> str | None:
    """Apply the built-in rules to a file's first bytes.

    Parameters
    ----------
    head : bytes
        The first :data:`HEAD_BYTES` bytes (fewer for a short file).
    size : int or None
        The whole file's size, if known.
    zip_names : callable
        Returns the member names when the content is a zip archive (``None`` if unreadable).

    Returns
    -------
    str or None
        ``"mxnet"``, ``"safetensors"``, ``"zarr"``, ``"npz"``, or ``None`` if unknown.
    """
    if head[:8] == _MXNET_MAGIC:
        return "mxnet"
    if head[:4] in _ZIP_MAGICS:
        names = zip_names()
        return None if names is None else _zip_format(names)
    if _safetensors(head, size):
        return "safetensors"
    return None


def _names_of(source: str | io.BytesIO) -> list[str] | None:
    try:
        with zipfile.ZipFile(source) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):  # "zip version 6.4"
        return None


def sniff_bytes(data: bytes) -> str | None:
    """Return the built-in format name of a whole checkpoint held in ``data``, or None."""
    return sniff_head(data[:HEAD_BYTES], len(data), lambda: _names_of(io.BytesIO(data)))


def detect_local(uri: str, hook: Callable[[bytes, str], str | None] | None = None) -> str | None:
    """Return the format of the local file or directory ``uri`` from its content, or None.

    ``hook(head, uri)`` (the plugins' sniffers) is asked first for a file. Remote URLs and
    missing paths give None.
    """
    path = local_path(uri)
    if path is None:
        return None
    if os.path.isdir(path):
        if any(os.path.isfile(os.path.join(path, m)) for m in _ZARR_MARKERS):
            return "zarr"
        return None
    if not os.path.isfile(path):  # a FIFO or device: never opened here (it could block)
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    if hook is not None:
        found = hook(head, uri)
        if found is not None:
            return found
    return sniff_head(head, size, lambda: _names_of(path))


def is_local_zip_file(uri: str) -> bool:
    """Return whether ``uri`` is an existing local file that starts like a zip archive."""
    path = local_path(uri)
    if path is None or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in _ZIP_MAGICS
    except OSError:
        return False
