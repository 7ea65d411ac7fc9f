"""Documents shared by the reads of one operation (``ParameterDict.load``: plan, verify, read).

One ``ParameterDict.load`` reads a checkpoint several times: it inspects it to plan, may verify
it in batches before overwriting parameters in place, then reads it. Inside
:func:`shared_reads`, a backend may keep what it parsed and validated from a document and reuse
it when it reads **the same bytes** again (a document that changed is parsed and validated
anew). A remote document is read again and known by a digest of its bytes; a local file is
known by its identity (:func:`file_identity`: device, inode, size, modification and change
time, taken before it was first read), as the check pass of an in-place load knows chunk files:
the same unchanged file is not read again. Outside, nothing is kept.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["Identity", "file_identity", "identity", "memo", "shared_reads"]

#: ``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)`` of a file.
Identity = tuple[int, int, int, int, int]

_MEMO: ContextVar[dict[Any, Any] | None] = ContextVar("paramarena_shared_reads", default=None)


@contextlib.contextmanager
def shared_reads() -> Iterator[None]:
    """Let the reads inside share parsed documents (dropped when the block ends)."""
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def memo() -> dict[Any, Any] | None:
    """Return the memo of the enclosing :func:`shared_reads` block, or None outside one."""
    return _MEMO.get()


def identity(st: os.stat_result) -> Identity:
    """Return what tells one version of a file from another: inode, size, mtime, ctime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_identity(path: str) -> Identity | None:
    """Return the :func:`identity` of a regular file ``path``, or None if it is not one.

    ``path`` itself: a symbolic link is not followed (None).
    """
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return identity(st)
