"""Clean errors at the storage API boundary: every failure a paramarena error naming the path.

:func:`api_errors` wraps each call of ``save`` / ``load`` / ``inspect`` / ``verify`` into a
backend: remote URLs go through :func:`paramarena.storage.remote.remote_errors` (network and
client errors), local paths turn the raw ``OSError`` a backend let through into a
:class:`~paramarena.errors.StorageError` that says what is in the way.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from paramarena.errors import ParamarenaError, StorageError
from paramarena.storage.fileio import local_path
from paramarena.storage.remote import remote_errors

__all__ = ["api_errors", "describe_local"]


def describe_local(path: str) -> str:
    """Say what is at a local ``path``: missing, a regular file, an empty directory, ..."""
    if not os.path.lexists(path):
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            return f"nothing is there, and its directory {parent!r} does not exist either"
        return "nothing is there"
    if os.path.islink(path) and not os.path.exists(path):
        return "a dangling symbolic link"
    if os.path.isfile(path):
        size = os.path.getsize(path)
        return f"a regular file ({size} bytes), not a directory"
    if os.path.isdir(path):
        try:
            entries = os.listdir(path)
        except OSError as exc:
            return f"a directory that cannot be listed ({exc.strerror})"
        if not entries:
            return "an empty directory"
        return f"a directory with {len(entries)} entries"
    return "neither a regular file nor a directory"


def _local_error(uri: str, path: str, exc: OSError, action: str) -> StorageError:
    if isinstance(exc, NotADirectoryError) or exc.errno == errno.ENOTDIR:
        if os.path.isfile(path):
            return StorageError(
                f"cannot {action} {uri!r}: it is {describe_local(path)} (this format is a "
                "directory); remove the file or choose another path"
            )
        return StorageError(
            f"cannot {action} {uri!r}: a path component is not a directory ({exc.filename!r}); "
            f"{uri!r} is {describe_local(path)}"
        )
    if isinstance(exc, FileExistsError):
        return StorageError(f"cannot {action} {uri!r}: {describe_local(path)} is in the way")
    if isinstance(exc, PermissionError):
        return StorageError(f"cannot {action} {uri!r}: permission denied ({exc.filename!r})")
    if exc.errno == errno.ENOSPC:
        return StorageError(f"cannot {action} {uri!r}: no space left on the device")
    return StorageError(f"cannot {action} {uri!r}: {exc.strerror or exc}")


@contextlib.contextmanager
def api_errors(uri: str, action: str) -> Iterator[None]:
    """Turn what a backend raises into a paramarena error naming ``uri`` (see module docstring).

    ``action`` is a verb for the message: ``"save"``, ``"load"``, ``"inspect"``, ``"verify"``.
    """
    path = local_path(uri)
    if path is None:
        with remote_errors(uri, action):
            yield
        return
    try:
        yield
    except OSError as exc:
        if isinstance(exc, ParamarenaError):
            raise
        raise _local_error(uri, path, exc, action) from exc
