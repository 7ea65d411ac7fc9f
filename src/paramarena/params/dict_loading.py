"""Loading checkpoints into a ``ParameterDict``: arena room, destinations, adoption.

The steps behind :meth:`~paramarena.params.parameter_dict.ParameterDict.load` and
:meth:`~paramarena.params.parameter_dict.ParameterDict.load_dict`: reserve arena room for the
arrays about to arrive, hand the loader arena views to read straight into, let parameters adopt
those views without a copy, and hand back every view no parameter took over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena.devices.context import Context
from paramarena.hooks.manager import get_device_spec
from paramarena.params import checks as chk
from paramarena.params import loading as pio
from paramarena.params.loading import LoadReport

if TYPE_CHECKING:
    import os

    from paramarena.params.parameter import CtxArg, Parameter
    from paramarena.params.parameter_dict import ParameterDict

__all__ = [
    "load_contexts",
    "load_destinations",
    "load_file",
    "load_targets",
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
) -> None:
    """Load ``arrays[targets[name]]`` into each parameter ``name`` (arena room reserved).

    ``adopted`` maps stored names to the arena views they were read into (see
    :func:`load_destinations`); those parameters take them over without a copy, and on a
    failure every view not taken over yet is handed back.
    """
    adopted = dict(adopted or {})
    jobs = []
    for name, key in targets.items():
        p, a = pdict._params[name], arrays[key]
        if key not in adopted and p._data is None and hasattr(a, "shape"):
            keep = not (cast_dtype and dtype_source == "saved")
            dtype = chk.as_np_dtype(p.dtype) if keep else np.dtype(a.dtype)
            jobs.append((p, tuple(a.shape), dtype, load_contexts(p, ctx)))
    reserve(pdict, jobs)
    try:
        for name, key in targets.items():
            view = adopted.get(key)
            p = pdict._params[name]
            if view is not None and arrays[key] is view:
                p._load_init(view, ctx, cast_dtype, dtype_source, adopt=True)
                del adopted[key]
            else:
                p._load_init(arrays[key], ctx, cast_dtype, dtype_source)
    finally:
        release_unadopted(pdict, targets, adopted, ctx)


def load_contexts(p: Parameter, ctx: CtxArg) -> list[Context]:
    """Return the contexts a parameter will live on once loaded (as ``_load_init`` does)."""
    if ctx is not None:
        return chk.normalize_ctx(ctx, p.name)
    if p._deferred_init:
        return list(p._deferred_init[1])
    return [Context("cpu", 0)]


def load_destinations(
    pdict: ParameterDict,
    targets: Mapping[str, str],
    stored: Mapping[str, Any],
    ctx: CtxArg,
    cast_dtype: bool,
    dtype_source: str,
) -> dict[str, Any]:
    """Allocate arena views that the loader can read straight into, by stored name.

    Only for parameters of this dict that are not initialized or deferred, that will live
    on one CPU context, and whose stored shape and dtype they take as they are.
    """
    from paramarena.devices.cpu import CPUBackend

    picked: list[tuple[str, Parameter, tuple[int, ...], np.dtype[Any], Context]] = []
    for name, key in targets.items():
        p, info = pdict._params[name], stored[key]
        if p._storage is not pdict._storage or p._data is not None or p._deferred_init:
            continue
        if p._stype != "default" or p._grad_stype != "default":
            continue
        contexts = load_contexts(p, ctx)
        backend = get_device_spec(contexts[0].device_type).backend
        if len(contexts) != 1 or not isinstance(backend, CPUBackend):
            continue
        saved = chk.as_np_dtype(info.dtype)
        if saved != chk.as_np_dtype(p.dtype) and not (cast_dtype and dtype_source == "saved"):
            continue
        shape = tuple(info.shape)
        if not chk.shape_fits(p.shape, shape):
            continue
        picked.append((key, p, shape, saved, contexts[0]))
    reserve(pdict, [(p, shape, dtype, [c]) for _, p, shape, dtype, c in picked])
    return {
        key: pdict._storage.allocate("data", c, dtype, shape) for key, _, shape, dtype, c in picked
    }


def release_unadopted(
    pdict: ParameterDict, targets: Mapping[str, str], views: Mapping[str, Any], ctx: CtxArg
) -> None:
    """Hand back destination views that no parameter took over."""
    for name, key in targets.items():
        if key in views:
            contexts = load_contexts(pdict._params[name], ctx)
            pdict._storage.release("data", contexts[:1], [views[key]])


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
    **options: Any,
) -> LoadReport:
    """Load ``pdict``'s parameters from ``filename``: :meth:`ParameterDict.load`."""
    from paramarena import storage

    pio.check_restore_prefix(pdict.keys(), restore_prefix)
    source = f"file: {filename}"
    inspect_options = {k: v for k, v in options.items() if k != "progress"}
    info = storage.inspect(filename, **inspect_options)
    if not info.named and info.arrays:
        raise pio.unnamed_list_error(len(info.arrays), source)
    stored = pio.stripped_names((a.name for a in info.arrays), source) if info.named else {}
    plan = pio.plan_load(
        list(pdict.keys()),
        stored,
        allow_missing=allow_missing,
        ignore_extra=ignore_extra,
        restore_prefix=restore_prefix,
        source=source,
    )
    targets = {name: stored[s] for name, s in plan.targets.items()}
    infos = {a.name: a for a in info.arrays}
    views = load_destinations(pdict, targets, infos, ctx, cast_dtype, dtype_source)
    try:
        arrays = (
            storage.load(filename, names=list(targets.values()), out=views, **options)
            if targets
            else {}
        )
    except BaseException:
        release_unadopted(pdict, targets, views, ctx)
        raise
    assert isinstance(arrays, dict)
    load_targets(pdict, targets, arrays, ctx, cast_dtype, dtype_source, adopted=views)
    if plan.skipped:
        logger.info(
            "Skipped %d stored array(s) not in the ParameterDict loading %s: %s",
            len(plan.skipped),
            filename,
            chk.brief_print_list(plan.skipped),
        )
    return LoadReport(tuple(plan.targets), plan.missing, plan.skipped)
