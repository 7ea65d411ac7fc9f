"""Documents shared by the reads of one operation (``ParameterDict.load``: plan, verify, read).

One ``ParameterDict.load`` reads a checkpoint several times: it inspects it to plan, may verify
it in batches before overwriting parameters in place, then reads it. Inside
:func:`shared_reads`, a backend may keep what it parsed and validated from a document and reuse
it when it reads **the same bytes** again (it still reads and checks them every time: a document
that changed is parsed and validated anew). Outside, nothing is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["memo", "shared_reads"]

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
