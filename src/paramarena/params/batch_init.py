"""Batched ``ParameterDict.initialize``: one kernel call per arena for many parameters.

Private helper of :meth:`paramarena.params.parameter_dict.ParameterDict.initialize`. Parameters
that this dict's arenas hold on one CPU context, with a known dense shape, are initialized
together: their data views are allocated in one go per ``(context, dtype)`` arena, the stream
keys of all of them are derived in one loop, every random initializer with a fill plan
(:meth:`paramarena.init.Initializer._fill_plan`: Uniform, Normal, Xavier, MSRAPrelu) fills all
its parameters of one arena with one kernel call
(:func:`paramarena.kernels.fill_random_ranges`), and the other initializers are called per
parameter on the arena view as before. The values are bit-identical to per-parameter
initialization. Re-initializing (``force_reinit``) a parameter whose shape, dtype and context
are unchanged fills its current arrays in place: no second copy of the model is allocated.

Everything else (deferred shapes, several or non-CPU contexts, parameters of other dicts,
verbose logging) goes through :meth:`Parameter.initialize` one parameter at a time.
"""

from __future__ import annotations

import math
import operator
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena import init as _initializer
from paramarena.devices.context import Context
from paramarena.devices.segments import RowRun
from paramarena.hooks.manager import get_plugin_manager
from paramarena.params import checks as chk
from paramarena.params.bulk import paused_gc

if TYPE_CHECKING:
    from paramarena.params.parameter import CtxArg, Parameter
    from paramarena.params.parameter_dict import ParameterDict

__all__ = ["initialize_batched"]

_NAME = operator.attrgetter("name")
_UNSET = object()
#: from this many new parameters on, the kernel fills them while their state is set
_BACKGROUND_FROM = 4096


class _Group:
    """Parameters of one batch that share a dtype and an initializer spec.

    Lists are parallel, one entry per parameter: its shape, its data view, the buffer that
    view lies in and its element offset there (``-1``: zero-size), and whether the view is its
    current one, re-filled in place.
    """

    __slots__ = (
        "_shapes",
        "buffers",
        "by_shape",
        "deferred",
        "dtype",
        "fresh",
        "gradless",
        "in_place",
        "offsets",
        "params",
        "runs",
        "spec",
        "views",
    )

    def __init__(self, dtype: np.dtype[Any], spec: Any) -> None:
        self.dtype = dtype
        self.spec = spec
        self.params: list[Parameter] = []
        #: positions in ``params`` of each distinct shape (``Arena.group_shapes`` of ``shapes``)
        self.by_shape: dict[tuple[int, ...], list[int]] = {}
        #: every view is new (nothing re-filled in place): one buffer, no per-view checks
        self.fresh = True
        #: some parameter has ``grad_req == "null"`` / a pending deferred initialization
        self.gradless = False
        self.deferred = False
        #: when fresh: each distinct shape's positions and views (``by_shape`` order); the
        #: view objects are made only if asked for (``views`` is then unused)
        self.runs: list[tuple[list[int], RowRun]] = []
        self._shapes: list[tuple[int, ...]] | None = None
        self.views: list[Any] = []
        self.buffers: list[Any] = []
        self.offsets: list[int] | np.ndarray = []
        self.in_place: list[bool] = []

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Each parameter's shape, in ``params`` order (made from ``by_shape`` when needed)."""
        if self._shapes is None:
            shapes: list[Any] = [None] * len(self.params)
            for shape, members in self.by_shape.items():
                for i in members:
                    shapes[i] = shape
            self._shapes = shapes
        return self._shapes


