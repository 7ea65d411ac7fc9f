"""Validation helpers and error-message builders shared by Parameter and ParameterDict.

Everything here is private to the parameter modules: dtype normalisation (``"bfloat16"``
included), shape checks in MXNet's legacy semantics (unknown dim = ``0``), context-list
normalisation, the per-context lookup table ``_ctx_map`` and MXNet's ``_brief_print_list``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from paramarena.devices.context import Context, current_context
from paramarena.errors import ParameterTypeError, ParameterValueError, ShapeMismatchError

__all__ = [
    "DEFERRED_MSG",
    "GRAD_REQS",
    "NAMING_HELP",
    "NOT_INIT_MSG",
    "STYPES",
    "CtxMap",
    "ShapeLike",
    "as_np_dtype",
    "brief_print_list",
    "build_ctx_map",
    "check_grad_req",
    "check_set_data_shape",
    "check_stype",
    "ctx_lookup",
    "is_cpu_context",
    "merge_shapes",
    "normalize_ctx",
    "normalize_shape",
    "shape_is_known",
    "shape_setter_check",
    "sparse_unsupported",
    "to_host",
]

#: Valid values of ``grad_req``.
GRAD_REQS = ("write", "add", "null")
#: Valid storage types (only ``"default"`` can hold data in paramarena).
STYPES = ("default", "row_sparse", "csr")
#: The tail MXNet appends to naming errors (kept verbatim, typos included).
#: Messages of ``Parameter`` accessors (MXNet's, pointed at what paramarena has).
DEFERRED_MSG = (
    "Parameter '{}' has not been initialized yet because initialization was deferred: its "
    "shape {} is not fully known. Set the shape (param.shape = ...) or call set_data(), then "
    "param._finish_deferred_init(); or give the full shape before initialize()."
)
NOT_INIT_MSG = (
    "Parameter '{}' has not been initialized. Call initialize() on it or on its "
    "ParameterDict, or load values into it (ParameterDict.load / load_dict), first."
)
NAMING_HELP = (
    "If the stored names differ from the parameters' names, pass restore_prefix=, rename= "
    "or match='order' (see 'Files whose names differ' in paramarena's migration guide)."
)

#: A stored shape: ``None`` (unknown) or a tuple/list of ints (``0`` = unknown dim).
ShapeLike = tuple[int, ...] | list[int] | None
#: ``[gpu slots, cpu slots]``: index into the context list, ``None`` for holes.
CtxMap = list[list[int | None]]


def as_np_dtype(dtype: Any, *, what: str = "dtype") -> np.dtype[Any]:
    """Return ``np.dtype(dtype)``, understanding ``"bfloat16"`` (via ml_dtypes).

    Raises
    ------
    paramarena.errors.ParameterTypeError
        If ``dtype`` names no numpy dtype.
    """
    if isinstance(dtype, np.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.lower() == "bfloat16":
        import ml_dtypes

        bf16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bf16
    try:
        result: np.dtype[Any] = np.dtype(dtype)
    except TypeError as exc:
        raise ParameterTypeError(f"{what} {dtype!r} is not a valid numpy dtype: {exc}") from None
    return result


def normalize_shape(shape: Any, name: str) -> ShapeLike:
    """Apply the constructor rule: an ``int`` becomes a 1-tuple, anything else is kept.

    Raises
    ------
    paramarena.errors.ParameterTypeError
        If ``shape`` is not ``None``, an int, or a sequence of ints.
    """
    if shape is None:
        return None
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        return (int(shape),)
    if isinstance(shape, (tuple, list)) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape
    ):
        if any(isinstance(d, np.integer) for d in shape):  # numpy ints print badly
            return type(shape)(int(d) for d in shape)
        return shape
    raise ParameterTypeError(
        f"Parameter {name!r}: shape must be None, an int or a tuple of ints; got {shape!r}."
    )


def shape_is_known(shape: ShapeLike, name: str) -> bool:
    """MXNet's ``shape_is_known`` with one change: ``()`` (a scalar) is a known shape.

    Raises
    ------
    paramarena.errors.ShapeMismatchError
        If a dimension is negative.
    """
    if shape is None:
        return False
    for dim in shape:
        if dim < 0:
            raise ShapeMismatchError(
                f"Parameter {name!r} has shape {shape}: shape dimension size cannot be less "
                f"than 0, while received {dim}"
            )
        if dim == 0:
            return False
    return True


def shape_fits(stored: ShapeLike, shape: Sequence[int]) -> bool:
    """Return whether ``shape`` fits the ``stored`` (possibly partly unknown) shape.

    It fits an unknown shape (``None``), or one of the same rank whose every dim is unknown
    (``0`` / ``-1``) or equal.
    """
    if stored is None:
        return True
    return len(stored) == len(shape) and all(
        j in (-1, 0, i) for i, j in zip(shape, stored, strict=True)
    )


def shape_setter_check(stored: ShapeLike, new_shape: Sequence[int]) -> None:
    """Check ``new_shape`` against ``stored`` as MXNet's shape setter does.

    Raises
    ------
    paramarena.errors.ShapeMismatchError
        ``Expected shape (4, 4) is incompatible with given shape (0, 3).`` (new shape first).
    """
    if not shape_fits(stored, new_shape):
        raise ShapeMismatchError(
            f"Expected shape {new_shape} is incompatible with given shape {stored}."
        )


def check_set_data_shape(name: str, stored: ShapeLike, given: tuple[int, ...]) -> None:
    """Check ``set_data``'s array shape, naming the expected shape first (MXNet reverses them).

    Raises
    ------
    paramarena.errors.ShapeMismatchError
        ``given`` does not fit ``stored``.
    """
    if stored is not None and not shape_fits(stored, given):
        raise ShapeMismatchError(
            f"Cannot set data of Parameter '{name}': expected shape {stored} (0 = any size), "
            f"given shape {given}."
        )


def merge_shapes(desired: Sequence[int], stored: Sequence[int]) -> tuple[int, ...] | None:
    """Merge two shapes of equal length dim-wise; ``None`` if a known dim disagrees."""
    merged = []
    for d1, d2 in zip(desired, stored, strict=True):
        if d1 != d2 and d1 > 0 and d2 > 0:
            return None
        merged.append(d1 if d1 > 0 else d2)
    return tuple(merged)


def check_grad_req(req: Any) -> str:
    """Validate ``grad_req``.

    Raises
    ------
    paramarena.errors.ParameterValueError
        ``grad_req must be one of 'write', 'add', or 'null', but got 'foo'``.
    """
    if not isinstance(req, str) or req not in GRAD_REQS:
        raise ParameterValueError(
            f"grad_req must be one of 'write', 'add', or 'null', but got {req!r}"
        )
    return req


def check_stype(value: Any, attr: str, name: str) -> str:
    """Validate ``stype`` / ``grad_stype`` with MXNet's message.

    Raises
    ------
    paramarena.errors.ParameterValueError
        ``stype for Parameter 'w' must be one of 'default', 'row_sparse', or 'csr', but got ...``
    """
    if not isinstance(value, str) or value not in STYPES:
        raise ParameterValueError(
            f"{attr} for Parameter '{name}' must be one of 'default', 'row_sparse', or 'csr', "
            f"but got '{value}'"
        )
    return value


def sparse_unsupported(name: str, stype: str, grad_stype: str, action: str) -> ParameterValueError:
    """Return the error for an attempt to give a sparse parameter data."""
    which = f"stype={stype!r}" if stype != "default" else f"grad_stype={grad_stype!r}"
    return ParameterValueError(
        f"Cannot {action} Parameter '{name}' because it has {which}: paramarena does not support "
        f"sparse storage ('row_sparse', 'csr'); only stype='default' parameters hold data."
    )


def normalize_ctx(ctx: Context | Iterable[Context] | None, name: str) -> list[Context]:
    """``None`` -> ``[current_context()]``, a Context -> ``[ctx]``, a list/tuple -> a list.

    Raises
    ------
    paramarena.errors.ParameterTypeError
        If an element is not a :class:`~paramarena.devices.context.Context`.
    paramarena.errors.ParameterValueError
        If the list is empty.
    """
    if ctx is None:
        return [current_context()]
    if isinstance(ctx, Context):
        return [ctx]
    if not isinstance(ctx, (list, tuple)):
        raise ParameterTypeError(
            f"ctx for Parameter '{name}' must be a Context or a list of Contexts; "
            f"got {type(ctx).__name__}."
        )
    result = list(ctx)
    for c in result:
        if not isinstance(c, Context):
            raise ParameterTypeError(
                f"ctx for Parameter '{name}' must contain Contexts; got {c!r} ({type(c).__name__})."
            )
    if not result:
        raise ParameterValueError(f"ctx for Parameter '{name}' is an empty list.")
    return result


def build_ctx_map(ctx_list: Sequence[Context]) -> CtxMap:
    """Build MXNet's ``_ctx_map``: slot list ``device_typeid & 1``, indexed by device id.

    ``cpu``, ``cpu_pinned`` and ``cpu_shared`` share the cpu slots (so ``cpu_pinned(0)`` finds
    the ``cpu(0)`` copy); with duplicates the last one wins.
    """
    ctx_map: CtxMap = [[], []]
    for i, c in enumerate(ctx_list):
        slots = ctx_map[c.device_typeid & 1]
        while len(slots) <= c.device_id:
            slots.append(None)
        slots[c.device_id] = i
    return ctx_map


def ctx_lookup(ctx_map: CtxMap, ctx: Context) -> int | None:
    """Return the index of ``ctx``'s copy in the context list, or ``None``."""
    slots = ctx_map[ctx.device_typeid & 1]
    if ctx.device_id < len(slots):
        return slots[ctx.device_id]
    return None


