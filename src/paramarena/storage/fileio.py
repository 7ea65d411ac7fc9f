"""Single-file I/O shared by the file-based storage backends (npz, MXNet ``.params``).

- :func:`atomic_write` writes a file so that readers see either the old file or the complete
  new one: a temporary file in the same directory, ``fsync``, ``os.replace``, ``fsync`` of the
  directory. Remote URLs (``s3://...`` through fsspec) are written as one object, which object
  stores publish atomically. ``durable=False`` (checked by :func:`durable_option`) keeps the
  temporary file and the rename but skips both ``fsync`` calls: atomic, not durable.
- :func:`open_read` opens a local path or URL for reading as a seekable binary file and gives
  its size, turning "no such file" into :class:`~paramarena.errors.StorageError`.
- :func:`temp_path` names a writer's temporary file beside its target
  (``.<name>.<pid>-<random>.tmp``); the writer holds an ``flock`` on it while it writes
  (:func:`try_lock`), and :func:`remove_stale_temps` deletes the temporaries a killed save left
  behind: only those whose lock is free and whose writer process is gone (or that are older than
  a grace period), never a live writer's.

Every error names the file.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import re
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from paramarena.errors import ConfigurationError, StorageError
from paramarena.storage.remote import remote_errors, remote_filesystem

__all__ = [
    "atomic_write",
    "durable_option",
    "is_remote",
    "local_path",
    "open_read",
    "preallocate",
    "progress_reporter",
    "remove_stale_temps",
    "split_scheme",
    "start_writeback",
    "temp_path",
    "try_lock",
    "writeback_starter",
]

#: Seconds after which a temporary file of a save whose lock is free is removed even when its
#: writer's process id is still in use (a reused id, or a writer on another host).
DEFAULT_TEMP_GRACE = 3600.0


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
    return remote_filesystem(uri, storage_options)


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
    with remote_errors(uri, "open checkpoint"):  # network, bucket, access: errors naming uri
        try:
            size = int(fs.size(rpath))
            rfh = fs.open(rpath, "rb")
        except FileNotFoundError as exc:
            if "bucket" in str(exc).lower():
                raise  # remote_errors names the bucket
            raise StorageError(f"checkpoint object {uri!r} does not exist") from None
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


#: ``start(fd, offset, nbytes)`` bound to libc's ``sync_file_range`` once looked up (None where
#: there is none); a list so that it is looked up once and tests can replace it.
_WRITEBACK: list[Callable[[int, int, int], Any] | None] = []
_SYNC_FILE_RANGE_WRITE = 2


def writeback_starter() -> Callable[[int, int, int], Any] | None:
    """Return ``start(fd, offset, nbytes)``, asynchronous writeback of a range, or None.

    Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, looked up once; None where the call does
    not exist (other systems), so that a writer can skip the batching that only serves it.
    """
    if not _WRITEBACK:
        func = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                func = ctypes.CDLL(None, use_errno=True).sync_file_range
                func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                func.restype = ctypes.c_int
            except (OSError, AttributeError):  # pragma: no cover - libc without the call
                func = None
        _WRITEBACK.append(None if func is None else functools.partial(_start, func))
    return _WRITEBACK[0]


def _start(func: Any, fd: int, offset: int, nbytes: int) -> Any:
    return func(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to start writing ``nbytes`` at ``offset`` of ``fd`` to disk; don't wait.

    Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``: the dirty pages are queued for writeback
    now, so that a later ``fsync`` finds most of them written. It is no durability guarantee by
    itself (the ``fsync`` still follows); a no-op where the call does not exist or fails.
    """
    start = writeback_starter()
    if start is not None:
        start(fd, offset, nbytes)


#: ``fallocate(fd, offset, nbytes)`` bound to libc's ``fallocate`` (mode 0) once looked up.
_FALLOCATE: list[Callable[[int, int, int], int] | None] = []


def _fallocate_call() -> Callable[[int, int, int], int] | None:
    if not _FALLOCATE:
        func = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                func = ctypes.CDLL(None, use_errno=True).fallocate
                func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
                func.restype = ctypes.c_int
            except (OSError, AttributeError):  # pragma: no cover - libc without the call
                func = None
        _FALLOCATE.append(None if func is None else functools.partial(_allocate, func))
    return _FALLOCATE[0]


def _allocate(func: Any, fd: int, offset: int, nbytes: int) -> int:
    return int(func(fd, 0, offset, nbytes))


def preallocate(fd: int, nbytes: int) -> bool:
    """Allocate the first ``nbytes`` of the file ``fd`` on disk now; return whether it was done.

    Linux ``fallocate`` (mode 0): the blocks are reserved in one go, so that the writes that
    follow copy into the page cache without allocating per page (on ext4 about a quarter less
    time per byte), and the file is at least ``nbytes`` long afterwards (its unwritten part
    reads as zeros). Pass only bytes that will be written: the file's final size must be at
    least ``nbytes``. Nothing is emulated: where the call does not exist or the filesystem
    refuses it (``EOPNOTSUPP``, ...), nothing happens and False is returned.
    """
    call = _fallocate_call()
    if call is None or nbytes <= 0:
        return False
    return call(fd, 0, nbytes) == 0


