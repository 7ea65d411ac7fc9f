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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena import init as _initializer
from paramarena.devices.context import Context
from paramarena.hooks.manager import get_device_spec, get_plugin_manager
from paramarena.params import checks as chk
from paramarena.params.bulk import paused_gc

if TYPE_CHECKING:
    from paramarena.params.parameter import CtxArg, Parameter
    from paramarena.params.parameter_dict import ParameterDict

__all__ = ["initialize_batched"]


def _is_cpu(ctx: Context) -> bool:
    from paramarena.devices.cpu import CPUBackend

    return isinstance(get_device_spec(ctx.device_type).backend, CPUBackend)


class _Group:
    """Parameters of one batch that share a dtype and an initializer spec.

    Lists are parallel, one entry per parameter: its shape, its data view, the buffer that
    view lies in and its element offset there (``-1``: zero-size), and whether the view is its
    current one, re-filled in place.
    """

    __slots__ = ("buffers", "dtype", "in_place", "offsets", "params", "shapes", "spec", "views")

    def __init__(self, dtype: np.dtype[Any], spec: Any) -> None:
        self.dtype = dtype
        self.spec = spec
        self.params: list[Parameter] = []
        self.shapes: list[tuple[int, ...]] = []
        self.views: list[Any] = []
        self.buffers: list[Any] = []
        self.offsets: list[int] | np.ndarray = []
        self.in_place: list[bool] = []


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
    for p in params:
        shape = p._shape
        if (
            shape is None
            or p._storage is not storage
            or p._stype != "default"
            or p._grad_stype != "default"
            or (p._data is not None and not force_reinit)
        ):
            single.append(p)
            continue
        if type(shape) is not tuple:
            shape = tuple(shape)
        ok = known.get(shape)
        if ok is None:
            ok = known[shape] = (not shape or min(shape) > 0) or chk.shape_is_known(shape, p.name)
        if not ok:
            single.append(p)
            continue
        declared = p._dtype
        hit = dtypes.get(id(declared))
        if hit is None:
            hit = dtypes[id(declared)] = (declared, chk.as_np_dtype(declared))
        spec = init if p.init is None else p.init
        key = (id(declared), id(spec))
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(hit[1], spec)
        group.params.append(p)
        group.shapes.append(shape)
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
    batch_ctx = ctx_list[0] if len(ctx_list) == 1 and _is_cpu(ctx_list[0]) else None
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


def _in_place(p: Parameter, arena: Any, ctx: Context, shape: tuple[int, ...]) -> Any:
    """Return ``(view, buffer, offset)`` of ``p``'s current data if it can be re-filled in place."""
    if p._data is None or p._ctx_list != [ctx] or len(p._data) != 1:
        return None
    view = p._data[0]
    if not isinstance(view, np.ndarray) or view.shape != shape or view.dtype != arena.dtype:
        return None
    if not view.flags.c_contiguous or not view.flags.writeable:
        return None
    where = arena.locate(view)
    return None if where is None else (view, where[0], where[1])


def _allocate(pdict: ParameterDict, group: _Group, ctx: Context) -> list[Any]:
    """Give every parameter of ``group`` its data view (current one in place, or a new one).

    Returns the new views, to hand back on failure.
    """
    arena = pdict._storage.data.arena(ctx, group.dtype)
    count = len(group.params)
    group.views = [None] * count
    group.buffers = [None] * count
    group.offsets = [-1] * count
    group.in_place = [False] * count
    fresh: list[int] = []
    for i, p in enumerate(group.params):
        hit = None if p._data is None else _in_place(p, arena, ctx, group.shapes[i])
        if hit is None:
            fresh.append(i)
        else:
            group.views[i], group.buffers[i], group.offsets[i] = hit
            group.in_place[i] = True
    if len(fresh) == count:  # the usual case: nothing initialized yet
        views, buffer, offsets = arena.allocate_packed(group.shapes)
        group.views = views
        group.buffers = [buffer] * count
        group.offsets = offsets
        return list(views)
    if not fresh:
        return []
    views, buffer, offsets = arena.allocate_packed([group.shapes[i] for i in fresh])
    for i, view, offset in zip(fresh, views, offsets.tolist(), strict=True):
        group.views[i], group.buffers[i], group.offsets[i] = view, buffer, offset
    return list(views)


def _plans(group: _Group, seed: int) -> list[Any]:
    """Return each parameter's fill plan (None: its initializer is called on its own)."""
    obj = _initializer.create(group.spec)
    by_shape: dict[tuple[int, ...], Any] = {}
    plans = []
    for shape, p in zip(group.shapes, group.params, strict=True):
        if shape not in by_shape:
            desc = _initializer.InitDesc(p.name, {"__init__": group.spec}, seed=seed)
            by_shape[shape] = obj._fill_plan(desc, shape, group.dtype)
        plans.append(by_shape[shape])
    return plans


