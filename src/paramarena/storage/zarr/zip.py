"""zarr checkpoints in one ``.zarr.zip`` file: the same layout, stored (uncompressed) in a zip.

Save builds an ordinary committed checkpoint in a temporary directory beside the target, packs it
into a temporary zip (``COMMIT`` as the last member), fsyncs it and renames it over the target:
the old archive stays complete until the new one replaces it in one step. Load opens the archive
read-only; the chunks are read through zarr's ``ZipStore``, with every check of a directory
checkpoint (commit marker, manifest checksum, missing chunks, crc32c per chunk and parameter).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import zipfile
from collections.abc import Callable
from typing import Any

from paramarena.errors import ConfigurationError, CorruptCheckpointError
from paramarena.storage.zarr.guard import ZIP_READ_ERRORS, check_zip_members
from paramarena.storage.zarr.location import fsync_dir

__all__ = ["ZIP_SUFFIX", "ZipLocation", "is_zip_uri", "save_zip"]

ZIP_SUFFIX = ".zarr.zip"


def is_zip_uri(uri: str) -> bool:
    """Return whether ``uri`` names a ``.zarr.zip`` archive."""
    return uri.lower().rstrip("/").endswith(ZIP_SUFFIX)


def _local_path(uri: str) -> str:
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigurationError(
            f"{ZIP_SUFFIX} archives are local files; {uri!r} is a remote URL (save a .zarr "
            "checkpoint to object storage instead: it is chunked and needs no archive)."
        )
    return os.path.abspath(uri.removeprefix("file://"))


class ZipLocation:
    """A checkpoint root inside a ``.zarr.zip`` archive (read-only).

    Offers the read side of :class:`paramarena.storage.zarr.location.Location`: ``read_bytes``,
    ``list_dir`` and ``open_group``. A missing archive behaves as an empty root.
    """

    local = False

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = _local_path(uri)
        self._names: set[str] = set()
        if os.path.exists(self.path):
            if not stat.S_ISREG(os.stat(self.path).st_mode):  # a FIFO would block the open
                raise CorruptCheckpointError(
                    f"zarr checkpoint {uri!r} is not a regular file (a zip archive was expected)."
                )
            try:
                with self._open() as archive:
                    check_zip_members(archive, os.path.getsize(self.path), uri)
                    self._names = set(archive.namelist())
            except ZIP_READ_ERRORS as exc:
                raise CorruptCheckpointError(
                    f"zarr checkpoint {uri!r} is not a readable zip archive: {exc}."
                ) from None

    def _open(self) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(self.path, "r")
        except ZIP_READ_ERRORS as exc:
            raise CorruptCheckpointError(
                f"zarr checkpoint {self.uri!r} is not a readable zip archive: {exc}."
            ) from None

    def join(self, *parts: str) -> str:
        """Return the member name of ``parts``."""
        return "/".join(parts)

    def read_bytes(self, *parts: str) -> bytes | None:
        """Return a member's bytes, or None if there is no such member."""
        name = self.join(*parts)
        if name not in self._names:
            return None
        try:
            with self._open() as archive:
                return archive.read(name)
        except ZIP_READ_ERRORS as exc:
            raise CorruptCheckpointError(
                f"zarr checkpoint {self.uri!r}: member {name!r} cannot be read: {exc}."
            ) from None

    def list_dir(self, *parts: str) -> list[str]:
        """Return the sorted names directly below ``parts`` in the archive."""
        prefix = self.join(*parts) + "/" if parts else ""
        children = {n[len(prefix) :].split("/", 1)[0] for n in self._names if n.startswith(prefix)}
        return sorted(c for c in children if c)

    def open_group(self, version: str) -> Any:
        """Open one version's zarr group inside the archive (read-only)."""
        import zarr
        from zarr.storage import ZipStore

        return zarr.open_group(store=ZipStore(self.path, mode="r"), path=version, mode="r")


def save_zip(uri: str, save_directory: Callable[[str], None]) -> None:
    """Write a checkpoint archive at ``uri`` atomically.

    Parameters
    ----------
    uri : str
        Path (or ``file://`` URL) ending in ``.zarr.zip``.
    save_directory : callable
        Writes a complete, committed directory checkpoint at the path it is given.
    """
    target = _local_path(uri)
    tag = secrets.token_hex(4)
    directory = f"{target}.tmp-{tag}.d"
    packed = f"{target}.tmp-{tag}"
    try:
        save_directory(directory)
        with zipfile.ZipFile(packed, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            members = []
            for root, _dirs, files in os.walk(directory):
                for name in files:
                    full = os.path.join(root, name)
                    members.append((os.path.relpath(full, directory).replace(os.sep, "/"), full))
            members.sort(key=lambda m: (m[0] == "COMMIT", m[0]))  # the commit marker last
            for arcname, full in members:
                archive.write(full, arcname)
        with open(packed, "rb") as f:
            os.fsync(f.fileno())
        os.replace(packed, target)
        fsync_dir(os.path.dirname(target))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(packed)