def temp_path(path: str, suffix: str = ".tmp") -> str:
    """Return a fresh temporary name beside ``path``: ``.<name>.<pid>-<12 hex><suffix>``."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{os.getpid()}-{secrets.token_hex(6)}{suffix}")


def try_lock(fd: int) -> bool | None:
    """Take an exclusive ``flock`` on ``fd`` without waiting.

    Returns
    -------
    bool or None
        True when taken (it lasts until ``fd`` is closed), False when another open file holds
        it, None when this platform or filesystem has no ``flock`` (nothing can be told).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None
    return True


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists on this host (False when it cannot be told)."""
    if sys.platform == "win32" or pid <= 0:  # pragma: no cover - os.kill(pid, 0) kills there
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def remove_stale_temps(path: str, grace: float = DEFAULT_TEMP_GRACE) -> list[str]:
    """Delete temporaries of :func:`temp_path` beside ``path`` that a killed save left behind.

    A temporary (file, or directory ending in ``.tmp.d``, whose lock is that of the file without
    ``.d`` while it exists) is stale when nobody holds its lock
    and its writer process no longer exists on this host, or when nobody holds its lock and it
    is older than ``grace`` seconds. A live writer holds its lock, so its temporary is never
    touched. Errors are ignored (best effort).

    Returns
    -------
    list of str
        The removed paths.
    """
    directory, name = os.path.split(os.path.abspath(path))
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    prefix = f".{name}."  # cheap filter: most saves find no temporary, and compile no pattern
    candidates = [entry for entry in entries if entry.startswith(prefix)]
    if not candidates:
        return []
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+)-[0-9a-f]{{12}}\.tmp(\.d)?")
    removed = []
    for entry in candidates:
        match = pattern.fullmatch(entry)
        if match is None:
            continue
        full = os.path.join(directory, entry)
        # a temporary directory ``X.tmp.d`` belongs to the writer of ``X.tmp`` when that exists
        lock_path = full[: -len(".d")] if match[2] and os.path.exists(full[: -len(".d")]) else full
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except OSError:
            continue
        try:
            locked = try_lock(fd)
            age = time.time() - os.fstat(fd).st_mtime
            stale = locked is not False and (
                age > grace or (locked is True and _process_gone(int(match[1])))
            )
            if stale:
                if match[2]:
                    shutil.rmtree(full, ignore_errors=True)
                else:
                    os.unlink(full)
                removed.append(full)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def durable_option(uri: str, options: Mapping[str, Any]) -> bool:
    """Return the ``durable`` save option of ``options`` (default True), checked.

    Raises
    ------
    paramarena.errors.ConfigurationError
        The value is not ``True`` or ``False`` (``"no"``, ``0``, ``None``, ... are refused:
        a typo must not silently pick either mode).
    """
    value = options.get("durable", True)
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"durable must be True or False; got {value!r} saving {uri!r} "
            "(durable=False: atomic but not flushed to disk, see docs/storage.md)"
        )
    return value


@contextlib.contextmanager
def atomic_write(
    uri: str, storage_options: Mapping[str, Any] | None = None, *, durable: bool = True
) -> Iterator[IO[bytes]]:
    """Yield a binary file whose content replaces ``uri`` only when the block ends cleanly.

    Local files: the data goes to a hidden temporary file in the same directory, which is
    flushed, ``fsync``-ed and renamed over ``uri`` with ``os.replace``; the directory is then
    ``fsync``-ed. If the block raises, the temporary file is removed and ``uri`` is untouched.
    The writer holds a lock on its temporary file; temporaries of earlier saves of ``uri`` that
    were killed are removed first (:func:`remove_stale_temps`).
    Remote URLs: the data is buffered in memory and written as one object at the end.

    Parameters
    ----------
    uri : str
        Destination path or URL.
    storage_options : mapping, optional
        Passed to fsspec for remote URLs.
    durable : bool, default True
        False skips the two ``fsync`` calls (file and directory) of a local file and nothing
        else: the temporary file, the lock and the rename stay, so a process that dies at any
        point still leaves the old file or the complete new one, but after a power loss or an
        operating-system crash the file may be the old one, or the new one with its data not
        (completely) on disk. Remote URLs ignore it: an object store has the object durably
        once it acknowledges the write.

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
        with remote_errors(uri, "write checkpoint"):
            fs.pipe_file(rpath, buffer.getvalue())
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
    remove_stale_temps(path)
    tmp = temp_path(path)
    try:
        fh = open(tmp, "xb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StorageError(f"cannot write checkpoint {uri!r}: {exc}") from exc
    try:
        with fh:
            try_lock(fh.fileno())  # held until closed: marks the temporary as a live writer's
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise StorageError(f"cannot write checkpoint {uri!r}: {exc}") from exc
        raise
    if durable:
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
