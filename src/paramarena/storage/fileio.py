"""Single-file I/O shared by the file-based storage backends (npz, MXNet ``.params``).

- :func:`atomic_write` writes a file so that readers see either the old file or the complete
  new one: a temporary file in the same directory, ``fsync``, ``os.replace``, ``fsync`` of the
  directory. Remote URLs (``s3://...`` through fsspec) are written as one object, which object
  stores publish atomically.
- :func:`open_read` opens a local path or URL for reading as a seekable binary file and gives
  its size, turning "no such file" into :class:`~paramarena.errors.StorageError`.

Every error names the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from paramarena.errors import ConfigurationError, StorageError

__all__ = [
    "atomic_write",
    "is_remote",
    "local_path",
    "open_read",
    "progress_reporter",
    "split_scheme",
]


def split_scheme(uri: str) -> tuple[str, str]:
    r"""Split ``"s3://bucket/key"`` into ``("s3", "bucket/key")``; plain paths give ``("", uri)``.

    Windows drive letters (``C:\\...``) are not schemes.
    """
    head, sep, rest = uri.partition("://")
    if sep and len(head) > 1 and head.replace("+", "").replace("-", "").isalnum():
        return head.lower(), rest
    return "", uri


def local_path(uri: str) -> str | None:
    """Return the local filesystem path of ``uri`` (plain path or ``file://``), else ``None``."""
    scheme, rest = split_scheme(uri)
    if scheme == "":
        return uri
    if scheme == "file":
        return rest if rest.startswith("/") else "/" + rest
    return None


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names something that is not a local file."""
    return local_path(uri) is None


def _remote_fs(uri: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec comes with zarr
        raise StorageError(
            f"cannot open {uri!r}: remote URLs need fsspec (pip install 'paramarena[s3]')"
        ) from exc
    try:
        fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise StorageError(f"cannot open {uri!r}: {exc}") from exc
    return fs, path


@contextlib.contextmanager
def open_read(
    uri: str, storage_options: Mapping[str, Any] | None = None
) -> Iterator[tuple[IO[bytes], int]]:
    """Open ``uri`` for reading; yield ``(binary file, size in bytes)``.

    Parameters
    ----------
    uri : str
        Local path, ``file://`` URL, or any fsspec URL (``s3://``, ``memory://``, ...).
    storage_options : mapping, optional
        Passed to fsspec for remote URLs.

    Raises
    ------
    paramarena.errors.StorageError
        The file does not exist, is a directory, or cannot be opened.
    """
    path = local_path(uri)
    if path is not None:
        if storage_options:
            raise ConfigurationError(
                f"storage_options are for remote URLs only; {uri!r} is a local path"
            )
        try:
            # non-blocking, so that a FIFO or device in place of the file cannot block the open
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise StorageError(f"checkpoint file {uri!r} does not exist") from None
        except IsADirectoryError:
            raise StorageError(f"checkpoint {uri!r} is a directory, not a file") from None
        except OSError as exc:
            raise StorageError(f"cannot open checkpoint file {uri!r}: {exc}") from exc
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise StorageError(f"checkpoint {uri!r} is {what}, not a checkpoint file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
        with fh:
            yield fh, os.fstat(fh.fileno()).st_size
        return
    fs, rpath = _remote_fs(uri, storage_options)
    try:
        size = int(fs.size(rpath))
        rfh = fs.open(rpath, "rb")
    except FileNotFoundError:
        raise StorageError(f"checkpoint object {uri!r} does not exist") from None
    except OSError as exc:
        raise StorageError(f"cannot open checkpoint {uri!r}: {exc}") from exc
    with rfh:
        yield rfh, size


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(uri: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[IO[bytes]]:
    """Yield a binary file whose content replaces ``uri`` only when the block ends cleanly.

    Local files: the data goes to a hidden temporary file in the same directory, which is
    flushed, ``fsync``-ed and renamed over ``uri`` with ``os.replace``; the directory is then
    ``fsync``-ed. If the block raises, the temporary file is removed and ``uri`` is untouched.
    Remote URLs: the data is buffered in memory and written as one object at the end.

    Parameters
    ----------
    uri : str
        Destination path or URL.
    storage_options : mapping, optional
        Passed to fsspec for remote URLs.

    Raises
    ------
    paramarena.errors.StorageError
        The directory does not exist or is not writable, or the write fails.
    """
    path = local_path(uri)
    if path is None:
        fs, rpath = _remote_fs(uri, storage_options)
        buffer = io.BytesIO()
        yield buffer
        try:
            fs.pipe_file(rpath, buffer.getvalue())
        except OSError as exc:
            raise StorageError(f"cannot write checkpoint {uri!r}: {exc}") from exc
        return
    if storage_options:
        raise ConfigurationError(
            f"storage_options are for remote URLs only; {uri!r} is a local path"
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StorageError(f"cannot write checkpoint {uri!r}: directory {directory!r} is missing")
    if os.path.isdir(path):
        raise StorageError(f"cannot write checkpoint {uri!r}: a directory of that name exists")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        fh = open(tmp, "xb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StorageError(f"cannot write checkpoint {uri!r}: {exc}") from exc
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise StorageError(f"cannot write checkpoint {uri!r}: {exc}") from exc
        raise
    _fsync_dir(directory)


@contextlib.contextmanager
def progress_reporter(
    total_bytes: int, desc: str, enabled: bool | None
) -> Iterator[Callable[[int], None]]:
    """Yield a function to call with the bytes done; a no-op when progress is off.

    Uses :func:`paramarena.storage.progress.progress_bar` when it is available (``enabled=None``:
    on for large transfers on a terminal).
    """
    if enabled is False:
        yield _ignore
        return
    try:
        from paramarena.storage.progress import progress_bar  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - progress is part of the package
        yield _ignore
        return
    with progress_bar(total_bytes, desc, enabled) as update:
        yield update


def _ignore(_done: int) -> None:
    return None
