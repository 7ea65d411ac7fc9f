"""zarr checkpoints in one ``.zarr.zip`` file: the same layout, stored (uncompressed) in a zip.

Save builds an ordinary committed checkpoint in a temporary directory beside the target, packs it
into a temporary zip (``COMMIT`` as the last member), fsyncs it and renames it over the target:
the old archive stays complete until the new one replaces it in one step. Load opens the archive
read-only and holds it open (a load racing a save reads one archive; if the chunks it reads by
path come from the replacing archive, the load notices the replacement and starts again); the
chunks are read through zarr's ``ZipStore``, with every check of a directory checkpoint (commit
marker, manifest checksum, missing chunks, crc32c per chunk and parameter).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import zipfile
from collections.abc import Callable
from typing import Any

from paramarena.errors import ConfigurationError, CorruptCheckpointError, StorageError
from paramarena.storage.fileio import remove_stale_temps, temp_path, try_lock
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
        self.seen_commit: bytes | None = None
        self._names: set[str] = set()
        self._archive: zipfile.ZipFile | None = None
        self._identity: tuple[int, int] | None = None
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CorruptCheckpointError(
                f"zarr checkpoint {self.uri!r} is not a readable zip archive: {exc}."
            ) from None
        stat = os.fstat(handle.fileno())
        self._identity = (stat.st_dev, stat.st_ino)
        try:
            # held open: COMMIT and the manifest come from this one archive even if a save
            # replaces the file meanwhile (see replaced())
            self._archive = zipfile.ZipFile(handle, "r")
        except (zipfile.BadZipFile, OSError) as exc:
            handle.close()
            raise CorruptCheckpointError(
                f"zarr checkpoint {self.uri!r} is not a readable zip archive: {exc}."
            ) from None
        self._names = set(self._archive.namelist())

    def close(self) -> None:
        """Close the archive."""
        if self._archive is not None:
            handle = self._archive.fp
            self._archive.close()
            if handle is not None:
                handle.close()
            self._archive = None

    def replaced(self) -> bool:
        """Whether the path now names another file than the archive opened (a save replaced it)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return self._identity is not None and (stat.st_dev, stat.st_ino) != self._identity

    def join(self, *parts: str) -> str:
        """Return the member name of ``parts``."""
        return "/".join(parts)

    def read_bytes(self, *parts: str) -> bytes | None:
        """Return a member's bytes, or None if there is no such member."""
        name = self.join(*parts)
        if name not in self._names:
            return None
        assert self._archive is not None  # names are only known from an open archive
        try:
            return self._archive.read(name)
        except (zipfile.BadZipFile, OSError) as exc:
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

    Temporaries (``.<name>.<pid>-<random>.tmp.d`` and ``.tmp``) sit beside the target and are
    locked by this save; those of killed earlier saves are removed first. Free space needed:
    twice the new checkpoint's size (the directory, then the archive), plus the old archive.

    Parameters
    ----------
    uri : str
        Path (or ``file://`` URL) ending in ``.zarr.zip``.
    save_directory : callable
        Writes a complete, committed directory checkpoint at the path it is given.

    Raises
    ------
    paramarena.errors.StorageError
        Writing failed (disk full, ...): the message names the archive; no temporaries remain.
    """
    target = _local_path(uri)
    remove_stale_temps(target)
    packed = temp_path(target)
    directory = packed + ".d"
    try:
        # the archive's temporary is created (and locked) first: its lock covers the directory
        with open(packed, "xb") as handle:
            try_lock(handle.fileno())
            save_directory(directory)
            with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                members = []
                for root, _dirs, files in os.walk(directory):
                    for name in files:
                        full = os.path.join(root, name)
                        arcname = os.path.relpath(full, directory).replace(os.sep, "/")
                        members.append((arcname, full))
                members.sort(key=lambda m: (m[0] == "COMMIT", m[0]))  # the commit marker last
                for arcname, full in members:
                    archive.write(full, arcname)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(packed, target)
        fsync_dir(os.path.dirname(target))
    except OSError as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"cannot save zarr checkpoint {uri!r}: {exc}") from exc
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(packed)
