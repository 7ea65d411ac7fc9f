"""Loading a checkpoint into initialized parameters where they are: arena offsets, no view each.

When every parameter a :meth:`~paramarena.params.parameter_dict.ParameterDict.load` fills is
initialized already (dense, one CPU context, the stored shape and dtype) and its memory is a
row of its dict's arena (a pending row handed out by ``initialize`` or a fresh-dict load, or a
made view the arena handed out), the checkpoint is read straight into that memory by element
offsets (:func:`paramarena.storage.columns.load_packed` with ``check_first=True``): every
chunk file is checked first, nothing is written before every checksum passed, and then the very
files checked are gathered into the rows. No view is made for a pending row, and the
parameters' gradients are left as they are (as the per-view in-place load leaves them).
Anything else takes the general path of :mod:`paramarena.params.dict_loading`.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena.params import checks as chk
from paramarena.params.inplace_load import checks_first, dtype_cache, reads_in_place
from paramarena.params.packed_load import all_dense

if TYPE_CHECKING:
    from paramarena.params.parameter import CtxArg
    from paramarena.params.parameter_dict import ParameterDict
    from paramarena.storage.columns import PackedTarget, StoredColumns

__all__ = ["in_place_targets", "load_in_place"]

#: What an initialized parameter that can be loaded where it is holds: dense, not deferred,
#: this dict's arenas.
_LAZY = attrgetter("_lazy")
_ROW = attrgetter("_lazy_index")
_SHAPE = attrgetter("_shape")
_CTX = attrgetter("_ctx_list")
_DATA = attrgetter("_data_list")


def in_place_targets(
    pdict: ParameterDict,
    targets: Mapping[str, str],
    info: StoredColumns,
    ctx: CtxArg,
    filename: Any,
    options: Mapping[str, Any],
) -> list[PackedTarget] | None:
    """Return where each target's current memory is, by arena buffer; None if not all can.

    Each target must be a distinct dense parameter of this dict, initialized on one CPU
    context (the one given, if any), with the stored shape and dtype, whose data is a pending
    arena row or a live C-contiguous writable view of its arena; the checkpoint a local zarr
    directory (whose backend checks everything before writing). Anything else (including
    every error, which the general path raises) gives None. The checks run over columns.
    """
    if not targets or not checks_first(filename, options) or not reads_in_place(filename, options):
        return None
    params = pdict._params
    n = len(targets)
    plist = list(map(params.__getitem__, targets))
    storage = pdict._storage
    if not all_dense(plist, storage, empty=False):
        return None
    if len(set(map(id, plist))) != n:  # one parameter under two names: its places overlap
        return None
    keys = list(targets.values())
    shapes, dtypes, _ = info.select(keys)
    if list(map(_SHAPE, plist)) != shapes:
        return None
    lists = list(map(_CTX, plist))
    contexts = _one_cpu_context(lists[:1] if lists.count(lists[0]) == n else lists, ctx)
    if contexts is None:
        return None
    dtype_of = dtype_cache()
    try:
        distinct = dict.fromkeys(dtypes)
    except TypeError:  # an unhashable dtype spec
        return None
    stored_dtype = {spec: dtype_of(spec) for spec in distinct}
    # every parameter's buffer (an index into ``bufs``) and element offset in it
    bufs: list[Any] = []
    owner = np.empty(n, dtype=np.intp)
    offsets = np.empty(n, dtype=np.int64)
    lazies = list(map(_LAZY, plist))
    if lazies.count(None):
        data_runs = [None if lazy is None else lazy[0] for lazy in lazies]
    else:
        data_runs = list(map(_FIRST, lazies))
    made_count = data_runs.count(None)
    if made_count < n:
        pend = range(n) if not made_count else [i for i, r in enumerate(data_runs) if r is not None]
        if not _pending_places(plist, data_runs, pend, bufs, owner, offsets):
            return None
    if made_count:
        made = range(n) if made_count == n else [i for i, r in enumerate(data_runs) if r is None]
        if not _made_places(pdict, plist, made, shapes, contexts, bufs, owner, offsets):
            return None
    from paramarena.storage.columns import PackedTarget

    groups: list[tuple[Any, np.ndarray | None]]
    if len(bufs) == 1:
        groups = [(bufs[0], None)]
    else:
        order = np.argsort(owner, kind="stable")
        cuts = np.cumsum(np.bincount(owner, minlength=len(bufs)))[:-1]
        groups = list(zip(bufs, np.split(order, cuts), strict=True))
    out = []
    for buf, members in groups:
        if members is not None and not len(members):
            continue
        if not isinstance(buf, np.ndarray) or buf.ndim != 1 or not buf.flags.writeable:
            return None
        if not buf.flags.c_contiguous:
            return None
        if members is None:
            mine_dtypes: Any = distinct
            out.append(PackedTarget(buf, keys, shapes, offsets))
        else:
            at = members.tolist()
            mine_dtypes = set(map(dtypes.__getitem__, at))
            out.append(
                PackedTarget(
                    buf,
                    list(map(keys.__getitem__, at)),
                    list(map(shapes.__getitem__, at)),
                    offsets[members],
                )
            )
        if any(stored_dtype[d] != buf.dtype for d in mine_dtypes):
            return None  # a cast: the general path
    return out


def _one_cpu_context(lists: list[Any], ctx: CtxArg) -> list[Any] | None:
    """Return the context lists' distinct members if each is one CPU context (``ctx``'s)."""
    given = None if ctx is None else chk.normalize_ctx(ctx, "load")
    distinct = dict(zip(map(id, lists), lists, strict=True))
    for contexts in distinct.values():
        if contexts is None or len(contexts) != 1 or not chk.is_cpu_context(contexts[0]):
            return None
        if given is not None and set(given) != set(contexts):
            return None
    return list(distinct.values())


def _buffer_code(bufs: list[Any], buf: Any) -> int:
    """Return the index of ``buf`` in ``bufs`` (by identity), appending it if new."""
    for k, b in enumerate(bufs):
        if b is buf:
            return k
    bufs.append(buf)
    return len(bufs) - 1


def _pending_places(
    plist: list[Any],
    data_runs: list[Any],
    pend: Sequence[int],
    bufs: list[Any],
    owner: np.ndarray,
    offsets: np.ndarray,
) -> bool:
    """Place the parameters ``pend`` whose data rows are still pending: ``start + row * step``."""
    at = np.asarray(pend, dtype=np.intp)
    runs = data_runs if len(pend) == len(data_runs) else list(map(data_runs.__getitem__, pend))
    rows = np.fromiter(map(_ROW, map(plist.__getitem__, pend)), dtype=np.int64, count=len(pend))
    distinct = dict(zip(map(id, runs), runs, strict=True))
    index = dict(zip(distinct, range(len(distinct)), strict=True))
    codes = np.fromiter(map(index.__getitem__, map(id, runs)), dtype=np.intp, count=len(runs))
    starts = np.empty(len(distinct), dtype=np.int64)
    steps = np.empty(len(distinct), dtype=np.int64)
    owners = np.empty(len(distinct), dtype=np.intp)
    for k, run in enumerate(distinct.values()):
        if run.buffer is None or run.step <= 0:
            return False  # zero-size rows: no memory to write
        starts[k], steps[k] = run.start, run.step
        owners[k] = _buffer_code(bufs, run.buffer)
    offsets[at] = starts[codes] + rows * steps[codes]
    owner[at] = owners[codes]
    return True


def _made_places(
    pdict: ParameterDict,
    plist: list[Any],
    made: Sequence[int],
    shapes: list[tuple[int, ...]],
    contexts: list[Any],
    bufs: list[Any],
    owner: np.ndarray,
    offsets: np.ndarray,
) -> bool:
    """Place the parameters ``made`` whose data views are made: where their arena has them.

    Each view must be the very live view its arena handed out (found by identity in the
    arena's books), writable, of the stored shape.
    """
    mine = plist if len(made) == len(plist) else list(map(plist.__getitem__, made))
    data = list(map(_DATA, mine))
    if list(map(len, data)).count(1) != len(data):
        return False
    views = list(map(_FIRST, data))
    if list(map(type, views)).count(np.ndarray) != len(views):
        return False
    want = shapes if len(made) == len(plist) else list(map(shapes.__getitem__, made))
    # streamed (a shape tuple and a flags object per view, never all at once)
    if not all(map(operator.eq, map(_VSHAPE, views), want)) or not all(map(_WRITEABLE, views)):
        return False
    view_dtypes = list(map(_DTYPE, views))
    if len(contexts) == 1 and view_dtypes.count(view_dtypes[0]) == len(views):
        arena = pdict._storage.data.arena(contexts[0][0], view_dtypes[0])
        return _locate_all(arena, views, np.asarray(made, dtype=np.intp), bufs, owner, offsets)
    keyed: dict[tuple[int, Any], tuple[Any, list[int]]] = {}
    for j, (p, dt) in enumerate(zip(mine, view_dtypes, strict=True)):
        c = p._ctx_list[0]
        got = keyed.get((id(c), dt))
        if got is None:
            got = keyed[(id(c), dt)] = (c, [])
        got[1].append(j)
    made_at = np.asarray(made, dtype=np.intp)
    for (_, dt), (c, js) in keyed.items():
        arena = pdict._storage.data.arena(c, dt)
        part = list(map(views.__getitem__, js))
        if not _locate_all(arena, part, made_at[js], bufs, owner, offsets):
            return False
    return True


def _locate_all(
    arena: Any,
    views: list[Any],
    at: np.ndarray,
    bufs: list[Any],
    owner: np.ndarray,
    offsets: np.ndarray,
) -> bool:
    """Find every view in ``arena``'s books (by identity, as ``Arena.locate``), in bulk.

    Reads the arena's segments (``Arena.locate`` for each of 100k views costs a Python call
    chain each): the views entered in a segment's books, checked to be the very objects held
    there, and the views made from runs not entered yet, found in the run's own views (held
    by the run: an id there is that view's). Entering the runs (what ``Segment.by_id``
    does) would cost two dict entries and a tuple per row of every run.
    """
    left = np.ones(len(views), dtype=bool)
    for seg in arena._segments:
        books: list[tuple[dict[int, int], dict[int, Any] | None]] = []
        if seg._by_id:
            books.append((seg._by_id, seg._live))
        for starts, _, run in seg.pending:
            made = run._views
            if made is not None:
                books.append((dict(zip(map(id, made), starts, strict=True)), None))
        for by_id, live in books:
            if (
                _place_found(seg, by_id, live, views, at, bufs, owner, offsets, left)
                and not left.any()
            ):
                return True
    return not left.any()


def _place_found(
    seg: Any,
    by_id: dict[int, int],
    live: dict[int, Any] | None,
    views: list[Any],
    at: np.ndarray,
    bufs: list[Any],
    owner: np.ndarray,
    offsets: np.ndarray,
    left: np.ndarray,
) -> bool:
    """Place the views found in ``by_id`` (checked against ``live`` if given); say if any."""
    offs: list[Any] = list(map(by_id.get, map(id, views)))
    missing = offs.count(None)
    if missing == len(offs):
        return False
    hits = range(len(offs)) if not missing else [j for j, o in enumerate(offs) if o is not None]
    found = offs if not missing else list(map(offs.__getitem__, hits))
    if live is not None:
        mine = views if not missing else list(map(views.__getitem__, hits))
        entries: list[Any] = list(map(live.get, found))
        if entries.count(None) or not all(map(operator.is_, map(_SECOND, entries), mine)):
            return False  # an id reused by another array: not the arena's view (left unplaced)
    k = _buffer_code(bufs, seg.buffer)
    where = at if not missing else at[np.asarray(hits, dtype=np.intp)]
    offsets[where] = np.fromiter(found, np.int64, len(found))
    owner[where] = k
    left[hits] = False
    return True


_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)
_VSHAPE = attrgetter("shape")
_DTYPE = attrgetter("dtype")
_WRITEABLE = attrgetter("flags.writeable")


def load_in_place(
    pdict: ParameterDict,
    filename: Any,
    places: list[PackedTarget],
    targets: Mapping[str, str],
    info: StoredColumns,
    options: Mapping[str, Any],
    set_keys: bool = True,
) -> bool:
    """Read the checkpoint into ``places`` (:func:`in_place_targets`), all or nothing.

    The backend checks every chunk and every parameter before the first byte is written
    (``check_first``), so that after an error raised by the check every parameter keeps its
    values. The parameters keep their arrays (pending rows stay pending) and gradients.
    Returns whether every parameter got its stored init key (False: none was given one here;
    ``set_keys=False``: none is).

    Raises
    ------
    paramarena.errors.StorageError
        As :func:`paramarena.storage.load` (a corrupt checkpoint names the file and the
        parameters).
    """
    from paramarena.errors import CorruptCheckpointError
    from paramarena.storage.columns import load_packed

    other = load_packed(filename, places, **{**options, "check_first": True})
    if other:  # refused by the check pass, so never here; kept as a guard
        raise CorruptCheckpointError(
            f"zarr checkpoint {filename!r}: {sorted(other)[:3]} changed shape or dtype during "
            "the load."
        )
    column = info.init_keys
    if not set_keys or column is None or len(targets) != len(info.names):
        return False
    if list(targets.values()) != list(info.names):
        return False
    params = pdict._params
    deque(
        map(setattr, map(params.__getitem__, targets), repeat("init_key"), column.tolist()),
        maxlen=0,
    )
    return True
