"""Loading a checkpoint into parameters without arrays: arena rows, no view per parameter.

When every parameter a :meth:`~paramarena.params.parameter_dict.ParameterDict.load` fills is
new (not initialized, not deferred, one CPU context, the stored shape and dtype), the arena
hands out runs of rows (:meth:`~paramarena.devices.arena.Arena.allocate_rows`), the loader
reads into them by element offsets (:func:`paramarena.storage.columns.load_packed`), and each
parameter gets its run and row, as ``initialize`` gives them: its data and gradient views are
made when first asked for (``ParameterArrays``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena.devices.context import Context
from paramarena.params import checks as chk

if TYPE_CHECKING:
    from paramarena.params.parameter import CtxArg, Parameter
    from paramarena.params.parameter_dict import ParameterDict

__all__ = ["load_rows"]


def load_rows(
    pdict: ParameterDict,
    filename: Any,
    picked: Mapping[np.dtype[Any], list[tuple[str, str, tuple[int, ...]]]],
    ctx: CtxArg,
    cast_dtype: bool,
    dtype_source: str,
    options: Mapping[str, Any],
) -> None:
    """Read ``picked`` (every parameter to load, checked) into new arena rows and adopt them.

    All or nothing: after any error no parameter has changed and the rows are handed back.
    """
    from paramarena.storage.columns import PackedTarget, load_packed

    c = Context("cpu", 0) if ctx is None else chk.normalize_ctx(ctx, "load")[0]
    params = pdict._params
    plans = []
    targets = []
    try:
        for dtype, group in picked.items():
            shapes = [shape for _, _, shape in group]
            arena = pdict._storage.data.arena(c, dtype)
            grouped = arena.group_shapes(shapes)
            runs, buf, offsets = arena.allocate_rows(grouped, len(shapes))
            plans.append((dtype, group, grouped, runs))
            targets.append(PackedTarget(buf, [k for _, k, _ in group], shapes, offsets))
        other = load_packed(filename, targets, **options) if targets else {}
        if other:  # the checkpoint changed since it was planned: the usual load for those
            for _, group, _, _ in plans:
                for name, key, _ in group:
                    if key in other:
                        params[name]._load_init(other[key], ctx, cast_dtype, dtype_source)
    except BaseException:
        for _, _, _, runs in plans:
            _release(pdict, c, runs)
        raise
    hook_params: list[Parameter] = []
    for dtype, group, grouped, runs in plans:
        _adopt_rows(pdict, c, dtype, [params[name] for name, _, _ in group], grouped, runs, other)
        hook_params.extend(params[name] for name, _, _ in group)
    from paramarena.hooks.manager import get_plugin_manager

    hook = get_plugin_manager().hook.paramarena_parameter_initialized
    if hook.get_hookimpls():
        for p in hook_params:
            hook(parameter=p, ctx=list(p._ctx_list or []))


def _release(pdict: ParameterDict, c: Context, runs: list[tuple[list[int], Any]]) -> None:
    """Hand back every non-empty row of ``runs``."""
    views = [v for _, run in runs if run.buffer is not None for v in run.views()]
    if views:
        pdict._storage.release("data", [c] * len(views), views)


def _adopt_rows(
    pdict: ParameterDict,
    c: Context,
    dtype: np.dtype[Any],
    plist: list[Parameter],
    grouped: dict[tuple[int, ...], list[int]],
    runs: list[tuple[list[int], Any]],
    other: Mapping[str, Any],
) -> None:
    """Give each parameter of ``plist`` its row of ``runs`` (its gradient pending likewise)."""
    from paramarena.params.dict_loading import _adopt_all
    from paramarena.params.parameter import Parameter

    if other:  # some were loaded another way: their rows go back
        keep = [(members, run) for members, run in runs]
        taken = {id(p) for p in plist if p._data_list is not None or p._lazy is not None}
        views = []
        batch = []
        for members, run in keep:
            for row, i in enumerate(members):
                p = plist[i]
                if id(p) in taken:
                    if run.buffer is not None:
                        views.append(run.views()[row])
                else:
                    batch.append((p, run.views()[row]))
        if views:
            pdict._storage.release("data", [c] * len(views), views)
        _adopt_all(pdict, batch, [c])
        return
    nulls = list(map(_GRAD_REQ, plist)).count("null")
    if nulls not in (0, len(plist)):  # some with gradients, some without: views now
        batch = [
            (plist[i], v)
            for members, run in runs
            for i, v in zip(members, run.views(), strict=True)
        ]
        _adopt_all(pdict, batch, [c])
        return
    if nulls:
        grad_runs: list[tuple[list[int], Any]] = [(members, None) for members, _ in runs]
    else:
        arena = pdict._storage.grad.arena(c, dtype)
        grad_runs, _, _ = arena.allocate_rows(grouped, len(plist))
    ctx_list = [c]  # shared: only ever read, replaced whole
    ctx_map = chk.build_ctx_map(ctx_list)
    for (members, data_run), (_, grad_run) in zip(runs, grad_runs, strict=True):
        pair = (data_run, grad_run)
        shape = data_run.shape
        for row, p in enumerate(map(plist.__getitem__, members)):
            if p._shape != shape:
                if p._shape is None:
                    p._shape = shape
                else:
                    p.shape = shape
            p._ctx_list = ctx_list
            p._ctx_map = ctx_map
            p._lazy = pair
            p._lazy_index = row
    if not nulls and plist:
        Parameter._grad_epoch += 1


def _GRAD_REQ(p: Parameter) -> str | None:  # noqa: N802 - used as a key function
    return p._grad_req
