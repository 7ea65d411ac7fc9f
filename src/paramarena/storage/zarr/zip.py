"""zarr checkpoints in one ``.zarr.zip`` file: the same layout, stored (uncompressed) in a zip.

Save writes a temporary zip beside the target (locked by the saving process, ``COMMIT`` as the
last member), fsyncs it and renames it over the target: the old archive stays complete until the
new one replaces it in one step. Uncompressed checkpoints stream their chunks straight into the
archive (:func:`save_zip_streamed`: free space for the new archive only); compressed ones are
built as a directory checkpoint first (:func:`save_zip`: twice the new size). Load opens the
archive read-only and holds it open, so a load racing a save reads one archive (on Linux zarr
reads the chunks through ``/proc/self/fd`` of the held file; elsewhere a load whose chunks came
from a replacing archive notices the replacement and starts again). The chunks are read through
zarr's ``ZipStore``, with every check of a directory checkpoint (commit marker, manifest
checksum, missing chunks, crc32c per chunk and parameter).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

from paramarena.errors import ConfigurationError, CorruptCheckpointError, StorageError
from paramarena.storage.fileio import remove_stale_temps, temp_path, try_lock
from paramarena.storage.zarr.guard import ZIP_READ_ERRORS, check_zip_members
from paramarena.storage.zarr.location import Location, fsync_dir

__all__ = [
    "ZIP_SUFFIX",
    "ZipLocation",
    "ZipWriteLocation",
    "is_zip_uri",
    "save_zip",
    "save_zip_streamed",
]

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
        try:  # non-blocking: a FIFO in place of the archive must not block the open
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CorruptCheckpointError(
                f"zarr checkpoint {self.uri!r} is not a readable zip archive: {exc}."
            ) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise CorruptCheckpointError(
                f"zarr checkpoint {uri!r} is not a regular file (a zip archive was expected)."
            )
        handle = os.fdopen(fd, "rb")
        self._identity = (info.st_dev, info.st_ino)
        try:
            # held open: COMMIT and the manifest come from this one archive even if a save
            # replaces the file meanwhile (see replaced())
            archive = zipfile.ZipFile(handle, "r")
            check_zip_members(archive, info.st_size, uri)
        except ZIP_READ_ERRORS as exc:
            handle.close()
            raise CorruptCheckpointError(
                f"zarr checkpoint {self.uri!r} is not a readable zip archive: {exc}."
            ) from None
        except BaseException:
            handle.close()
            raise
        self._archive = archive
        self._names = set(archive.namelist())

    def infolist(self) -> list[zipfile.ZipInfo]:
        """Return the members of the archive this location holds open (none if missing)."""
        return [] if self._archive is None else self._archive.infolist()

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
            info = os.stat(self.path)
        except OSError:
            return False
        return self._identity is not None and (info.st_dev, info.st_ino) != self._identity

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

        source = self.path
        if self._archive is not None and self._archive.fp is not None:
            # Linux: the archive this location holds open, even if a save replaced the path
            held = f"/proc/self/fd/{self._archive.fp.fileno()}"
            if os.path.exists(held):
                source = held
        return zarr.open_group(store=ZipStore(source, mode="r"), path=version, mode="r")


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
        with _replacing_archive(uri, target, packed) as handle:
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
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class _ArchiveMembers:
    """The fsspec-like calls a checkpoint save makes, answered by a zip archive being written.

    Chunks (:meth:`put_pieces`) become members at once, streamed from the parameters' memory;
    the small documents (``zarr.json``, the manifest, ``COMMIT``) are kept until :meth:`finish`,
    which writes them with ``COMMIT`` last.
    """

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.documents: dict[str, bytes] = {}

    def put_pieces(self, path: str, pieces: Sequence[memoryview]) -> None:
        """Write member ``path`` from ``pieces`` (no joined copy)."""
        info = zipfile.ZipInfo(path, time.localtime()[:6])
        info.compress_type = zipfile.ZIP_STORED
        info.file_size = sum(p.nbytes for p in pieces)
        with self.archive.open(info, "w") as member:
            for piece in pieces:
                member.write(piece)

    def pipe(self, batch: Mapping[str, bytes]) -> None:
        """Write several members."""
        for path, data in batch.items():
            self.put_pieces(path, [memoryview(data)])

    def pipe_file(self, path: str, data: bytes) -> None:
        """Keep a small document until :meth:`finish`."""
        self.documents[path] = bytes(data)

    def cat_file(self, path: str) -> bytes:
        """Return a document written so far."""
        try:
            return self.documents[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    def ls(self, path: str, detail: bool = False) -> list[str]:
        """Nothing to list: the archive is new (no earlier versions to clean up)."""
        return []

    def rm(self, path: str, recursive: bool = False) -> None:
        """Nothing to remove: a failed save discards the whole temporary archive."""

    def finish(self) -> None:
        """Write the documents, ``COMMIT`` last."""
        for path in sorted(self.documents, key=lambda p: (p == "COMMIT", p)):
            self.put_pieces(path, [memoryview(self.documents[path])])


class ZipWriteLocation(Location):
    """A checkpoint root inside a zip archive being written (the write side of a save)."""

    def __init__(self, uri: str, archive: zipfile.ZipFile) -> None:
        self.uri = uri
        self.storage_options = {}
        self.client = "fsspec"
        self.local = False
        self.seen_commit = None
        self.path = ""
        self.members = _ArchiveMembers(archive)
        self.fs = self.members

    def join(self, *parts: str) -> str:
        """Return the member name of ``parts``."""
        return "/".join(parts)


def save_zip_streamed(uri: str, save_into: Callable[[Location], None]) -> None:
    """Write a checkpoint archive at ``uri`` atomically, streaming chunks into it.

    ``save_into`` writes and commits a checkpoint at the :class:`ZipWriteLocation` it is given;
    its chunks go straight into a temporary archive beside the target (no temporary directory),
    which is fsynced and renamed over the target. Free space needed: the new archive's size, plus
    the old archive until the rename.

    Raises
    ------
    paramarena.errors.StorageError
        Writing failed (disk full, ...): the message names the archive; no temporaries remain.
    """
    target = _local_path(uri)
    remove_stale_temps(target)
    with (
        _replacing_archive(uri, target, temp_path(target)) as handle,
        zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
    ):
        loc = ZipWriteLocation(uri, archive)
        save_into(loc)
        loc.members.finish()


@contextlib.contextmanager
def _replacing_archive(uri: str, target: str, packed: str) -> Iterator[IO[bytes]]:
    """Yield the locked temporary archive ``packed``; then fsync it and rename it to ``target``.

    The temporary is locked while written (``remove_stale_temps`` of other saves keeps it) and
    removed on any failure; an ``OSError`` becomes a ``StorageError`` naming the archive.
    """
    try:
        with open(packed, "xb") as handle:
            try_lock(handle.fileno())
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(packed, target)
        fsync_dir(os.path.dirname(target))
    except OSError as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"cannot save zarr checkpoint {uri!r}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(packed)