def _fill_one_by_one(
    group: _Group, plans: Sequence[Any], default: Any, seed: int, *, in_place: bool
) -> None:
    """Call the initializer of every parameter without a plan whose view is (not) in place."""
    for i, plan in enumerate(plans):
        if plan is None and group.in_place[i] is in_place:
            p = group.params[i]
            desc = _initializer.InitDesc(p.name, {"__init__": group.spec}, seed=seed)
            view = group.views[i]
            if in_place:
                view.fill(0)  # what a fresh (zeroed) view holds
            default(desc, view)


def _fill(group: _Group, plans: Sequence[Any], seed: int) -> None:
    """Fill every view of ``group`` with a plan: one kernel call per arena buffer."""
    from paramarena import kernels

    distinct: dict[Any, int] = {}
    for plan in plans:
        if plan not in distinct:
            distinct[plan] = len(distinct)
    table = np.array([(0, 0.0, 0.0) if q is None else q for q in distinct], np.float64)
    if len(distinct) == 1:
        index = np.zeros(len(plans), np.intp)
    else:
        index = np.fromiter(map(distinct.__getitem__, plans), np.intp, len(plans))
    offsets = np.asarray(group.offsets, np.int64)
    chosen = offsets >= 0
    if None in distinct:
        chosen &= index != distinct[None]
    buffers = group.buffers
    if len(set(map(id, buffers))) == 1:
        runs = [np.flatnonzero(chosen)]
    else:  # some views re-filled in place, in other segments: one call per buffer
        ids = np.fromiter(map(id, buffers), np.int64, len(buffers))
        runs = [np.flatnonzero(chosen & (ids == i)) for i in np.unique(ids[chosen])]
    sizes = np.fromiter(map(math.prod, group.shapes), np.int64, len(group.shapes))
    names = [p.name for p in group.params]
    for run in runs:
        if not run.size:
            continue
        rows = table[index[run]]
        whole = run.size == len(names)
        kernels.fill_random_ranges(
            buffers[int(run[0])],
            offsets if whole else offsets[run],
            sizes if whole else sizes[run],
            rows[:, 0].astype(np.int64),
            rows[:, 1],
            rows[:, 2],
            kernels.stream_keys(seed, names if whole else [names[i] for i in run.tolist()]),
        )


def _run(pdict: ParameterDict, groups: list[_Group], default: Any, ctx: Context, seed: int) -> None:
    plans = [_plans(group, seed) for group in groups]
    allocated: list[Any] = []
    try:
        for group in groups:
            allocated.extend(_allocate(pdict, group, ctx))
        # the initializers that may raise, on fresh views first (of every group): if one
        # raises, no parameter re-filled in place has been touched; the kernel fills last
        for in_place in (False, True):
            for group, group_plans in zip(groups, plans, strict=True):
                _fill_one_by_one(group, group_plans, default, seed, in_place=in_place)
        for group, group_plans in zip(groups, plans, strict=True):
            _fill(group, group_plans, seed)
    except BaseException:
        pdict._storage.release("data", [ctx] * len(allocated), allocated)
        raise
    for group in groups:
        _commit(pdict, group, ctx, seed)


def _commit(pdict: ParameterDict, group: _Group, ctx: Context, seed: int) -> None:
    """Make every view its parameter's data; gradients zero; hooks fire."""
    from paramarena.params.parameter import Parameter

    hook = get_plugin_manager().hook.paramarena_parameter_initialized
    listeners = bool(hook.get_hookimpls())
    ctx_map = chk.build_ctx_map([ctx])
    need = [
        i
        for i, p in enumerate(group.params)
        if p._grad_req != "null" and not (group.in_place[i] and p._grad_arrays is not None)
    ]
    grads: list[Any] = [None] * len(group.params)
    if need:
        arena = pdict._storage.grad.arena(ctx, group.dtype)
        views, _, _ = arena.allocate_packed([group.shapes[i] for i in need])
        for i, grad in zip(need, views, strict=True):
            grads[i] = grad
    options = {"seed": seed, "verbose": False}  # shared: only ever read, replaced whole
    for p, view, grad, in_place in zip(
        group.params, group.views, grads, group.in_place, strict=True
    ):
        p._init_options = options
        p._deferred_init = ()
        p.init_key = seed  # the key these values were drawn with (regenerates them)
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