def _collect(
    pdict: ParameterDict, params: Sequence[Parameter], init: Any, force_reinit: bool
) -> tuple[list[_Group], list[Parameter]]:
    """Split ``params`` into batchable groups by ``(dtype, initializer spec)`` and the rest.

    A parameter is batchable when this dict's arenas hold it, its storage types are dense,
    its shape is known, and it is not initialized yet (or ``force_reinit``).
    """
    storage = pdict._storage
    known: dict[Any, bool] = {}
    dtypes: dict[int, tuple[Any, np.dtype[Any]]] = {}  # id(declared dtype) -> (it, numpy dtype)
    groups: dict[tuple[int, int], _Group] = {}
    single: list[Parameter] = []
    # the group of the parameter before (most parameters share a dtype and an initializer)
    last_declared: Any = _UNSET
    last_attr: Any = _UNSET
    group: _Group | None = None
    by_shape: dict[tuple[int, ...], list[int]] = {}
    members_of = by_shape.get
    grouped: list[Parameter] = []
    for p in params:
        shape = p._shape
        if (
            shape is None
            or p._storage is not storage
            or p._stype != "default"
            or p._grad_stype != "default"
            or ((has_data := p._data_list is not None or p._lazy is not None) and not force_reinit)
        ):
            single.append(p)
            continue
        if type(shape) is not tuple:
            shape = tuple(shape)
        declared, attr = p._dtype, p.init
        if declared is not last_declared or attr is not last_attr:
            hit = dtypes.get(id(declared))
            if hit is None:
                hit = dtypes[id(declared)] = (declared, chk.as_np_dtype(declared))
            spec = init if attr is None else attr
            key = (id(declared), id(spec))
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(hit[1], spec)
            last_declared, last_attr = declared, attr
            by_shape, grouped = group.by_shape, group.params
            members_of = by_shape.get
        assert group is not None
        members = members_of(shape)
        if members is None:
            ok = known.get(shape)
            if ok is None:
                ok = known[shape] = (not shape or min(shape) > 0) or chk.shape_is_known(
                    shape, p.name
                )
            if not ok:
                single.append(p)
                continue
            members = by_shape[shape] = []
        members.append(len(grouped))
        if has_data:
            group.fresh = False  # re-filled in place where possible: checked per parameter
        if p._grad_req == "null":
            group.gradless = True
        if p._deferred_init:
            group.deferred = True
        grouped.append(p)
    # groups with equal numpy dtypes and specs given as equal-but-distinct objects stay apart:
    # that only costs one more kernel call
    return list(groups.values()), single


def initialize_batched(
    pdict: ParameterDict,
    init: Any,
    ctx: CtxArg,
    *,
    verbose: bool,
    force_reinit: bool,
    seed: int,
) -> None:
    """Initialize every parameter of ``pdict`` (see the module docstring)."""
    with paused_gc():
        _initialize(pdict, init, ctx, verbose=verbose, force_reinit=force_reinit, seed=seed)


def _initialize(
    pdict: ParameterDict,
    init: Any,
    ctx: CtxArg,
    *,
    verbose: bool,
    force_reinit: bool,
    seed: int,
) -> None:
    params = list(pdict.values())
    if not params:
        return
    default = _initializer.create(init)
    ctx_list = chk.normalize_ctx(ctx, params[0].name)
    batch_ctx = ctx_list[0] if len(ctx_list) == 1 and chk.is_cpu_context(ctx_list[0]) else None
    groups: list[_Group]
    if batch_ctx is None or verbose:
        groups, single = [], params
    else:
        groups, single = _collect(pdict, params, init, force_reinit)
    if groups:
        assert batch_ctx is not None
        _run(pdict, groups, default, batch_ctx, seed)
    if single:
        from paramarena.params import dict_loading

        dict_loading.reserve(
            pdict,
            [
                (p, p.shape, chk.as_np_dtype(p.dtype), chk.normalize_ctx(ctx, p.name))
                for p in single
                if (p._data is None or force_reinit) and chk.shape_is_known(p.shape, p.name)
            ],
        )
        for p in single:
            p.initialize(None, ctx, init, force_reinit=force_reinit, seed=seed, verbose=verbose)


def _in_place(p: Parameter, arena: Any, shape: tuple[int, ...]) -> Any:
    """Return ``(view, buffer, offset)`` of ``p``'s current data if it can be re-filled in place.

    ``p`` holds made arrays on the batch's one context (checked by the caller).
    """
    data = p._data_list
    if data is None or len(data) != 1:
        return None
    view = data[0]
    if not isinstance(view, np.ndarray) or view.shape != shape or view.dtype != arena.dtype:
        return None
    if not view.flags.c_contiguous or not view.flags.writeable:
        return None
    where = arena.locate(view)
    return None if where is None else (view, where[0], where[1])


