"""Allocating a parameter's arrays: views of its dict's arenas, or arrays of its own.

Private helpers of :class:`paramarena.params.parameter.Parameter`. Every function takes the
parameter's :class:`~paramarena.params.arenas.ParameterStorage` (``None`` for a standalone
parameter) and allocates through the device backend of each context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from paramarena.devices.context import Context
from paramarena.hooks.manager import get_device_spec
from paramarena.params.arenas import ParameterStorage

__all__ = ["backend_of", "converted", "copies_of", "fresh_host", "new_array", "zero_grads"]


def backend_of(ctx: Context) -> Any:
    """Return the device backend serving ``ctx`` (cpu_pinned / cpu_shared use the cpu one)."""
    return get_device_spec(ctx.device_type).backend


def new_array(
    storage: ParameterStorage | None, kind: str, ctx: Context, dtype: np.dtype[Any], shape: Any
) -> Any:
    """Return an array of ``shape`` on ``ctx``: an arena view (zeroed) or a new empty array."""
    if storage is not None:
        return storage.allocate(kind, ctx, dtype, shape)
    return backend_of(ctx).empty(tuple(shape), dtype, ctx.device_id)


def fresh_host(
    storage: ParameterStorage | None,
    ctx_list: Sequence[Context],
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
) -> tuple[np.ndarray, bool]:
    """Return a zero host array for an initializer to fill, and whether it is the first copy.

    With arenas and a CPU first context the array is the arena view of that context (filled in
    place, no extra copy); else a new ``np.zeros`` array. Every context is checked first.
    """
    backends = [backend_of(c) for c in ctx_list]
    for c, b in zip(ctx_list, backends, strict=True):
        b.check(c.device_id)
    from paramarena.devices.cpu import CPUBackend

    if storage is not None and ctx_list and isinstance(backends[0], CPUBackend):
        view: np.ndarray = storage.allocate("data", ctx_list[0], dtype, shape)
        return view, True  # the data arena hands out zeroed views
    return np.zeros(shape, dtype=dtype), False


def copies_of(
    storage: ParameterStorage | None, host: np.ndarray, ctx_list: Sequence[Context]
) -> list[Any]:
    """Return one independent copy of ``host`` per context (all or nothing)."""
    for c in ctx_list:
        backend_of(c).check(c.device_id)
    copies: list[Any] = []
    try:
        for c in ctx_list:
            copy = new_array(storage, "data", c, host.dtype, host.shape)
            copies.append(copy)
            backend_of(c).copy_into(copy, host)
    except BaseException:
        if storage is not None:
            storage.release("data", ctx_list[: len(copies)], copies)
        raise
    return copies


def zero_grads(
    storage: ParameterStorage | None,
    ctx_list: Sequence[Context],
    data: Sequence[Any],
    dtype: np.dtype[Any],
) -> list[Any]:
    """Return zero gradient buffers, one per data copy."""
    grads = []
    for c, d in zip(ctx_list, data, strict=True):
        g = new_array(storage, "grad", c, dtype, d.shape)
        if storage is None:  # arena gradient views are handed out as zeros
            backend_of(c).zero([g])
        grads.append(g)
    return grads


def converted(
    storage: ParameterStorage | None,
    kind: str,
    ctx_list: Sequence[Context],
    arrays: Sequence[Any],
    dtype: np.dtype[Any],
) -> list[Any]:
    """Return new arrays holding ``arrays`` converted to ``dtype`` (arena views if any)."""
    out = []
    for c, a in zip(ctx_list, arrays, strict=True):
        if storage is None:
            out.append(backend_of(c).cast(a, dtype))
        else:
            new = storage.allocate(kind, c, dtype, a.shape)
            backend_of(c).copy_into(new, a)
            out.append(new)
    return out