def brief_print_list(lst: Iterable[Any], limit: int = 7) -> str:
    """MXNet's ``_brief_print_list``: ``'a', 'b'``; more than ``limit`` -> first 3, ..., last 4."""
    items = list(lst)
    if len(items) > limit:
        return (
            brief_print_list(items[: limit // 2], limit)
            + ", ..., "
            + brief_print_list(items[-limit // 2 :], limit)
        )
    return ", ".join(f"'{item}'" for item in items)


def to_host(value: Any, what: str) -> np.ndarray:
    """Return ``value`` as a numpy array (GPU arrays are copied to the host).

    Raises
    ------
    paramarena.errors.ParameterTypeError
        If ``value`` is not an array (has no ``shape``).
    """
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__cuda_array_interface__"):
        from paramarena.hooks.manager import get_device_spec

        return np.asarray(get_device_spec("gpu").backend.to_host(value))
    if not hasattr(value, "shape") or not hasattr(value, "__array__"):
        raise ParameterTypeError(
            f"{what} expects an array with a shape (numpy or device array); "
            f"got {type(value).__name__}."
        )
    return np.asarray(value)


def is_cpu_context(ctx: Context) -> bool:
    """Return whether ``ctx``'s device backend is the host (CPU) backend."""
    from paramarena.devices.cpu import CPUBackend
    from paramarena.hooks.manager import get_device_spec

    return isinstance(get_device_spec(ctx.device_type).backend, CPUBackend)