def _allocate(pdict: ParameterDict, group: _Group, ctx: Context) -> None:
    """Give every parameter of ``group`` its data view (current one in place, or a new one)."""
    arena = pdict._storage.data.arena(ctx, group.dtype)
    count = len(group.params)
    if group.fresh:  # the usual case: nothing initialized yet
        group.runs, buffer, group.offsets = arena.allocate_rows(group.by_shape, count)
        group.buffers = [buffer]
        group.in_place = [False] * count
        return
    fresh: list[int] = []
    segments = {id(b) for b in arena.segments()}
    shapes = group.shapes
    views: list[Any] = [None] * count
    buffers: list[Any] = [None] * count
    offsets: list[int] = [-1] * count
    in_place = [False] * count
    # the context list and the run of the parameter before (a batch shares them): checked once
    last_list: Any = _UNSET
    same = False
    last_run: Any = _UNSET
    run_ok = False
    for i, p in enumerate(group.params):
        ctx_list = p._ctx_list
        if ctx_list is not last_list:
            last_list, same = ctx_list, ctx_list == [ctx]
        lazy = p._lazy
        if lazy is not None and lazy[0] is not None:
            # arrays not made yet: in place if still of this shape and arena
            run = lazy[0]
            if run is not last_run:
                last_run, run_ok = run, id(run.buffer) in segments
            if same and run_ok and run.shape == shapes[i]:
                buffers[i] = run.buffer
                offsets[i] = run.start + p._lazy_index * run.step
                in_place[i] = True
                continue
            hit = None
        elif p._data_list is None or not same:
            hit = None
        else:
            hit = _in_place(p, arena, shapes[i])
        if hit is None:
            fresh.append(i)
        else:
            views[i], buffers[i], offsets[i] = hit
            in_place[i] = True
    group.views, group.buffers, group.offsets, group.in_place = views, buffers, offsets, in_place
    if not fresh:
        return
    made, buffer, placed = arena.allocate_packed([shapes[i] for i in fresh])
    for i, view, offset in zip(fresh, made, placed.tolist(), strict=True):
        views[i], buffers[i], offsets[i] = view, buffer, offset


def _plans(group: _Group, seed: int) -> dict[tuple[int, ...], Any]:
    """Return the fill plan of each distinct shape (None: the initializer is called per view)."""
    obj = _initializer.create(group.spec)
    plans: dict[tuple[int, ...], Any] = {}
    for shape, members in group.by_shape.items():
        p = group.params[members[0]]
        desc = _initializer.InitDesc(p.name, {"__init__": group.spec}, seed=seed)
        plans[shape] = obj._fill_plan(desc, shape, group.dtype)
    return plans


def _fill_one_by_one(
    group: _Group, plans: dict[tuple[int, ...], Any], default: Any, seed: int, *, in_place: bool
) -> None:
    """Call the initializer of every parameter without a plan whose view is (not) in place."""
    for shape, members, views in _views_by_shape(group):
        if plans[shape] is None:
            for i, view in zip(members, views(), strict=True):
                if group.in_place[i] is in_place:
                    p = group.params[i]
                    desc = _initializer.InitDesc(p.name, {"__init__": group.spec}, seed=seed)
                    if in_place:
                        view.fill(0)  # what a fresh (zeroed) view holds
                    default(desc, view)


def _views_by_shape(
    group: _Group,
) -> Iterator[tuple[tuple[int, ...], list[int], Callable[[], list[Any]]]]:
    """Yield each distinct shape of ``group``, its positions and how to get their data views."""
    if group.fresh:
        for (shape, members), (_, run) in zip(group.by_shape.items(), group.runs, strict=True):
            yield shape, members, run.views
    else:
        for shape, members in group.by_shape.items():
            yield shape, members, partial(_pick, group, members)


def _pick(group: _Group, positions: list[int]) -> list[Any]:
    """Return the data views at ``positions`` (made now for those re-filled while pending)."""
    views = group.views
    return [views[i] if views[i] is not None else _only_view(group.params[i]) for i in positions]


def _only_view(p: Parameter) -> Any:
    data = p._data
    assert data is not None
    return data[0]


def _scattered_views(group: _Group) -> list[Any]:
    """Return the data view of every parameter of a fresh ``group``, in ``params`` order."""
    views: list[Any] = [None] * len(group.params)
    for members, run in group.runs:  # views[members[j]] = run.views()[j], looped in C
        deque(map(views.__setitem__, members, run.views()), maxlen=0)
    return views


def _new_views(group: _Group) -> list[Any]:
    """Return the data views ``_allocate`` made for ``group`` (to hand back on failure)."""
    if group.fresh:
        return [view for _, run in group.runs for view in run.views()]
    return [v for v, kept in zip(group.views, group.in_place, strict=True) if not kept]


