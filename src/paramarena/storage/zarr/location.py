"""Where a zarr checkpoint lives: a local directory or an fsspec URL.

Also the file operations the commit protocol needs: atomic small writes, listing, fsync and
removal of superseded versions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

from paramarena.errors import ConfigurationError
from paramarena.storage.fileio import temp_path, try_lock
from paramarena.storage.remote import remote_filesystem, split_network_options

__all__ = [
    "Location",
    "RemoteChunkObjects",
    "fsync_dir",
    "fsync_tree",
    "remote_concurrency",
    "remove_versions",
]


class Location:
    """A checkpoint root on local disk, or behind fsspec or obstore (``client``)."""

    def __init__(
        self, uri: str, storage_options: Mapping[str, Any] | None, client: str = "fsspec"
    ) -> None:
        self.uri = uri.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.client = client
        #: ``COMMIT`` as a load read it (a failed load compares it with a fresh read).
        self.seen_commit: bytes | None = None
        self.local = "://" not in uri or uri.startswith("file://")
        if self.local:
            if self.storage_options:
                raise ConfigurationError(
                    f"storage_options are for remote URLs; {uri!r} is a local path."
                )
            self.path = os.path.abspath(uri.removeprefix("file://"))
            self.fs: Any = None
        elif client == "obstore":
            from paramarena.storage.zarr.obstore import obstore_filesystem

            scheme, _, rest = self.uri.partition("://")
            self.fs = obstore_filesystem(scheme, self.storage_options, uri)
            self.path = rest
        else:
            self.fs, self.path = remote_filesystem(self.uri, self.storage_options)

    def close(self) -> None:
        """Nothing to release (a ``.zarr.zip`` root holds its archive open)."""

    def join(self, *parts: str) -> str:
        """Return the path (local) or fsspec path of ``parts`` below the root."""
        return "/".join([self.path, *parts]) if not self.local else os.path.join(self.path, *parts)

    def url(self, *parts: str) -> str:
        """Return the URL of ``parts`` below the root."""
        return "/".join([self.uri, *parts])

    def read_bytes(self, *parts: str) -> bytes | None:
        """Return the bytes of a file below the root, or None if it does not exist."""
        target = self.join(*parts)
        try:
            if self.local:
                from paramarena.storage.zarr.guard import read_regular_file

                return read_regular_file(self.path, target, "zarr checkpoint file")
            return bytes(self.fs.cat_file(target))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write a file atomically (local: temp file, fsync, rename, fsync of the directory)."""
        self._write(data, parts, durable=True)

    def put_bytes(self, data: bytes, *parts: str) -> None:
        """Write a file below the root without its own fsync (a local save fsyncs the tree)."""
        self._write(data, parts, durable=False)

    def _write(self, data: bytes, parts: Sequence[str], *, durable: bool) -> None:
        target = self.join(*parts)
        if not self.local:
            self.fs.pipe_file(target, data)  # one PUT: atomic per object
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not durable:
            with open(target, "wb") as f:
                f.write(data)
            return
        tmp = temp_path(target)
        try:
            with open(tmp, "xb") as f:
                try_lock(f.fileno())  # a live writer's temporary: remove_stale_temps keeps it
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(os.path.dirname(target))

    def list_dir(self, *parts: str) -> list[str]:
        """Return the sorted names in a directory below the root (empty if it does not exist)."""
        target = self.join(*parts)
        try:
            if self.local:
                return sorted(os.listdir(target))
            return sorted(
                p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(target, detail=False)
            )
        except (FileNotFoundError, NotADirectoryError):
            return []

    def remove_tree(self, *parts: str) -> None:
        """Delete a directory below the root and everything in it (missing: nothing happens)."""
        target = self.join(*parts)
        if self.local:
            import shutil

            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(target, recursive=True)

    def open_group(self, version: str) -> Any:
        """Open one version's zarr group for reading."""
        import zarr

        return zarr.open_group(store=self.store(version, read_only=True), mode="r")

    def store(self, version: str, read_only: bool) -> Any:
        """Return the zarr store of one version directory."""
        from zarr.storage import FsspecStore, LocalStore

        if self.local:
            return LocalStore(os.path.join(self.path, version), read_only=read_only)
        if self.client == "obstore":
            from paramarena.storage.zarr.obstore import obstore_filesystem

            scheme = self.uri.partition("://")[0]
            fs = obstore_filesystem(scheme, self.storage_options, self.uri, asynchronous=True)
            return FsspecStore(fs, path=self.join(version), read_only=read_only)
        if self.uri.partition("://")[0].lower() in ("s3", "s3a"):
            fs, path = remote_filesystem(self.url(version), self.storage_options, asynchronous=True)
            return FsspecStore(fs, path=path, read_only=read_only)
        _policy, options = split_network_options(self.storage_options, self.uri)
        return FsspecStore.from_url(self.url(version), storage_options=options, read_only=read_only)


def remote_concurrency(local: bool, concurrency: int) -> Any:
    """Context setting zarr's request concurrency, except on local disk (nothing to set)."""
    if local:
        return contextlib.nullcontext()
    import zarr

    return zarr.config.set({"async.concurrency": concurrency})


def remove_versions(loc: Location, versions: Sequence[str]) -> None:
    """Delete superseded version directories (never the committed one)."""
    for old in versions:
        loc.remove_tree(old)


class RemoteChunkObjects:
    """Chunk sink for object stores: up to ``concurrency`` chunk objects uploaded at once.

    Each chunk is joined into one ``bytes`` object (the only copy of the data a save makes) and
    sent with one fsspec ``pipe`` call per batch, which s3fs and the other async filesystems
    upload concurrently: peak extra memory is ``concurrency`` chunks.
    """

    def __init__(self, loc: Location, version: str, array: str, concurrency: int) -> None:
        self._fs = loc.fs
        self._prefix = loc.join(version, array, "c")
        self._concurrency = concurrency
        self._pending: dict[str, bytes] = {}

    def put(self, index: int, pieces: Sequence[memoryview]) -> None:
        """Queue chunk ``index``; upload the batch once ``concurrency`` chunks are queued.

        A target that takes the pieces as they are (``put_pieces``: a zip archive being written)
        gets them at once, without joining.
        """
        put_pieces = getattr(self._fs, "put_pieces", None)
        if put_pieces is not None:
            put_pieces(f"{self._prefix}/{index}", pieces)
            return
        self._pending[f"{self._prefix}/{index}"] = b"".join(pieces)
        if len(self._pending) >= self._concurrency:
            self.finish()

    def finish(self) -> None:
        """Upload every queued chunk."""
        if self._pending:
            batch, self._pending = self._pending, {}
            self._fs.pipe(batch)


def fsync_dir(path: str) -> None:
    """Flush a directory's entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str) -> None:
    """Flush every file and directory below ``path`` to disk."""
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)
