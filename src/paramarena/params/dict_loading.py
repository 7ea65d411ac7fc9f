"""Loading checkpoints into a ``ParameterDict``: arena room, destinations, adoption.

The steps behind :meth:`~paramarena.params.parameter_dict.ParameterDict.load` and
:meth:`~paramarena.params.parameter_dict.ParameterDict.load_dict`: reserve arena room for the
arrays about to arrive, hand the loader arena views to read straight into, let parameters adopt
those views without a copy, and hand back every view no parameter took over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena.devices.context import Context
from paramarena.errors import (
    DTypeMismatchError,
    ParameterValueError,
    ShapeMismatchError,
    WrongContextError,
)
from paramarena.params import checks as chk
from paramarena.params import loading as pio
from paramarena.params.inplace_load import (
    checks_first,
    dtype_cache,
    in_place_destinations,
    reads_in_place,
    verify_before_overwrite,
)
from paramarena.params.inplace_rows import in_place_targets, load_in_place
from paramarena.params.loading import LoadReport
from paramarena.params.packed_load import all_new, load_rows
from paramarena.params.stored import set_init_keys, stored_specs

if TYPE_CHECKING:
    import os

    from paramarena.params.parameter import CtxArg, Parameter
    from paramarena.params.parameter_dict import ParameterDict

__all__ = [
    "adoptable",
    "allocate_views",
    "check_targets",
    "checked_destinations",
    "load_contexts",
    "load_file",
    "load_targets",
    "own_specs",
    "release_unadopted",
    "reserve",
]

logger = logging.getLogger("paramarena")


def reserve(
    pdict: ParameterDict, jobs: Iterable[tuple[Parameter, Any, np.dtype[Any], list[Context]]]
) -> None:
    """Make room in the arenas for arrays about to be allocated, in one segment each.

    ``jobs`` are ``(parameter, shape, dtype, contexts)``; parameters of other dicts are
    skipped (they allocate from their own arenas).
    """
    data: dict[tuple[Context, np.dtype[Any]], list[Any]] = {}
    grad: dict[tuple[Context, np.dtype[Any]], list[Any]] = {}
    for p, shape, dtype, ctx_list in jobs:
        if p._storage is not pdict._storage:
            continue
        for c in ctx_list:
            data.setdefault((c, dtype), []).append(shape)
            if p.grad_req != "null":
                grad.setdefault((c, dtype), []).append(shape)
    pdict._storage.reserve("data", data)
    pdict._storage.reserve("grad", grad)


def load_targets(
    pdict: ParameterDict,
    targets: Mapping[str, str],
    arrays: Mapping[str, Any],
    ctx: CtxArg,
    cast_dtype: bool,
    dtype_source: str,
    adopted: Mapping[str, Any] | None = None,
    in_place: Mapping[str, Any] | None = None,
    checked: bool = False,
) -> None:
    """Load ``arrays[targets[name]]`` into each parameter ``name`` (arena room reserved).

    Every parameter is checked first (:func:`check_targets`): a mismatch raises before any
    parameter changes. ``adopted`` maps stored names to the fresh arena views they were read
    into (see :func:`checked_destinations`); those parameters take them over without a copy, and
    on a failure every view not taken over yet is handed back. ``in_place`` maps stored names
    to parameters' current arrays that the loader already filled (see
    :func:`in_place_destinations`): nothing is left to copy for them. ``checked`` says that
    :func:`check_targets` already passed for the stored shapes and dtypes.
    """
    adopted = dict(adopted or {})
    in_place = in_place or {}
    try:
        if not checked:
            check_targets(
                pdict,
                targets,
                {k: a for k, a in arrays.items() if hasattr(a, "shape") and hasattr(a, "dtype")},
                ctx,
                cast_dtype,
                dtype_source,
            )
        params = pdict._params
        batch: list[tuple[Parameter, Any]] = []
        taken: list[str] = []
        rest: list[tuple[str, str]] = []
        for name, key in targets.items():
            view = adopted.get(key)
            if view is not None and arrays[key] is view:
                batch.append((params[name], view))
                taken.append(key)
            else:
                rest.append((name, key))
        jobs = []
        keep = not (cast_dtype and dtype_source == "saved")
        for name, key in rest:
            if key in adopted:
                continue
            p, a = params[name], arrays[key]
            if p._data is None and hasattr(a, "shape"):
                dtype = chk.as_np_dtype(p.dtype) if keep else np.dtype(a.dtype)
                jobs.append((p, tuple(a.shape), dtype, load_contexts(p, ctx)))
        reserve(pdict, jobs)
        for name, key in rest:
            p = params[name]
            if key in in_place and arrays[key] is in_place[key]:
                _filled_in_place(p, in_place[key])
            else:
                p._load_init(arrays[key], ctx, cast_dtype, dtype_source)
        # from here on the batch's views belong to their parameters (never handed back)
        if len(taken) == len(adopted):
            adopted.clear()
        else:
            for key in taken:
                del adopted[key]
        _adopt_all(pdict, batch, ctx)
        if cast_dtype and dtype_source == "saved":  # they take the stored dtype (as ``cast``)
            dtype_of = dtype_cache()
            for p, view in batch:
                if dtype_of(p._dtype) != view.dtype:
                    p._dtype = view.dtype.type
    finally:
        release_unadopted(pdict, targets, adopted, ctx)


def check_targets(
    pdict: ParameterDict,
    targets: Mapping[str, str],
    stored: Mapping[str, Any],
    ctx: CtxArg,
    cast_dtype: bool,
    dtype_source: str,
) -> None:
    """Check every target before anything is written: what ``_load_init`` would refuse.

    ``stored`` maps stored names to anything with ``shape`` and ``dtype`` (arrays, or the
    checkpoint's :class:`~paramarena.hooks.records.ArrayInfo`); names not in it are checked
    when they are loaded.

    Raises
    ------
    paramarena.errors.ShapeMismatchError, paramarena.errors.DTypeMismatchError
        Shape or dtype disagree (dtype only without ``cast_dtype``).
    paramarena.errors.WrongContextError
        ``ctx`` differs from the contexts an initialized (or deferred) parameter lives on.
    paramarena.errors.ParameterValueError
        ``dtype_source`` is invalid, or a parameter is sparse.
    """
    adoptable(pdict, targets, stored, ctx, cast_dtype, dtype_source, pick=False)


def _dtype_pairs() -> Callable[[Any, Any], tuple[np.dtype[Any], bool]]:
    """Return ``f(saved, own) -> (saved numpy dtype, whether own is the same dtype)``.

    Remembers its answers for the duration of one call (by the pair of specs as given).
    """
    dtype_of = dtype_cache()
    found: dict[Any, tuple[np.dtype[Any], bool]] = {}

    def same(saved: Any, own: Any) -> tuple[np.dtype[Any], bool]:
        try:
            got = found.get((saved, own))
        except TypeError:  # an unhashable spec: no memory
            a = dtype_of(saved)
            return a, a == dtype_of(own)
        if got is None:
            a = dtype_of(saved)
            got = found[(saved, own)] = (a, a == dtype_of(own))
        return got

    return same


def _filled_in_place(p: Parameter, view: Any) -> None:
    """Finish loading a parameter whose current array the loader filled in place."""
    if p._shape != tuple(view.shape):
        p.shape = tuple(view.shape)
    p._deferred_init = ()


def _adopt_all(pdict: ParameterDict, batch: list[tuple[Parameter, Any]], ctx: CtxArg) -> None:
    """Make each fresh arena view its (uninitialized) parameter's only copy, in one pass.

    What ``_load_init(view, adopt=True)`` does per parameter, with the gradients allocated
    together and the hook called only when a plugin listens.
    """
    if not batch:
        return
    from paramarena.hooks.manager import get_plugin_manager
    from paramarena.params.parameter import Parameter

    hook = get_plugin_manager().hook.paramarena_parameter_initialized
    listeners = bool(hook.get_hookimpls())
    # adopted views live on one CPU context: the given one, or cpu(0)
    c = _CPU0[0] if ctx is None else chk.normalize_ctx(ctx, "load")[0]
    ctx_map = chk.build_ctx_map([c])
    grads: dict[np.dtype[Any], tuple[list[Parameter], list[tuple[int, ...]]]] = {}
    last_dtype: Any = None
    owners: list[Parameter] = []
    shapes: list[tuple[int, ...]] = []
    ctx_list = [c]  # shared: only ever read, replaced whole
    for p, view in batch:
        shape = view.shape
        if p._shape != shape:
            if p._shape is None:
                p._shape = shape
            else:
                p.shape = shape
        p._ctx_list = ctx_list
        p._ctx_map = ctx_map
        p._data_list = [view]  # (it had no arrays: none pending either)
        if p._deferred_init:
            p._deferred_init = ()
        if p._grad_req != "null":
            dtype = view.dtype
            if dtype is not last_dtype:  # runs of one dtype: no dict lookup per parameter
                got = grads.get(dtype)
                if got is None:
                    got = grads[dtype] = ([], [])
                last_dtype, (owners, shapes) = dtype, got
            owners.append(p)
            shapes.append(shape)
        else:
            p._grad_list = None
    for dtype, (owners, shapes) in grads.items():
        # the gradients are pending: made on first access (``ParameterArrays``), zero until then
        arena = pdict._storage.grad.arena(c, dtype)
        runs, _, _ = arena.allocate_rows(arena.group_shapes(shapes), len(shapes))
        for members, run in runs:
            pending = (None, run)
            for row, p in enumerate(map(owners.__getitem__, members)):
                p._lazy = pending
                p._lazy_index = row
    if grads:
        Parameter._grad_epoch += 1
    if listeners:
        for p, _ in batch:
            hook(parameter=p, ctx=list(p._ctx_list or []))


def load_contexts(p: Parameter, ctx: CtxArg) -> list[Context]:
    """Return the contexts a parameter will live on once loaded (as ``_load_init`` does)."""
    if ctx is not None:
        return chk.normalize_ctx(ctx, p.name)
    if p._deferred_init:
        return list(p._deferred_init[1])
    return [Context("cpu", 0)]


_CPU0 = [Context("cpu", 0)]
_UNSET = object()


def checked_destinations(
    pdict: ParameterDict,
    targets: Mapping[str, str],
    stored: Mapping[str, Any],
    ctx: CtxArg,
    cast_dtype: bool,
    dtype_source: str,
    *,
    pick: bool = True,
) -> dict[str, Any]:
    """:func:`check_targets`, then allocate arena views the loader can read straight into.

    One pass over the targets. Views (by stored name) only for parameters of this dict that
    are not initialized or deferred, that will live on one CPU context, and whose stored shape
    and dtype they take as they are. Raises what :func:`check_targets` raises, before any view
    is allocated. ``pick=False``: check only (no views; what :func:`check_targets` does).
    """
    picked = adoptable(pdict, targets, stored, ctx, cast_dtype, dtype_source, pick=pick)
    return allocate_views(pdict, picked, ctx)


#: Parameters to read into new arena memory, by the dtype they get: ``(name, stored name,
#: stored shape)`` each.
Adoptable = dict[np.dtype[Any], list[tuple[str, str, tuple[int, ...]]]]


def allocate_views(pdict: ParameterDict, picked: Adoptable, ctx: CtxArg) -> dict[str, Any]:
    """Allocate an arena view for each parameter of ``picked``: ``{stored name: view}``."""
    c = _CPU0[0] if ctx is None else chk.normalize_ctx(ctx, "load")[0]
    views: dict[str, Any] = {}
    for dtype, group in picked.items():
        arena = pdict._storage.data.arena(c, dtype)
        allocated, _, _ = arena.allocate_packed([shape for _, _, shape in group])
        views.update(zip((k for _, k, _ in group), allocated, strict=True))
    return views


def adoptable(
    pdict: ParameterDict,
    targets: Mapping[str, str],
    stored: Mapping[str, Any],
    ctx: CtxArg,
    cast_dtype: bool,
    dtype_source: str,
    *,
    pick: bool = True,
) -> Adoptable:
    """:func:`check_targets`, then say which parameters can take new arena memory as loaded.

    Those of this dict that are not initialized or deferred, that will live on one CPU
    context, and whose stored shape and dtype they take as they are; grouped by dtype.
    """
    if cast_dtype and dtype_source not in ("current", "saved"):
        first = next(iter(targets), "?")
        raise ParameterValueError(
            f"dtype_source must be 'current' or 'saved', got {dtype_source!r} "
            f"(loading Parameter '{first}')."
        )
    given = None if ctx is None else chk.normalize_ctx(ctx, "load")
    ctx_set = None if given is None else set(given)
    contexts = given if given is not None else _CPU0
    adopt = pick and len(contexts) == 1 and chk.is_cpu_context(contexts[0])
    same = _dtype_pairs()
    adopt_saved = cast_dtype and dtype_source == "saved"
    params, own_storage = pdict._params, pdict._storage
    picked: Adoptable = {}
    last_spec: Any = _UNSET
    last_own: Any = _UNSET
    last_saved: Any = None
    saved: np.dtype[Any] = np.dtype(np.float32)
    equal = False
    group: list[tuple[str, str, tuple[int, ...]]] = []
    for name, key in targets.items():
        p = params[name]
        dense = p._stype == "default" and p._grad_stype == "default"
        if not dense:
            p._check_dense("load data into")
        data, deferred = p._data, p._deferred_init
        if ctx_set is not None:
            current = p._ctx_list if data is not None else (deferred[1] if deferred else None)
            if current is not None and ctx_set != set(current):
                raise WrongContextError(
                    f"Failed to load Parameter '{name}' on {given} because it was previous "
                    f"initialized on {list(current)}."
                )
        info = stored.get(key)
        if info is None:
            continue
        shape = info.shape if type(info.shape) is tuple else tuple(info.shape)
        own = p._shape
        if own is not None and own != shape and not chk.shape_fits(own, shape):
            raise ShapeMismatchError(
                f"Failed loading Parameter '{name}' from saved params: shape "
                f"incompatible expected {own} vs saved {shape}"
            )
        spec, own_dtype = info.dtype, p._dtype
        if spec is not last_spec or own_dtype is not last_own:  # runs of one pair: no lookup
            last_spec, last_own = spec, own_dtype
            saved, equal = same(spec, own_dtype)
        if not equal and not cast_dtype:
            raise DTypeMismatchError(
                f"Failed loading Parameter '{name}' from saved params: dtype "
                f"incompatible expected {p.dtype} vs saved {saved.type}. "
                "Set cast_dtype=True to cast the dtype of saved params."
            )
        if (
            adopt
            and data is None
            and not deferred
            and dense
            and (equal or adopt_saved)
            and p._storage is own_storage
        ):
            if saved is not last_saved:
                group = picked.setdefault(saved, [])
                last_saved = saved
            group.append((name, key, shape))
    return picked


def release_unadopted(
    pdict: ParameterDict, targets: Mapping[str, str], views: Mapping[str, Any], ctx: CtxArg
) -> None:
    """Hand back destination views that no parameter took over."""
    if not views:
        return
    for name, key in targets.items():
        if key in views:
            contexts = load_contexts(pdict._params[name], ctx)
            pdict._storage.release("data", contexts[:1], [views[key]])


def own_specs(pdict: ParameterDict) -> dict[str, tuple[Any, Any]]:
    """Return ``{full name: (shape, dtype)}`` of ``pdict``'s parameters (for ``match='order'``)."""
    return {name: (p.shape, p.dtype) for name, p in pdict.items()}


def load_file(
    pdict: ParameterDict,
    filename: str | os.PathLike[str],
    ctx: CtxArg,
    *,
    allow_missing: bool,
    ignore_extra: bool,
    restore_prefix: str,
    cast_dtype: bool,
    dtype_source: str,
    rename: pio.Rename = None,
    match: str = "name",
    **options: Any,
) -> LoadReport:
    """Load ``pdict``'s parameters from ``filename``: :meth:`ParameterDict.load`.

    Call it inside ``storage.session.shared_reads()`` (``ParameterDict.load`` does): the
    inspect, the check and the read below then parse and validate the manifest once.
    """
    from paramarena import storage
    from paramarena.storage.columns import inspect_columns

    pio.check_restore_prefix(pdict.keys(), restore_prefix)
    source = f"file: {filename}"
    inspect_options = {k: v for k, v in options.items() if k != "progress"}
    info = inspect_columns(filename, **inspect_options)  # no object per stored array
    if not info.named and info.names:
        raise pio.unnamed_list_error(len(info.names), source)
    names = info.names
    # stored names that are already the names to match (distinct, no 'arg:'/'aux:' to drop)
    # are used as they are, without a dict of them
    own_names = list(pdict.keys())
    # the dict's own names in its order are distinct (keys of a dict): no set of them
    same = len(own_names) == len(names) and own_names == list(names)
    plain = info.named and pio.plain_names(names, distinct=same)
    stored = None if plain else pio.stripped_names(names, source) if info.named else {}
    plan = pio.plan_load(
        own_names,
        names if stored is None else stored,
        allow_missing=allow_missing,
        ignore_extra=ignore_extra,
        restore_prefix=restore_prefix,
        source=source,
        rename=rename,
        match=match,
        own_specs=own_specs(pdict) if match == "order" else None,
        stored_specs=(
            {
                pio.strip_arg_aux(n): spec
                for n, spec in zip(
                    info.names, zip(info.shapes, info.dtypes, strict=True), strict=True
                )
            }
            if match == "order"
            else None
        ),
        cast_dtype=cast_dtype,
    )
    renamed = stored is not None and any(k is not v for k, v in stored.items())
    if renamed:  # 'arg:'/'aux:' dropped somewhere
        assert stored is not None
        targets = {n: stored[s] for n, s in plan.targets.items()}
    else:
        targets = plan.targets
    first = pdict._params[next(iter(targets))] if targets else None
    fresh = first is not None and first._data_list is None and first._lazy is None
    new = all_new(pdict, targets, info, ctx, cast_dtype, dtype_source) if fresh else None
    if new is not None:
        # every parameter is new: arena rows, read by offsets, adopted without a view each
        keyed = load_rows(pdict, filename, new, ctx, cast_dtype, dtype_source, options)
        _finish(pdict, targets, info, cast_dtype, dtype_source, plan, filename, keyed)
        return LoadReport(tuple(plan.targets), plan.missing, plan.skipped)
    places = None if fresh else in_place_targets(pdict, targets, info, ctx, filename, options)
    if places is not None:
        # every parameter is initialized in its arena: checked, then gathered where it is
        keys_too = not (cast_dtype and dtype_source == "current")  # as ``_finish``
        done = load_in_place(pdict, filename, places, targets, info, options, keys_too)
        _finish(pdict, targets, info, cast_dtype, dtype_source, plan, filename, done)
        return LoadReport(tuple(plan.targets), plan.missing, plan.skipped)
    infos = stored_specs(names, info.shapes, info.dtypes)
    # every target checked (a mismatch raises here), then arena views to read into (only
    # for parameters without an array: when every target has one, none is loaded in place)
    picked = adoptable(pdict, targets, infos, ctx, cast_dtype, dtype_source)
    views = allocate_views(pdict, picked, ctx)
    try:
        in_place = (
            in_place_destinations(pdict, targets, infos, ctx)
            if len(views) < len(targets) and reads_in_place(filename, options)
            else {}
        )
        read_options = dict(options)
        if in_place:
            # parameters are about to be overwritten where they are: check everything first,
            # in the same read of the same version where the backend can (zarr: check_first)
            if checks_first(filename, options):
                read_options["check_first"] = True
            else:
                verify_before_overwrite(filename, list(targets.values()), options)
        out = {**views, **in_place} if in_place else views
        arrays = (
            storage.load(filename, names=list(targets.values()), out=out, **read_options)
            if targets
            else {}
        )
    except BaseException:
        release_unadopted(pdict, targets, views, ctx)
        raise
    assert isinstance(arrays, dict)
    load_targets(
        pdict,
        targets,
        arrays,
        ctx,
        cast_dtype,
        dtype_source,
        adopted=views,
        in_place=in_place,
        checked=True,
    )
    _finish(pdict, targets, info, cast_dtype, dtype_source, plan, filename)
    return LoadReport(tuple(plan.targets), plan.missing, plan.skipped)


def _finish(
    pdict: ParameterDict,
    targets: Mapping[str, str],
    info: Any,
    cast_dtype: bool,
    dtype_source: str,
    plan: Any,
    filename: Any,
    keyed: bool = False,
) -> None:
    """Record the loaded parameters' init keys (unless ``keyed``: done) and log the skipped."""
    if not keyed and not (cast_dtype and dtype_source == "current"):
        set_init_keys(pdict._params, targets, info)
    if plan.skipped:
        logger.info(
            "Skipped %d stored array(s) not in the ParameterDict loading %s: %s",
            len(plan.skipped),
            filename,
            chk.brief_print_list(plan.skipped),
        )
