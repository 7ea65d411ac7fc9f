"""What a checkpoint stores, as columns: :func:`inspect_columns`.

:func:`paramarena.storage.inspect` describes every stored array with an
:class:`~paramarena.hooks.records.ArrayInfo` (about 1 µs each: a tenth of a second for 100k
parameters). A caller that only needs the names, shapes and dtypes (``ParameterDict.load``)
asks for them as columns instead: a backend with an ``inspect_columns(uri, **options)`` method
hands over the columns it already holds (zarr: those of the validated manifest); for the
others they are taken from ``inspect``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paramarena.hooks.records import CheckpointInfo

__all__ = ["StoredColumns", "from_info", "inspect_columns"]


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