def _fill_calls(
    group: _Group, plans: dict[tuple[int, ...], Any], seed: int, *, prepared: bool = False
) -> list[Callable[[], None]]:
    """Return the kernel calls that fill every view of ``group`` with a plan (one per buffer).

    Everything but the fill itself (the ranges, their parameters and stream keys) is done here.
    ``prepared``: the calls are to run in another thread while this one goes on; here only the
    names' bytes are laid out (:func:`~paramarena.kernels.prepare_stream_keys`), and each call
    derives its keys on the kernel threads, checks its ranges and makes the kernels' work items
    (:func:`~paramarena.kernels.prepare_random_ranges`), then fills.
    """
    from paramarena import kernels

    count = len(group.params)
    distinct: dict[Any, int] = {}
    for plan in plans.values():
        if plan is not None and plan not in distinct:
            distinct[plan] = len(distinct)
    if not distinct:
        return []
    table = np.array(list(distinct), np.float64)
    index = np.full(count, -1, np.intp)
    sizes = np.zeros(count, np.int64)
    for shape, members in group.by_shape.items():
        plan = plans[shape]
        if plan is not None:
            where: Any = slice(None)
            if len(members) < count:  # one conversion of the positions for both
                where = np.fromiter(members, np.intp, len(members))
            index[where] = distinct[plan]
            sizes[where] = math.prod(shape)
    offsets = np.asarray(group.offsets, np.int64)
    chosen = (offsets >= 0) & (index >= 0)
    buffers = group.buffers
    if group.fresh:
        runs = [None if chosen.all() else np.flatnonzero(chosen)]
    else:  # some views re-filled in place, in other segments: one call per buffer
        ids = np.fromiter(map(id, buffers), np.int64, len(buffers))
        # (np.unique would import numpy.ma, ~12 ms, on its first use in a process)
        runs = [np.flatnonzero(chosen & (ids == i)) for i in dict.fromkeys(ids[chosen].tolist())]
    names = list(map(_NAME, group.params))
    calls: list[Callable[[], None]] = []
    for run in runs:
        if run is not None and not run.size:
            continue
        rows = table[index if run is None else index[run]]
        run_names = names if run is None else [names[i] for i in run.tolist()]
        keys, derive = (
            kernels.prepare_stream_keys(seed, run_names)
            if prepared
            else (kernels.stream_keys(seed, run_names), None)
        )
        args = (
            buffers[0 if run is None else int(run[0])],
            offsets if run is None else offsets[run],
            sizes if run is None else sizes[run],
            rows[:, 0].astype(np.int64),
            rows[:, 1],
            rows[:, 2],
            keys,
        )
        if derive is None:
            calls.append(partial(kernels.fill_random_ranges, *args))
        else:
            calls.append(partial(_derive_then_fill, derive, args))
    return calls


def _derive_then_fill(derive: Callable[[], None], args: tuple[Any, ...]) -> None:
    """Derive the stream keys (into ``args[-1]``), then fill the ranges ``args`` describe."""
    from paramarena import kernels

    derive()
    kernels.prepare_random_ranges(*args)()


def _run(pdict: ParameterDict, groups: list[_Group], default: Any, ctx: Context, seed: int) -> None:
    plans = [_plans(group, seed) for group in groups]
    allocated: list[_Group] = []
    calls: list[Callable[[], None]] = []
    try:
        for group in groups:
            _allocate(pdict, group, ctx)
            allocated.append(group)
        # the initializers that may raise, on fresh views first (of every group): if one
        # raises, no parameter re-filled in place has been touched; the kernel fills last
        for in_place in (False, True):
            for group, group_plans in zip(groups, plans, strict=True):
                _fill_one_by_one(group, group_plans, default, seed, in_place=in_place)
        background = _fills_in_background(groups)
        for group, group_plans in zip(groups, plans, strict=True):
            calls.extend(_fill_calls(group, group_plans, seed, prepared=background))
        if not background:
            for call in calls:
                call()
    except BaseException:
        views = [view for group in allocated for view in _new_views(group)]
        pdict._storage.release("data", [ctx] * len(views), views)
        raise
    if not background:
        for group in groups:
            _commit(pdict, group, ctx, seed)
        return
    # many new parameters: the kernel threads fill while this thread hands every parameter
    # its place (nothing can see the values before this call returns: no hook listens)
    failed: list[BaseException] = []
    worker = threading.Thread(target=_run_calls, args=(calls, failed), name="paramarena-fill")
    # the worker and the kernel threads each take the GIL once to start their call: with the
    # default 5 ms switch interval they would wait that long behind this thread's Python loop
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 1e-4))
    try:
        worker.start()
        for group in groups:
            _commit(pdict, group, ctx, seed)
    finally:
        sys.setswitchinterval(interval)
        worker.join()
    if failed:
        _undo(pdict, groups, ctx)
        raise failed[0]


