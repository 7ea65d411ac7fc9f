"""Writing MXNet ``.params`` files, byte-identical to MXNet 1.9.1's ``nd.save``.

The layout is documented in :mod:`paramarena.storage.mxnet.format` (which reads it) and in
``docs/formats-mxnet.md``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import IO

import numpy as np

from paramarena.errors import ParameterTypeError, ParameterValueError
from paramarena.storage.mxnet.dtypes import TYPE_FLAGS
from paramarena.storage.mxnet.format import LIST_MAGIC, MAGIC_V2, MAGIC_V3, type_flag_of

__all__ = ["write_params"]


def _shape_bytes(shape: tuple[int, ...]) -> bytes:
    return struct.pack(f"<i{len(shape)}q", len(shape), *shape)


def write_params(
    fh: IO[bytes],
    arrays: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    *,
    np_shape: bool | None = None,
    on_array: Callable[[int], None] | None = None,
) -> None:
    """Write ``arrays`` in MXNet's format, byte-identical to MXNet 1.9.1's ``nd.save``.

    Parameters
    ----------
    fh : binary file
        Destination, written sequentially.
    arrays : dict of str to numpy.ndarray, or list of numpy.ndarray
        A dict stores names in its order; a list stores none.
    np_shape : bool, optional
        ``True`` writes V3 records (MXNet's numpy-shape mode); ``False`` writes V2 records and
        refuses 0-d arrays; ``None`` (default) writes V2 unless some array is 0-d, then V3.
    on_array : callable, optional
        Called with each array's byte count after it is written (progress).

    Raises
    ------
    paramarena.errors.ParameterTypeError
        A dtype MXNet cannot load (e.g. int16, complex, object).
    paramarena.errors.ParameterValueError
        A 0-d array with ``np_shape=False``.
    """
    if isinstance(arrays, Mapping):
        names: list[str] | None = list(arrays)
        values = list(arrays.values())
    else:
        names = None
        values = list(arrays)
    prepared = []
    for i, value in enumerate(values):
        arr = np.asarray(value)
        label = repr(names[i]) if names is not None else f"array {i}"
        try:
            flag = type_flag_of(arr.dtype)
        except ParameterTypeError as exc:
            raise ParameterTypeError(f"cannot save {label}: {exc}") from None
        target = TYPE_FLAGS[flag]
        if arr.dtype != target:  # e.g. big-endian input: store little-endian, same values
            arr = arr.astype(target)
        prepared.append((flag, arr if arr.flags.c_contiguous else arr.copy(order="C")))
    has_0d = any(a.ndim == 0 for _, a in prepared)
    if np_shape is False and has_0d:
        bad = next(i for i, (_, a) in enumerate(prepared) if a.ndim == 0)
        label = repr(names[bad]) if names is not None else f"array {bad}"
        raise ParameterValueError(
            f"cannot save 0-d {label} with np_shape=False: MXNet's legacy format cannot hold "
            "0-d arrays (use np_shape=None/True to write numpy-shape V3 records)"
        )
    magic = MAGIC_V3 if (np_shape or has_0d) else MAGIC_V2
    fh.write(struct.pack("<QQQ", LIST_MAGIC, 0, len(prepared)))
    for flag, arr in prepared:
        fh.write(struct.pack("<Ii", magic, 0) + _shape_bytes(arr.shape))
        fh.write(struct.pack("<iii", 1, 0, flag))
        if arr.nbytes:
            fh.write(arr.reshape(-1).view(np.uint8).data)
        if on_array is not None:
            on_array(arr.nbytes)
    if names is None:
        fh.write(struct.pack("<Q", 0))
        return
    out = [struct.pack("<Q", len(names))]
    for name in names:
        raw = name.encode("utf-8")
        out.append(struct.pack("<Q", len(raw)) + raw)
    fh.write(b"".join(out))
