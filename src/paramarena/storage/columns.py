"""What a checkpoint stores, as columns (:func:`inspect_columns`), and loads into flat buffers.

:func:`paramarena.storage.inspect` describes every stored array with an
:class:`~paramarena.hooks.records.ArrayInfo` (about 1 µs each: a tenth of a second for 100k
parameters). A caller that only needs the names, shapes and dtypes (``ParameterDict.load``)
asks for them as columns instead: a backend with an ``inspect_columns(uri, **options)`` method
hands over the columns it already holds (zarr: those of the validated manifest); for the
others they are taken from ``inspect``.

:func:`load_packed` is the matching load: the arrays go into given flat buffers at given
element offsets (:class:`PackedTarget`), so that a caller that owns one buffer per dtype
(``ParameterDict.load`` into a fresh dict: its arena) needs no view per array. A backend with
a ``load_packed(uri, targets, **options)`` method reads straight into them (zarr on local
disk); for the others the arrays are read with :func:`paramarena.storage.load` and copied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paramarena.hooks.records import CheckpointInfo

__all__ = ["PackedTarget", "StoredColumns", "from_info", "inspect_columns", "load_packed"]


@dataclass(frozen=True)
class StoredColumns:
    """The stored arrays in stored order, one sequence per attribute.

    Attributes
    ----------
    names : sequence of str
        Stored names.
    shapes : sequence of tuple of int
        Logical shapes.
    dtypes : sequence of str
        Logical dtype names (``"float32"``, ``"bfloat16"``, ...).
    named : bool
        ``False`` for unnamed (list) files.
    metadata : dict
        Format-specific extras, as in :class:`~paramarena.hooks.records.CheckpointInfo`.
    init_keys : numpy.ndarray, optional
        The key every array was drawn with (``uint64`` per array) where the format records one
        for each, as a column; ``metadata["init_keys"]`` is then left out.
    """

    names: Sequence[str]
    shapes: Sequence[tuple[int, ...]]
    dtypes: Sequence[Any]
    named: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    init_keys: np.ndarray | None = None

    def select(self, keys: list[str]) -> tuple[list[tuple[int, ...]], list[Any], list[int] | None]:
        """Return the shapes and dtypes of the stored arrays ``keys``, and their positions.

        The positions are None when ``keys`` are the stored names in stored order (the usual
        whole-dict load: no lookup). Every key must be stored (``KeyError`` otherwise).
        """
        names = self.names
        if keys == names or (len(keys) == len(names) and keys == list(names)):
            return list(self.shapes), list(self.dtypes), None
        where = dict(zip(names, range(len(names)), strict=True))
        at = list(map(where.__getitem__, keys))
        return list(map(self.shapes.__getitem__, at)), list(map(self.dtypes.__getitem__, at)), at

    def init_key_map(self) -> Mapping[str, int]:
        """Return ``{stored name: init key}`` (from the column or ``metadata``)."""
        if self.init_keys is not None:
            return dict(zip(self.names, self.init_keys.tolist(), strict=True))
        found: Mapping[str, int] = self.metadata.get("init_keys") or {}
        return found


def from_info(info: CheckpointInfo) -> StoredColumns:
    """Return the columns of an :class:`~paramarena.hooks.records.CheckpointInfo`."""
    arrays = info.arrays
    return StoredColumns(
        [a.name for a in arrays],
        [a.shape for a in arrays],
        [a.dtype for a in arrays],
        info.named,
        info.metadata,
    )


def inspect_columns(
    path_or_url: Any, *, format: str | None = None, **options: Any
) -> StoredColumns:
    """Describe a checkpoint like :func:`paramarena.storage.inspect`, as columns.

    Raises
    ------
    paramarena.errors.StorageError
        As :func:`paramarena.storage.inspect`.
    """
    from paramarena import storage
    from paramarena.storage.failures import api_errors

    uri = storage._uri(path_or_url)
    backend = storage.resolve(uri, "r", format).backend
    with api_errors(uri, "inspect"):
        columns = getattr(backend, "inspect_columns", None)
        if columns is not None:
            result: StoredColumns = columns(uri, **options)
            return result
        return from_info(backend.inspect(uri, **options))


@dataclass(frozen=True)
class PackedTarget:
    """Where a load puts arrays of one dtype: element ranges of one flat buffer.

    Array ``names[i]`` (shape ``shapes[i]``, the dtype of ``buffer``) goes to the elements
    ``[offsets[i], offsets[i] + prod(shapes[i]))`` of ``buffer``.

    Attributes
    ----------
    buffer : numpy.ndarray
        1-D, C-contiguous, writable.
    names : sequence of str
        Stored names.
    shapes : sequence of tuple of int
        The shape each array is expected to have.
    offsets : numpy.ndarray
        ``int64`` element offset of each array in ``buffer`` (any value for empty shapes).
    """

    buffer: np.ndarray
    names: Sequence[str]
    shapes: Sequence[tuple[int, ...]]
    offsets: np.ndarray

    def view(self, i: int) -> np.ndarray:
        """Return the destination of array ``i`` as an array of its shape."""
        shape = self.shapes[i]
        n = math.prod(shape)
        if not n:
            return np.empty(shape, self.buffer.dtype)
        start = int(self.offsets[i])
        return self.buffer[start : start + n].reshape(shape)


def load_packed(
    path_or_url: Any,
    targets: Sequence[PackedTarget],
    *,
    format: str | None = None,
    **options: Any,
) -> dict[str, np.ndarray]:
    """Read the arrays named in ``targets`` into their buffers.

    Every array whose stored shape and dtype are the target's is read into its place (and
    checked as :func:`paramarena.storage.load` checks it); after an error the buffers' contents
    are unspecified, except with the option ``check_first=True`` on a local zarr checkpoint
    (buffers holding live values): every array is then checked before the first byte is
    written, and an error found by that check leaves every buffer untouched. The names must
    be distinct; the destinations must lie inside their buffers and not overlap
    (``ParameterValueError`` before anything is read).

    Returns
    -------
    dict of str to numpy.ndarray
        The arrays whose stored shape or dtype differ from their target's (a checkpoint
        replaced since it was inspected), read into new arrays; usually empty.

    Raises
    ------
    paramarena.errors.MissingParameterError, paramarena.errors.StorageError
        As :func:`paramarena.storage.load`.
    """
    from paramarena import storage
    from paramarena.storage.failures import api_errors

    uri = storage._uri(path_or_url)
    backend = storage.resolve(uri, "r", format).backend
    packed = getattr(backend, "load_packed", None)
    if packed is not None:
        with api_errors(uri, "load"):
            result: dict[str, np.ndarray] = packed(uri, targets, **options)
        return result
    names = [n for t in targets for n in t.names]
    arrays = storage.load(uri, names=names, format=format, **options)
    assert isinstance(arrays, dict)  # names= was given
    return copy_into(targets, arrays)


def copy_into(targets: Sequence[PackedTarget], arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Copy ``arrays`` into their targets; return those whose shape or dtype differ."""
    from paramarena.errors import ParameterValueError
    from paramarena.storage.zarr.gather import places_problem

    other: dict[str, np.ndarray] = {}
    for t in targets:
        sizes = np.fromiter(map(math.prod, t.shapes), dtype=np.int64, count=len(t.shapes))
        why = places_problem(t.offsets, sizes, t.buffer.size)
        if why is not None:
            raise ParameterValueError(f"load_packed: {why}.")
        dtype = t.buffer.dtype
        for i, (name, shape) in enumerate(zip(t.names, t.shapes, strict=True)):
            a = arrays[name]
            if tuple(a.shape) == shape and a.dtype == dtype:
                np.copyto(t.view(i), a)
            else:
                other[name] = a
    return other
