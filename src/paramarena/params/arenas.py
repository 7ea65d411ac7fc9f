"""Where the parameters of one ``ParameterDict`` keep their arrays: two sets of arenas.

A :class:`ParameterStorage` holds one :class:`~paramarena.devices.arena.ArenaSet` for parameter
data and one for gradients. Every parameter a ``ParameterDict`` creates allocates its copies and
gradient buffers as views into them, so the dict's gradients of one ``(context, dtype)`` are one
flat buffer (normally one segment): :meth:`ParameterStorage.zero_grads` is one kernel call per
arena, whatever the number of parameters.

Replacing an array (re-initialization, ``cast``, ``reset_ctx``, ``grad_req='null'``) releases
the old view: its memory is never handed out again, so an array a user kept from before reads
and writes memory that belongs to no other parameter (it is a detached buffer, as an old NDArray
is in MXNet after these operations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from paramarena.devices.arena import ArenaSet
from paramarena.devices.context import Context
from paramarena.hooks.manager import get_device_spec

__all__ = ["ParameterStorage", "foreign_grads"]


class ParameterStorage:
    """The data and gradient arenas shared by the parameters of one ``ParameterDict``."""

    def __init__(self) -> None:
        # views are handed out as zeros: gradients need nothing more, and initializers fill
        # a parameter's first CPU copy in place
        # parameter values are written as soon as they are allocated (initialize, load):
        # memory of a freed dict is reused for them; gradients stay lazily mapped zero pages
        self.data = ArenaSet(zeroed=True, reuse_memory=True)
        self.grad = ArenaSet(zeroed=True)

    def arenas(self, kind: str) -> ArenaSet:
        """Return the arena set for ``kind`` (``"data"`` or ``"grad"``)."""
        return self.data if kind == "data" else self.grad

    def allocate(self, kind: str, ctx: Context, dtype: np.dtype[Any], shape: Any) -> Any:
        """Return one zeroed view of ``shape`` in the ``kind`` arena of ``(ctx, dtype)``."""
        return self.arenas(kind).allocate(ctx, dtype, shape)

    def release(self, kind: str, ctx_list: Sequence[Context], arrays: Sequence[Any]) -> None:
        """Release every array of ``arrays`` (parallel to ``ctx_list``) that is a live view.

        Arrays that are not views of this storage (allocated before the parameter joined a
        dict, or zero-size) are left alone.
        """
        arenas = self.arenas(kind)
        for c, a in zip(ctx_list, arrays, strict=True):
            if arenas.owns(c, a):
                arenas.release(c, a)

    def owns_grad(self, ctx: Context, array: Any) -> bool:
        """Return whether ``array`` is a live gradient view of this storage on ``ctx``."""
        return self.grad.owns(ctx, array)

    def reserve(self, kind: str, shapes: dict[tuple[Context, np.dtype[Any]], list[Any]]) -> None:
        """Make room for the shapes of each ``(ctx, dtype)`` key in one segment."""
        arenas = self.arenas(kind)
        for (ctx, dtype), group in shapes.items():
            arenas.reserve(ctx, dtype, group)

    def zero_grads(self) -> None:
        """Zero every live gradient view: one kernel call per arena segment."""
        self.grad.zero()


def foreign_grads(params: Any, storage: ParameterStorage) -> list[tuple[Any, list[Any]]]:
    """Group the gradients of ``params`` that are not views of ``storage`` by context.

    Returns ``(backend, arrays)`` pairs: one ``backend.zero(arrays)`` call each zeroes them.
    """
    groups: dict[Context, list[Any]] = {}
    for p in params:
        mine = p._storage is storage
        if mine and p._lazy is not None:  # gradients still to be made: in storage's arenas
            continue
        if p._grad is None:
            continue
        for c, g in zip(p._ctx_list, p._grad, strict=True):
            if not (mine and storage.owns_grad(c, g)):
                groups.setdefault(c, []).append(g)
    return [(get_device_spec(c.device_type).backend, arrays) for c, arrays in groups.items()]
