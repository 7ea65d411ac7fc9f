"""What ``storage.save`` accepts: arrays given as a mapping, a sequence or one array, checked.

Device arrays (``__cuda_array_interface__``) are copied to the host through the GPU backend;
other array-likes go through ``np.asarray``. Names must be valid Unicode text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paramarena.errors import ParameterTypeError, ParameterValueError
from paramarena.hooks import manager
from paramarena.hooks.records import ArraysLike

__all__ = ["normalize"]


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__cuda_array_interface__"):
        backend = manager.get_device_spec("gpu").backend
        return backend.to_host(value)
    if hasattr(value, "__array__"):
        return np.asarray(value)
    raise ParameterTypeError(
        f"cannot save {name!r}: expected a numpy array (or an array-like); "
        f"got {type(value).__name__}"
    )


def _check_name(name: str) -> None:
    """Refuse names no format can store: text that is not valid Unicode (lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ParameterValueError(
            f"cannot save an array named {name!r}: the name is not valid UTF-8 text (a lone "
            f"surrogate at position {exc.start}); names must be valid Unicode"
        ) from None


def _plain_arrays(arrays: Mapping[Any, Any]) -> bool:
    """Whether every key is a valid Unicode str and every value a numpy array (checked in bulk).

    The common case of a save (a dict of many parameters) then costs no Python call per entry;
    otherwise :func:`normalize` checks entry by entry and names the offending one.
    """
    keys = list(arrays)
    if not all(map(str.__instancecheck__, keys)) or not all(
        map(np.ndarray.__instancecheck__, arrays.values())
    ):
        return False
    try:
        "".join(keys).encode("utf-8")
    except UnicodeEncodeError:
        return False  # a lone surrogate somewhere: the slow path names it
    return True


def normalize(arrays: Any) -> ArraysLike:
    """Return what ``storage.save`` was given as a dict ``str -> numpy array`` or a list of arrays.

    Raises
    ------
    paramarena.errors.ParameterTypeError
        Not a mapping of str to arrays, a sequence of arrays or one array.
    paramarena.errors.ParameterValueError
        A name that is not valid Unicode text.
    """
    if isinstance(arrays, Mapping):
        if _plain_arrays(arrays):
            return dict(arrays)
        out: dict[str, np.ndarray] = {}
        for key, value in arrays.items():
            if not isinstance(key, str):
                raise ParameterTypeError(
                    f"save only accepts a dict str -> array or a list of arrays; "
                    f"got key {key!r} of type {type(key).__name__}"
                )
            _check_name(key)
            out[key] = _to_numpy(key, value)
        return out
    if isinstance(arrays, np.ndarray):
        return [arrays]
    if isinstance(arrays, Sequence) and not isinstance(arrays, (str, bytes)):
        return [_to_numpy(f"arr_{i}", v) for i, v in enumerate(arrays)]
    raise ParameterTypeError(
        "save only accepts a dict str -> array, a list of arrays or one array; "
        f"got {type(arrays).__name__}"
    )
