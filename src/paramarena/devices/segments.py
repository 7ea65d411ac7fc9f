"""The pieces an :class:`~paramarena.devices.arena.Arena` is made of: segments and runs of views.

A ``Segment`` is one flat buffer and the record of the views handed out of it; a
:class:`RowRun` is a run of equal-shape views whose view objects are made on first need.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from paramarena.errors import ParameterTypeError, ParameterValueError

__all__ = ["RowRun", "Segment", "address_of", "shape_tuple"]


def address_of(array: Any) -> int:
    """Return the address of the first element of a host or CUDA array."""
    iface = getattr(array, "__cuda_array_interface__", None)
    if iface is None:
        iface = array.__array_interface__
    return int(iface["data"][0])


def shape_tuple(shape: Any) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of non-negative ints (an int is a 1-d shape).

    Raises
    ------
    paramarena.errors.ParameterTypeError
        If an entry is not an integer.
    paramarena.errors.ParameterValueError
        If an entry is negative.
    """
    if isinstance(shape, int | np.integer):
        shape = (shape,)
    out = shape if type(shape) is tuple and all(type(s) is int for s in shape) else None
    if out is None:
        try:
            out = tuple(operator.index(s) for s in shape)
        except TypeError:
            raise ParameterTypeError(
                f"Arena shapes must be integers (or a sequence of them), got {shape!r}."
            ) from None
    if any(s < 0 for s in out):
        raise ParameterValueError(f"Arena shapes must be non-negative, got {out}.")
    return out


def group_shapes(shapes: Sequence[Any]) -> dict[tuple[int, ...], list[int]]:
    """Return the positions in ``shapes`` of each distinct shape (validated, first-seen order).

    Tuples of non-negative ints (what parameters hold) are grouped with numpy, no Python work
    per shape after one ``dict.fromkeys``; anything else (ints, lists, numpy integers) is
    converted by :func:`shape_tuple` one distinct shape at a time.

    Raises
    ------
    paramarena.errors.ParameterTypeError, paramarena.errors.ParameterValueError
        If a shape is not a sequence of non-negative integers.
    """
    try:
        distinct: dict[Any, None] | None = dict.fromkeys(shapes)
    except TypeError:  # an unhashable shape (a list)
        distinct = None
    if distinct is None or any(shape_tuple(s) is not s for s in distinct):
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, shp in enumerate(shapes):
            members = groups.get(shp) if type(shp) is tuple else None
            if members is None:
                got = shape_tuple(shp)  # validated once per distinct shape
                members = groups.get(got)
                if members is None:
                    members = groups[got] = []
            members.append(i)
        return groups
    if len(distinct) <= 1:
        return {shape: list(range(len(shapes))) for shape in distinct}
    ids = dict(zip(distinct, range(len(distinct)), strict=True))
    codes = np.fromiter(map(ids.__getitem__, shapes), dtype=np.intp, count=len(shapes))
    order = np.argsort(codes, kind="stable")
    cuts = np.cumsum(np.bincount(codes, minlength=len(distinct)))[:-1]
    return {s: part.tolist() for s, part in zip(distinct, np.split(order, cuts), strict=True)}


class RowRun:
    """Views of equal shape handed out together, made on first need.

    ``rows`` is one strided array whose rows are the views (a run of equal shapes in one
    segment); :meth:`views` makes them all at once (~0.1 µs each) and keeps them, so a view
    asked for twice is the same object. View ``j`` starts at element ``start + j * step`` of
    the segment's flat ``buffer`` (``buffer`` is None for zero-size views, which no segment
    holds).
    """

    __slots__ = ("_views", "buffer", "rows", "shape", "start", "step")

    def __init__(
        self,
        rows: Any,
        views: list[Any] | None,
        *,
        buffer: Any = None,
        shape: tuple[int, ...] = (),
        start: int = -1,
        step: int = 0,
    ) -> None:
        self.rows = rows
        self._views = views
        self.buffer = buffer
        self.shape = shape
        self.start = start
        self.step = step

    def views(self) -> list[Any]:
        """Return every view of the run (made on the first call)."""
        if self._views is None:
            self._views = list(self.rows)
        return self._views

    def __len__(self) -> int:
        return len(self._views) if self._views is not None else len(self.rows)


@dataclass
class Segment:
    """One flat buffer of an arena and the views handed out of it (see ``live``)."""

    buffer: Any
    base: int
    capacity: int
    used: int = 0
    _live: dict[int, tuple[int, Any]] = field(default_factory=dict)  # offset -> (size, view)
    _by_id: dict[int, int] = field(default_factory=dict)  # id(view handed out) -> offset
    ranges: tuple[np.ndarray, np.ndarray] | None = None  # cached zero table
    #: runs of views handed out by ``allocate_packed`` and not yet entered in ``_live`` /
    #: ``_by_id``: (element offsets, size of each, views). Entering 100k views costs two dict
    #: entries and a tuple each, which most dicts never look up; it is done on first need.
    pending: list[tuple[Sequence[int], int, RowRun]] = field(default_factory=list)

    def _settle(self) -> None:
        for starts, n, run in self.pending:
            views = run.views()
            self._live.update(zip(starts, zip(repeat(n), views), strict=True))
            self._by_id.update(zip(map(id, views), starts, strict=True))
        self.pending = []

    @property
    def live(self) -> dict[int, tuple[int, Any]]:
        """Element offset -> (size, view) of every live view."""
        if self.pending:
            self._settle()
        return self._live

    @property
    def by_id(self) -> dict[int, int]:
        """``id`` of every live view handed out -> its element offset."""
        if self.pending:
            self._settle()
        return self._by_id

    def has_live(self) -> bool:
        """Return whether any view of this segment is live."""
        return bool(self._live) or any(len(run) for _, _, run in self.pending)

    def live_count(self) -> int:
        """Return the number of live views."""
        return len(self._live) + sum(len(run) for _, _, run in self.pending)
