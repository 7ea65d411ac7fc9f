"""The sharding layout: which rows of each parameter each rank holds.

A :class:`ShardLayout` is computed from the parameters' full shapes and dtypes, the world size
and two thresholds; every rank computes the same layout. Per parameter (a
:class:`ParameterShard`):

* **replicated** when it holds fewer than ``min_bytes`` bytes, is 0-d, or is a ``Constant``:
  every rank holds all of it;
* otherwise **sharded along axis 0**: rank ``r`` holds rows ``bounds[r]:bounds[r + 1]``. Rows
  are handed out in *blocks* of ``block`` rows (the checkpoint's chunk: at most
  ``chunk_bytes`` and at most ``ceil(rows / size)`` rows), as evenly as possible, the first
  ranks taking one block more. Splits may be uneven and a rank may hold no rows. Because every
  boundary is a multiple of ``block``, no two ranks ever write the same checkpoint chunk.

``layout.describe()`` is the JSON form (documented in ``docs/distributed.md``) and
``print(layout)`` a table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from paramarena.errors import ShardingError

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MIN_BYTES",
    "ParameterShard",
    "ShardLayout",
    "plan_layout",
]

#: Parameters smaller than this are replicated on every rank.
DEFAULT_MIN_BYTES = 1 << 20
#: Largest checkpoint chunk of a sharded parameter (the zarr backend's default chunk size).
DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ParameterShard:
    """How one parameter is spread over the ranks.

    Attributes
    ----------
    name : str
        Full parameter name.
    shape : tuple of int
        The full (unsharded) shape.
    dtype : str
        Logical dtype name (``"float32"``, ``"bfloat16"``, ...).
    axis : int or None
        ``0`` when sharded, ``None`` when replicated.
    bounds : tuple of int
        ``size + 1`` row boundaries along ``axis`` (empty when replicated).
    block : int
        Rows per checkpoint chunk (``0`` when replicated).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    axis: int | None
    bounds: tuple[int, ...] = ()
    block: int = 0

    @property
    def replicated(self) -> bool:
        """Whether every rank holds the whole parameter."""
        return self.axis is None

    @property
    def row_elements(self) -> int:
        """Elements in one row (``prod(shape[1:])``)."""
        return math.prod(self.shape[1:]) if self.shape else 1

    def rows(self, rank: int) -> tuple[int, int]:
        """Return the rows ``[start, stop)`` that ``rank`` holds (all rows when replicated)."""
        if self.replicated:
            return (0, self.shape[0] if self.shape else 1)
        return (self.bounds[rank], self.bounds[rank + 1])

    def local_shape(self, rank: int) -> tuple[int, ...]:
        """Return the shape of ``rank``'s part."""
        if self.replicated:
            return self.shape
        start, stop = self.rows(rank)
        return (stop - start, *self.shape[1:])

    def elements(self, rank: int) -> tuple[int, int]:
        """Return ``rank``'s part as C-order element indices ``[lo, hi)`` of the whole array."""
        start, stop = self.rows(rank)
        return (start * self.row_elements, stop * self.row_elements)

    def describe(self) -> dict[str, Any]:
        """Return the JSON form (see ``docs/distributed.md``)."""
        doc: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.replicated:
            doc["replicated"] = True
        else:
            doc.update(axis=self.axis, bounds=list(self.bounds), block=self.block)
        return doc


