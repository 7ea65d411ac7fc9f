"""Arenas: parameters and gradients of one (context, dtype) as views into flat buffers.

An :class:`Arena` owns a few large 1-D *segments* of one dtype on one device and hands out
C-contiguous views of them. :meth:`Arena.zero` zeroes every live view with one kernel call per
segment (normally one), which is what makes ``ParameterDict.zero_grad()`` cheap for dicts of many
small parameters. :class:`ArenaSet` keeps one arena per ``(context, dtype)``.

Lifetime rules (what a stale view means)
----------------------------------------
* Growth adds a new segment; existing views never move.
* :meth:`Arena.release` retires a view. Its memory is **never handed out again** by this arena,
  and :meth:`Arena.zero` stops touching it: a user's old reference keeps reading/writing memory
  that belongs to nobody else (numpy's base reference keeps the segment alive). A segment whose
  last live view is released is dropped by the arena; its memory is freed once no old view
  refers to it any more.
* :meth:`Arena.compact` copies the live views into one fresh segment and returns
  ``(old, new)`` pairs; the owner re-points its parameters at ``new``. Old views become
  *detached snapshots*: still valid memory (kept alive by their own references only), no longer
  the parameter's storage, and never aliasing any other parameter.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from paramarena.devices.segments import RowRun, Segment, address_of, group_shapes, shape_tuple
from paramarena.errors import ParameterValueError

__all__ = ["Arena", "ArenaSet", "RowRun"]

_ALIGN_BYTES = 64


class Arena:
    """Flat buffers of one dtype on one device; allocations are views into them.

    Parameters
    ----------
    dtype : dtype_like
        Element type of every view (``"bfloat16"`` accepted).
    backend : DeviceBackend, optional
        Allocates segments (``empty``) and zeroes them (``zero``); default: the CPU backend
        (numpy arrays).
    device_id : int, optional
        Passed to ``backend.empty``.
    min_segment_elements : int, optional
        Smallest segment allocated; later segments at least double the previous one.
    zeroed : bool, optional
        Create segments zero-filled, so that every view is all zeros when handed out (memory is
        never handed out twice). On the CPU this is :func:`paramarena.kernels.zeros`: the
        operating system maps zero pages lazily (huge pages for large segments, so the first
        write faults 2 MiB at a time), and nothing is written until the views are used.
    reuse_memory : bool, optional
        Host segments soon written anyway (parameter values) reuse the memory of freed ones,
        zeroed by the kernel threads (``kernels.zeros(reuse=True)``).
    """

    def __init__(
        self,
        dtype: Any,
        *,
        backend: Any = None,
        device_id: int = 0,
        min_segment_elements: int = 1 << 16,
        zeroed: bool = False,
        reuse_memory: bool = False,
    ) -> None:
        if isinstance(dtype, str) and dtype == "bfloat16":
            import ml_dtypes

            dtype = ml_dtypes.bfloat16
        self.dtype: np.dtype[Any] = np.dtype(dtype)
        if backend is None:
            from paramarena.devices.cpu import CPUBackend

            backend = CPUBackend()
        self.backend = backend
        self.device_id = device_id
        self.zeroed = zeroed
        self.reuse_memory = reuse_memory
        self._min_segment = max(1, int(min_segment_elements))
        self._align = max(1, _ALIGN_BYTES // self.dtype.itemsize)
        self._segments: list[Segment] = []
        # address of each live view -> (segment, offset), built on first need and dropped by
        # every allocation (kept up to date it would cost a dict entry per view)
        self._by_address: dict[int, tuple[Segment, int]] | None = None

    # --- allocation -------------------------------------------------------------------------

    def _round(self, n: int) -> int:
        a = self._align
        return int((n + a - 1) // a * a)

    def _new_segment(self, elements: int, *, exact: bool = False) -> Segment:
        last = self._segments[-1].capacity if self._segments else 0
        grown = elements if exact else max(elements, 2 * last)
        capacity = self._round(max(grown, self._min_segment))
        extra = self._align
        raw = self._raw_segment(capacity + extra)
        skip = (-address_of(raw) % _ALIGN_BYTES) // self.dtype.itemsize
        if skip >= extra or address_of(raw) % self.dtype.itemsize:  # odd base: cannot align
            skip = 0
        buffer = raw[skip : skip + capacity]
        seg = Segment(buffer, address_of(buffer), capacity)
        self._segments.append(seg)
        return seg

    def _raw_segment(self, elements: int) -> Any:
        if not self.zeroed:
            return self.backend.empty((elements,), self.dtype, self.device_id)
        from paramarena.devices.cpu import CPUBackend

        if isinstance(self.backend, CPUBackend):
            from paramarena import kernels

            # huge pages when large; mapped lazily, or reused memory zeroed now
            return kernels.zeros(elements, self.dtype, reuse=self.reuse_memory)
        raw = self.backend.empty((elements,), self.dtype, self.device_id)
        self.backend.zero([raw])
        return raw

    def _total(self, shapes: Iterable[Any]) -> tuple[list[tuple[int, ...]], list[int], int]:
        parsed = [shape_tuple(s) for s in shapes]
        sizes = [math.prod(shp) for shp in parsed]
        return parsed, sizes, sum(self._round(n) for n in sizes if n)

    def reserve(self, shapes: Iterable[Any]) -> None:
        """Make room for ``shapes`` in one segment, so that allocating them is contiguous.

        Call it before allocating many views one at a time (as ``ParameterDict.initialize``
        does): they then all land in one segment, and :meth:`zero` is one kernel call.

        Parameters
        ----------
        shapes : iterable of (int or tuple of int)
            The shapes about to be allocated.
        """
        _, _, total = self._total(shapes)
        seg = self._segments[-1] if self._segments else None
        if total and (seg is None or seg.capacity - seg.used < total):
            self._new_segment(total, exact=True)

    def allocate(self, shape: Any) -> Any:
        """Return one new uninitialized C-contiguous view of ``shape``.

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the view.

        Returns
        -------
        array
            A view into a segment (numpy array on the CPU).
        """
        shp = shape_tuple(shape)
        n = math.prod(shp)
        if n == 0:
            return self.backend.empty(shp, self.dtype, self.device_id)
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg.capacity - seg.used < self._round(n):
            seg = self._new_segment(self._round(n))
        seg.ranges = None
        return self._place(seg, shp, n)

    def _place(self, seg: Segment, shape: tuple[int, ...], n: int) -> Any:
        """Hand out the next ``n`` elements of ``seg`` (which has room) as a view of ``shape``."""
        off = seg.used
        view = seg.buffer[off : off + n].reshape(shape)
        seg.used = off + self._round(n)
        seg.live[off] = (n, view)
        seg.by_id[id(view)] = off
        self._by_address = None
        return view

    @staticmethod
    def group_shapes(shapes: Sequence[Any]) -> dict[tuple[int, ...], list[int]]:
        """Return the positions in ``shapes`` of each distinct shape (validated, first-seen order).

        The result can be handed to :meth:`allocate_packed` (``grouped=``) for several
        allocations of the same shapes (a dict's data and its gradients).

        Raises
        ------
        paramarena.errors.ParameterTypeError, paramarena.errors.ParameterValueError
            If a shape is not a sequence of non-negative integers.
        """
        return group_shapes(shapes)

    def allocate_packed(
        self,
        shapes: Sequence[Any],
        *,
        grouped: dict[tuple[int, ...], list[int]] | None = None,
    ) -> tuple[list[Any], Any, np.ndarray]:
        """Allocate views for ``shapes`` in one segment and say where they are.

        Views of one shape are laid out next to each other and made in one go (a host segment
        hands out a run of ``k`` equal shapes as the rows of one strided array, about 0.1 µs a
        view); the returned offsets say where each view is.

        Parameters
        ----------
        shapes : sequence of (int or tuple of int)
            One shape per view.
        grouped : dict, optional
            :meth:`group_shapes` of ``shapes``, when the caller has it already.

        Returns
        -------
        views : list of array
            One view per shape, in the order of ``shapes`` (zeroed in a ``zeroed`` arena;
            zero-size shapes get zero-size arrays that the arena does not track).
        buffer : array
            The segment's flat buffer holding every non-empty view.
        offsets : numpy.ndarray
            ``int64`` element offset of each view in ``buffer`` (``-1`` for zero-size views).
        """
        count = len(shapes)
        runs, buf, offsets = self.allocate_rows(
            self.group_shapes(shapes) if grouped is None else grouped, count
        )
        if len(runs) == 1 and len(runs[0][0]) == count:
            return list(runs[0][1].views()), buf, offsets
        views: list[Any] = [None] * count
        for members, run in runs:  # views[members[j]] = run.views()[j], looped in C
            deque(map(views.__setitem__, members, run.views()), maxlen=0)
        return views, buf, offsets

    def allocate_rows(
        self, grouped: dict[tuple[int, ...], list[int]], count: int
    ) -> tuple[list[tuple[list[int], RowRun]], Any, np.ndarray]:
        """Allocate one :class:`RowRun` per distinct shape, in one segment.

        The lazy form of :meth:`allocate_packed`: no view object exists until one is asked
        for (``ParameterDict.initialize`` of 100k parameters hands each parameter its run and
        row, and makes the views on first access).

        Parameters
        ----------
        grouped : dict
            Positions of each distinct shape (:meth:`group_shapes`), ``count`` in all.
        count : int
            Number of views.

        Returns
        -------
        runs : list of (members, RowRun)
            For each distinct shape, its positions and their views (``members[j]`` is row
            ``j``).
        buffer : array
            The segment's flat buffer holding every non-empty view.
        offsets : numpy.ndarray
            ``int64`` element offset of each position in ``buffer`` (``-1``: zero-size).
        """
        groups = {shape_tuple(shp): members for shp, members in grouped.items()}
        if sum(map(len, groups.values())) != count:
            raise ParameterValueError(
                f"grouped covers {sum(map(len, groups.values()))} views, not {count}."
            )
        total = 0
        for shp, members in groups.items():
            n = math.prod(shp)
            if n:
                total += self._round(n) * len(members)
        seg = self._segments[-1] if self._segments else None
        if total and (seg is None or seg.capacity - seg.used < total):
            seg = self._new_segment(total, exact=True)
        if seg is None:  # nothing but zero-size views
            seg = self._new_segment(0, exact=True)
        offsets = np.full(count, -1, np.int64)
        buf, at = seg.buffer, seg.used
        runs: list[tuple[list[int], RowRun]] = []
        for shp, members in groups.items():
            n = math.prod(shp)
            k = len(members)
            if not n:
                empty = [self.backend.empty(shp, self.dtype, self.device_id) for _ in members]
                runs.append((members, RowRun(None, empty, shape=shp)))
                continue
            step = self._round(n)
            starts = range(at, at + k * step, step)
            run = self._run_of_views(buf, starts, step, shp)
            runs.append((members, run))
            if k == count:
                offsets[:] = np.arange(at, at + k * step, step, dtype=np.int64)
            else:
                offsets[members] = np.arange(at, at + k * step, step, dtype=np.int64)
            seg.pending.append((starts, n, run))
            at += k * step
        self._by_address = None
        seg.used = at
        seg.ranges = None
        return runs, buf, offsets

    def _run_of_views(self, buf: Any, starts: range, step: int, shape: tuple[int, ...]) -> RowRun:
        """Return the views of ``shape`` at each element offset of ``starts`` (``step`` apart)."""
        if len(starts) >= 8 and shape and isinstance(buf, np.ndarray):
            isz = self.dtype.itemsize
            inner = [isz] * len(shape)
            for d in range(len(shape) - 2, -1, -1):
                inner[d] = inner[d + 1] * shape[d + 1]
            rows = np.ndarray(
                (len(starts), *shape), self.dtype, buf, starts[0] * isz, (step * isz, *inner)
            )
            return RowRun(  # each row a C-contiguous view of ``buf``
                rows, None, buffer=buf, shape=shape, start=starts[0], step=step
            )
        n = math.prod(shape)
        views = [buf[o : o + n].reshape(shape) for o in starts]
        return RowRun(None, views, buffer=buf, shape=shape, start=starts[0], step=step)

    def locate(self, view: Any) -> tuple[Any, int] | None:
        """Return ``(segment buffer, element offset)`` of a live view, or None if not one."""
        try:
            seg, off = self._find(view)
        except (ParameterValueError, AttributeError, KeyError, TypeError):
            return None
        return seg.buffer, off

    def allocate_many(self, shapes: Iterable[Any]) -> list[Any]:
        """Allocate several views at once, contiguously in one segment where possible.

        Parameters
        ----------
        shapes : iterable of (int or tuple of int)
            One shape per view.

        Returns
        -------
        list of array
            Uninitialized views, in the order of ``shapes``. Zero-size shapes get zero-size
            arrays that the arena does not track.
        """
        parsed, sizes, total = self._total(shapes)
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg.capacity - seg.used < total:
            seg = self._new_segment(total)
        views = [
            self._place(seg, shp, n) if n else self.backend.empty(shp, self.dtype, self.device_id)
            for shp, n in zip(parsed, sizes, strict=True)
        ]
        seg.ranges = None
        return views

    def _find(self, view: Any) -> tuple[Segment, int]:
        key = id(view)
        for seg in self._segments:
            off = seg.by_id.get(key)
            if off is not None and seg.live[off][1] is view:
                return seg, off
        size = math.prod(view.shape)
        hit = self._addresses().get(address_of(view)) if size else None
        if hit is None or hit[0].live.get(hit[1], (-1,))[0] != size:
            raise ParameterValueError(
                f"array of shape {tuple(view.shape)} is not a live view of this "
                f"{self.dtype.name} arena (already released, or allocated elsewhere)."
            )
        return hit

    def _addresses(self) -> dict[int, tuple[Segment, int]]:
        """Return the address -> (segment, offset) map of every live view (built when stale)."""
        if self._by_address is None:
            isz = self.dtype.itemsize
            self._by_address = {
                seg.base + off * isz: (seg, off) for seg in self._segments for off in seg.live
            }
        return self._by_address

    def owns(self, view: Any) -> bool:
        """Return whether ``view`` is a live view handed out by this arena."""
        try:
            self._find(view)
        except (ParameterValueError, AttributeError, KeyError, TypeError):
            return False
        return True

    def release(self, view: Any) -> None:
        """Retire ``view``: its memory is never re-issued and no longer zeroed.

        Parameters
        ----------
        view : array
            A live view from :meth:`allocate` / :meth:`allocate_many` (zero-size arrays are
            accepted and ignored).

        Raises
        ------
        paramarena.errors.ParameterValueError
            If ``view`` is not a live view of this arena.
        """
        if math.prod(view.shape) == 0:
            return
        seg, off = self._find(view)
        handed = seg.live.pop(off)[1]
        seg.by_id.pop(id(handed), None)
        if self._by_address is not None:
            self._by_address.pop(seg.base + off * self.dtype.itemsize, None)
        seg.ranges = None
        if not seg.has_live():  # nothing live is left in it: let its memory go with the old views
            self._segments = [s for s in self._segments if s is not seg]

    def compact(self) -> list[tuple[Any, Any]]:
        """Copy every live view into one fresh segment and forget the old segments.

        Returns
        -------
        list of (old, new)
            For each live view, the old view and its replacement (same shape and values).
            The caller must re-point its references to ``new``; ``old`` becomes a detached
            snapshot.
        """
        live = [v for seg in self._segments for _, (_, v) in sorted(seg.live.items())]
        self._segments = []
        self._by_address = None
        if not live:
            return []
        new = self.allocate_many([v.shape for v in live])
        for old, fresh in zip(live, new, strict=True):
            self.backend.copy_into(fresh, old)
        return list(zip(live, new, strict=True))

    # --- bulk operations ------------------------------------------------------------------

    def _ranges(self, seg: Segment) -> tuple[np.ndarray, np.ndarray]:
        if seg.ranges is None:
            starts: list[int] = []
            stops: list[int] = []
            for off in sorted(seg.live):
                end = off + seg.live[off][0]
                if stops and off <= self._round(stops[-1]):  # only padding in between
                    stops[-1] = end
                else:
                    starts.append(off)
                    stops.append(end)
            seg.ranges = (np.array(starts, np.int64), np.array(stops, np.int64))
        return seg.ranges

    def zero(self) -> None:
        """Zero every live view: one kernel call per segment (normally one segment)."""
        from paramarena import kernels
        from paramarena.devices.cpu import CPUBackend

        host = isinstance(self.backend, CPUBackend)
        for seg in self._segments:
            starts, stops = self._ranges(seg)
            if not starts.size:
                continue
            if host:
                kernels.zero_ranges(seg.buffer, starts, stops)
            else:
                self.backend.zero(
                    [seg.buffer[int(s) : int(e)] for s, e in zip(starts, stops, strict=True)]
                )

    def live_spans(self) -> list[Any]:
        """Return one flat view per run of live views (normally one per segment).

        Runs separated only by alignment padding are joined (the padding is included);
        released views split runs, so nothing outside live views and their padding is covered.
        A collective over these views (one allreduce per span) touches every live view once.
        """
        spans: list[Any] = []
        for seg in self._segments:
            starts, stops = self._ranges(seg)
            spans.extend(seg.buffer[int(a) : int(b)] for a, b in zip(starts, stops, strict=True))
        return spans

    def segments(self) -> list[Any]:
        """Return the flat segment buffers (e.g. to checkpoint them as a few large chunks)."""
        return [seg.buffer for seg in self._segments]

    @property
    def live_count(self) -> int:
        """Number of live (not released) views."""
        return sum(seg.live_count() for seg in self._segments)

    @property
    def live_elements(self) -> int:
        """Elements held by live views."""
        return sum(n for seg in self._segments for n, _ in seg.live.values())

    @property
    def capacity(self) -> int:
        """Elements allocated in all segments (live, released, padding and free)."""
        return sum(seg.capacity for seg in self._segments)


class ArenaSet:
    """One :class:`Arena` per ``(context, dtype)``, e.g. all gradients of a ParameterDict.

    Parameters
    ----------
    min_segment_elements : int, optional
        Passed to every arena.
    zeroed : bool, optional
        Passed to every arena: views are handed out all zeros.
    reuse_memory : bool, optional
        Passed to every arena (see :class:`Arena`).
    """

    def __init__(
        self,
        *,
        min_segment_elements: int = 1 << 16,
        zeroed: bool = False,
        reuse_memory: bool = False,
    ) -> None:
        self._min_segment = min_segment_elements
        self.zeroed = zeroed
        self.reuse_memory = reuse_memory
        self._arenas: dict[tuple[Any, np.dtype[Any]], Arena] = {}
        # (ctx, dtype.type, dtype.str) -> arena: hashing a numpy dtype costs microseconds
        self._fast: dict[tuple[Any, Any, str], Arena] = {}

    def arena(self, ctx: Any, dtype: Any) -> Arena:
        """Return (creating on first use) the arena for ``ctx`` and ``dtype``.

        Parameters
        ----------
        ctx : paramarena.Context
            Its device type selects the device backend through the plugin manager.
        dtype : dtype_like
            Element type.
        """
        if isinstance(dtype, np.dtype):
            hit = self._fast.get((ctx, dtype.type, dtype.str))
            if hit is not None:
                return hit
        if isinstance(dtype, str) and dtype == "bfloat16":
            import ml_dtypes

            dtype = ml_dtypes.bfloat16
        key = (ctx, np.dtype(dtype))
        found = self._arenas.get(key)
        if found is None:
            from paramarena.hooks.manager import get_device_spec

            device_type = "cpu" if ctx.device_type.startswith("cpu") else ctx.device_type
            backend = get_device_spec(device_type).backend
            backend.check(ctx.device_id)
            found = Arena(
                key[1],
                backend=backend,
                device_id=ctx.device_id,
                min_segment_elements=self._min_segment,
                zeroed=self.zeroed,
                reuse_memory=self.reuse_memory,
            )
            self._arenas[key] = found
        self._fast[(ctx, key[1].type, key[1].str)] = found
        return found

    def reserve(self, ctx: Any, dtype: Any, shapes: Sequence[Any]) -> None:
        """Make room for ``shapes`` in the ``(ctx, dtype)`` arena (see :meth:`Arena.reserve`)."""
        self.arena(ctx, dtype).reserve(shapes)

    def owns(self, ctx: Any, view: Any) -> bool:
        """Return whether ``view`` is a live view of this set's arena for ``ctx``."""
        dtype = view.dtype
        found = self._fast.get((ctx, dtype.type, dtype.str))
        if found is None:
            found = self._arenas.get((ctx, np.dtype(dtype)))
        return found is not None and found.owns(view)

    def allocate(self, ctx: Any, dtype: Any, shape: Any) -> Any:
        """Allocate one view of ``shape`` in the ``(ctx, dtype)`` arena (see Arena)."""
        return self.arena(ctx, dtype).allocate(shape)

    def allocate_many(self, ctx: Any, dtype: Any, shapes: Sequence[Any]) -> list[Any]:
        """Allocate views for ``shapes`` in the ``(ctx, dtype)`` arena (see Arena)."""
        return self.arena(ctx, dtype).allocate_many(shapes)

    def release(self, ctx: Any, view: Any) -> None:
        """Release ``view`` from the arena of ``ctx`` and its dtype."""
        self.arena(ctx, view.dtype).release(view)

    def zero(self, ctx: Any = None) -> None:
        """Zero every live view (of one context, or of all): one call per arena segment."""
        for (c, _), arena in self._arenas.items():
            if ctx is None or c == ctx:
                arena.zero()

    def arenas(self) -> list[Arena]:
        """Return every arena created so far."""
        return list(self._arenas.values())