def _fills_in_background(groups: list[_Group]) -> bool:
    """Whether to fill while committing: many new parameters, and no hook listening."""
    if sum(len(g.params) for g in groups) < _BACKGROUND_FROM or not all(g.fresh for g in groups):
        return False
    hook = get_plugin_manager().hook.paramarena_parameter_initialized
    return not hook.get_hookimpls()


def _run_calls(calls: list[Callable[[], None]], failed: list[BaseException]) -> None:
    try:
        for call in calls:
            call()
    except BaseException as exc:  # handed to the thread that waits for this one
        failed.append(exc)


def _undo(pdict: ParameterDict, groups: list[_Group], ctx: Context) -> None:
    """Make the parameters of fresh ``groups`` uninitialized again, their views released."""
    for group in groups:
        data: list[Any] = []
        grads: list[Any] = []
        for p in group.params:
            if p._data is not None:
                data.extend(p._data)
            if p._grad_arrays is not None:
                grads.extend(p._grad_arrays)
            p._data = p._grad_arrays = None
            p._ctx_list = p._ctx_map = None
            p.init_key = None
            p._init_options = {}
        pdict._storage.release("data", [ctx] * len(data), data)
        pdict._storage.release("grad", [ctx] * len(grads), grads)


def _commit(pdict: ParameterDict, group: _Group, ctx: Context, seed: int) -> None:
    """Make every view its parameter's data; gradients zero; hooks fire."""
    from paramarena.params.parameter import Parameter

    hook = get_plugin_manager().hook.paramarena_parameter_initialized
    listeners = bool(hook.get_hookimpls())
    ctx_map = chk.build_ctx_map([ctx])
    params = group.params
    count = len(params)
    options = {"seed": seed, "verbose": False}  # shared: only ever read, replaced whole
    if group.fresh and not group.gradless:
        # the usual case: nothing initialized before, every parameter has gradients. Each
        # parameter gets its place in the data and gradient runs; its arrays are made when
        # first asked for (``ParameterArrays``)
        arena = pdict._storage.grad.arena(ctx, group.dtype)
        grad_runs, _, _ = arena.allocate_rows(group.by_shape, count)
        ctx_list = [ctx]  # shared: only ever read, replaced whole
        if group.deferred:
            for p in params:  # ``_init_options`` only matters while a deferred init is pending
                p._deferred_init = ()
        for (members, data_run), (_, grad_run) in zip(group.runs, grad_runs, strict=True):
            pair = (data_run, grad_run)
            for row, p in enumerate(map(params.__getitem__, members)):
                p.init_key = seed  # the key these values were drawn with (regenerates them)
                p._ctx_list = ctx_list
                p._ctx_map = ctx_map
                p._lazy = pair
                p._lazy_index = row
        if listeners:
            for p in params:
                hook(parameter=p, ctx=[ctx])
        if count:
            Parameter._grad_epoch += 1
        return
    need = [
        i
        for i, p in enumerate(params)
        if p._grad_req != "null"
        and not (group.in_place[i] and (p._lazy is not None or p._grad_arrays is not None))
    ]
    grads = [None] * count
    if need:
        arena = pdict._storage.grad.arena(ctx, group.dtype)
        views, _, _ = arena.allocate_packed([group.shapes[i] for i in need])
        for i, grad in zip(need, views, strict=True):
            grads[i] = grad
    views = _scattered_views(group) if group.fresh else group.views
    for p, view, grad, in_place in zip(params, views, grads, group.in_place, strict=True):
        p._init_options = options
        p._deferred_init = ()
        p.init_key = seed  # the key these values were drawn with (regenerates them)
        if in_place and p._lazy is not None:
            # re-filled while its arrays are still to be made: no gradient view was ever
            # handed out, so the gradients are still zero
            if listeners:
                hook(parameter=p, ctx=[ctx])
            continue
        old_grads = p._grad_arrays
        if in_place and old_grads is not None and p._grad_req != "null":
            for g in old_grads:
                if g.any():  # a never-written buffer stays the system's zero pages
                    g.fill(0)
        else:
            if old_grads is not None:
                p._release("grad", old_grads)
            if not in_place:
                if p._data is not None:
                    p._release("data", p._data)
                p._ctx_list = [ctx]
                p._ctx_map = ctx_map
                p._data = [view]
            p._grad_arrays = None if grad is None else [grad]
        if listeners:
            hook(parameter=p, ctx=[ctx])
    if need:
        Parameter._grad_epoch += 1
