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


class _Job:
    """One parameter of the batch: where its values go and how they are made."""

    __slots__ = ("dtype", "in_place", "init", "param", "plan", "shape", "view", "where")

    def __init__(self, param: Parameter, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.param = param
        self.shape = shape
        self.dtype = dtype
        self.init: Any = None
        self.plan: tuple[int, float, float] | None = None
        self.view: Any = None
        self.in_place = False
        self.where: tuple[Any, int] | None = None  # (arena buffer, offset) of view


def _batchable(p: Parameter, pdict: ParameterDict, force_reinit: bool) -> bool:
    if p._storage is not pdict._storage or p._stype != "default" or p._grad_stype != "default":
        return False
    if p._data is not None and not force_reinit:
        return False  # Parameter.initialize warns and skips it
    shape = p._shape
    if shape is None:
        return False
    return (not shape or min(shape) > 0) or chk.shape_is_known(shape, p.name)


def _in_place(job: _Job, arena: Any, ctx: Context) -> bool:
    """Point ``job`` at its parameter's current data view if it can be re-filled in place."""
    p = job.param
    if p._data is None or p._ctx_list != [ctx] or len(p._data) != 1:
        return False
    view = p._data[0]
    if not isinstance(view, np.ndarray) or view.shape != job.shape or view.dtype != job.dtype:
        return False
    if not view.flags.c_contiguous or not view.flags.writeable:
        return False
    where = arena.locate(view)
    if where is None:
        return False
    job.view, job.in_place, job.where = view, True, where
    return True


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
    ctx_list = chk.normalize_ctx(ctx, params[0].name if params else "")
    batch_ctx = ctx_list[0] if len(ctx_list) == 1 and _is_cpu(ctx_list[0]) else None
    jobs: list[_Job] = []
    single: list[Parameter] = []
    for p in params:
        if batch_ctx is not None and not verbose and _batchable(p, pdict, force_reinit):
            assert p._shape is not None
            jobs.append(_Job(p, tuple(p._shape), chk.as_np_dtype(p._dtype)))
        else:
            single.append(p)
    if jobs:
        assert batch_ctx is not None
        _run(pdict, jobs, default, init, batch_ctx, seed)
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


def _resolve(jobs: Sequence[_Job], init: Any, seed: int) -> None:
    """Pick each job's initializer and fill plan (initializers are created once per spec)."""
    created: dict[Any, Any] = {}
    plans: dict[tuple[int, tuple[int, ...], np.dtype[Any]], Any] = {}
    for job in jobs:
        spec = init if job.param.init is None else job.param.init
        key = spec if isinstance(spec, str) else id(spec)
        obj = created.get(key)
        if obj is None:
            obj = created[key] = _initializer.create(spec)
        job.init = spec
        pkey = (id(obj), job.shape, job.dtype)
        if pkey not in plans:
            desc = _initializer.InitDesc(job.param.name, {"__init__": spec}, seed=seed)
            plans[pkey] = obj._fill_plan(desc, job.shape, job.dtype)
        job.plan = plans[pkey]


def _allocate(pdict: ParameterDict, jobs: Sequence[_Job], ctx: Context) -> list[_Job]:
    """Give every job its data view (current one in place, or a new zeroed one).

    Returns the jobs that got new views, to hand back on failure.
    """
    fresh: dict[np.dtype[Any], list[_Job]] = {}
    arenas: dict[np.dtype[Any], Any] = {}
    for job in jobs:
        if job.param._data is not None:
            arena = arenas.get(job.dtype)
            if arena is None:
                arena = arenas[job.dtype] = pdict._storage.data.arena(ctx, job.dtype)
            if _in_place(job, arena, ctx):
                continue
        fresh.setdefault(job.dtype, []).append(job)
    allocated: list[_Job] = []
    for dtype, group in fresh.items():
        arena = pdict._storage.data.arena(ctx, dtype)
        views, buffer, offsets = arena.allocate_packed([j.shape for j in group])
        for job, view, offset in zip(group, views, offsets.tolist(), strict=True):
            job.view = view
            job.where = (buffer, offset)
            allocated.append(job)
    return allocated


def _fill(jobs: Sequence[_Job], seed: int) -> None:
    """Fill the views of every job with a plan: one kernel call per arena buffer."""
    from paramarena import kernels

    groups: dict[int, list[_Job]] = {}
    for job in jobs:
        where = job.where
        if job.plan is not None and where is not None and where[1] >= 0:
            groups.setdefault(id(where[0]), []).append(job)
    for group in groups.values():
        wheres = [j.where for j in group]
        plans = np.array([j.plan for j in group], dtype=np.float64)
        kernels.fill_random_ranges(
            wheres[0][0],  # type: ignore[index]
            np.array([w[1] for w in wheres], np.int64),  # type: ignore[index]
            np.array([j.view.size for j in group], np.int64),
            plans[:, 0].astype(np.int64),
            plans[:, 1],
            plans[:, 2],
            kernels.stream_keys(seed, [j.param.name for j in group]),
        )


def _fill_one_by_one(jobs: Sequence[_Job], default: Any, seed: int) -> None:
    """Call the initializer of every job without a plan, one by one.

    Fresh views first: if an initializer raises, parameters re-filled in place are untouched.
    """
    for in_place in (False, True):
        for job in jobs:
            if job.plan is None and job.in_place is in_place:
                desc = _initializer.InitDesc(job.param.name, {"__init__": job.init}, seed=seed)
                if in_place:
                    job.view.fill(0)  # what a fresh (zeroed) view holds
                default(desc, job.view)


def _run(
    pdict: ParameterDict, jobs: list[_Job], default: Any, init: Any, ctx: Context, seed: int
) -> None:
    _resolve(jobs, init, seed)
    allocated = _allocate(pdict, jobs, ctx)
    try:
        _fill_one_by_one(jobs, default, seed)
        _fill(jobs, seed)
    except BaseException:
        for job in allocated:
            pdict._storage.release("data", [ctx], [job.view])
        raise
    _commit(pdict, jobs, ctx, seed)


def _new_grads(pdict: ParameterDict, jobs: Sequence[_Job], ctx: Context) -> dict[int, Any]:
    """Allocate zeroed gradient views for ``jobs`` (one packed allocation per dtype)."""
    groups: dict[np.dtype[Any], list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.dtype, []).append(job)
    grads: dict[int, Any] = {}
    for dtype, group in groups.items():
        arena = pdict._storage.grad.arena(ctx, dtype)
        views, _, _ = arena.allocate_packed([j.shape for j in group])
        for job, view in zip(group, views, strict=True):
            grads[id(job)] = view
    return grads


def _commit(pdict: ParameterDict, jobs: Sequence[_Job], ctx: Context, seed: int) -> None:
    """Make every job's view its parameter's data; gradients zero; hooks fire."""
    from paramarena.params.parameter import Parameter

    hook = get_plugin_manager().hook.paramarena_parameter_initialized
    listeners = bool(hook.get_hookimpls())
    ctx_list = [ctx]
    ctx_map = chk.build_ctx_map(ctx_list)
    need = [
        j
        for j in jobs
        if j.param._grad_req != "null" and not (j.in_place and j.param._grad_arrays is not None)
    ]
    grads = _new_grads(pdict, need, ctx)
    options = {"seed": seed, "verbose": False}
    for job in jobs:
        p = job.param
        p._init_options = options.copy()
        p._deferred_init = ()
        p.init_key = seed  # the key these values were drawn with (regenerates them)
        old_grads = p._grad_arrays
        if job.in_place and old_grads is not None and p._grad_req != "null":
            for g in old_grads:
                if g.any():  # a never-written buffer stays the system's zero pages
                    g.fill(0)
        else:
            if old_grads is not None:
                p._release("grad", old_grads)
            if not job.in_place:
                if p._data is not None:
                    p._release("data", p._data)
                p._ctx_list = [ctx]
                p._ctx_map = ctx_map
                p._data = [job.view]
            grad = grads.get(id(job))
            p._grad_arrays = None if grad is None else [grad]
        if listeners:
            hook(parameter=p, ctx=[ctx])
    if need:
        Parameter._grad_epoch += 1