@dataclass(frozen=True)
class ShardLayout:
    """The layout of a sharded dict, identical on every rank (``rank`` aside).

    Attributes
    ----------
    rank, size : int
        This rank and the world size.
    shards : tuple of ParameterShard
        One per parameter, in the dict's order.
    min_bytes, chunk_bytes : int
        The thresholds the layout was computed with.
    """

    rank: int
    size: int
    shards: tuple[ParameterShard, ...]
    min_bytes: int = DEFAULT_MIN_BYTES
    chunk_bytes: int = DEFAULT_CHUNK_BYTES

    def __getitem__(self, name: str) -> ParameterShard:
        for s in self.shards:
            if s.name == name:
                return s
        raise KeyError(name)

    def __iter__(self) -> Iterator[ParameterShard]:
        return iter(self.shards)

    def __len__(self) -> int:
        return len(self.shards)

    def describe(self) -> dict[str, Any]:
        """Return the JSON form: world size, thresholds and every parameter's shard."""
        return {
            "size": self.size,
            "min_bytes": self.min_bytes,
            "chunk_bytes": self.chunk_bytes,
            "parameters": [s.describe() for s in self.shards],
        }

    def local_bytes(self, rank: int | None = None) -> int:
        """Bytes of parameter data ``rank`` (default: this rank) holds."""
        r = self.rank if rank is None else rank
        return sum(math.prod(s.local_shape(r)) * _itemsize(s.dtype) for s in self.shards)

    def __str__(self) -> str:
        lines = [f"ShardLayout(size={self.size}, rank={self.rank})"]
        for s in self.shards:
            if s.replicated:
                lines.append(f"  {s.name} {s.shape} {s.dtype}: replicated")
            else:
                parts = ", ".join(f"{s.bounds[r]}:{s.bounds[r + 1]}" for r in range(self.size))
                lines.append(f"  {s.name} {s.shape} {s.dtype}: rows [{parts}] block {s.block}")
        return "\n".join(lines)


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else int(np.dtype(dtype).itemsize)


def _bounds(rows: int, block: int, size: int) -> tuple[int, ...]:
    nblocks = -(-rows // block) if rows else 0
    per, extra = divmod(nblocks, size)
    out = [0]
    for r in range(size):
        out.append(min(rows, out[-1] + (per + (1 if r < extra else 0)) * block))
    return tuple(out)


def plan_layout(
    params: Iterable[tuple[str, tuple[int, ...], str, bool]],
    size: int,
    rank: int,
    *,
    axis: int = 0,
    min_bytes: int = DEFAULT_MIN_BYTES,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    replicate: Iterable[str] = (),
) -> ShardLayout:
    """Compute the layout of parameters ``(name, full shape, dtype name, is constant)``.

    Parameters
    ----------
    params : iterable of (str, tuple of int, str, bool)
        Every parameter in order.
    size, rank : int
        World size and this rank.
    axis : int, optional
        Only ``0`` is supported (rows are contiguous in C order).
    min_bytes : int, optional
        Parameters with fewer bytes are replicated.
    chunk_bytes : int, optional
        Upper bound of a sharded parameter's checkpoint chunk.
    replicate : iterable of str, optional
        Names to replicate whatever their size.

    Raises
    ------
    paramarena.errors.ShardingError
        ``axis`` is not 0, or a threshold is not positive.
    """
    if axis != 0:
        raise ShardingError(
            f"sharding is along axis 0 only (rows are contiguous in C order); got axis={axis!r}."
        )
    if min_bytes < 0 or chunk_bytes <= 0:
        raise ShardingError(
            f"min_bytes must be >= 0 and chunk_bytes > 0; got {min_bytes!r}, {chunk_bytes!r}."
        )
    keep = set(replicate)
    shards = []
    for name, shape, dtype, constant in params:
        nbytes = math.prod(shape) * _itemsize(dtype)
        if constant or not shape or nbytes < min_bytes or name in keep or nbytes == 0:
            shards.append(ParameterShard(name, tuple(shape), dtype, None))
            continue
        rows = shape[0]
        row_bytes = max(1, math.prod(shape[1:]) * _itemsize(dtype))
        block = max(1, min(-(-rows // size), chunk_bytes // row_bytes))
        shards.append(
            ParameterShard(name, tuple(shape), dtype, 0, _bounds(rows, block, size), block)
        )
    return ShardLayout(rank, size, tuple(shards), min_bytes, chunk_bytes)


def layout_from_description(doc: Mapping[str, Any], rank: int) -> ShardLayout:
    """Rebuild a layout from :meth:`ShardLayout.describe` output."""
    shards = tuple(
        ParameterShard(
            p["name"],
            tuple(p["shape"]),
            p["dtype"],
            None if p.get("replicated") else int(p["axis"]),
            tuple(p.get("bounds", ())),
            int(p.get("block", 0)),
        )
        for p in doc["parameters"]
    )
    return ShardLayout(
        rank, int(doc["size"]), shards, int(doc["min_bytes"]), int(doc["chunk_bytes"])
    )
