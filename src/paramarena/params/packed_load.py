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
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena.devices.context import Context
from paramarena.devices.segments import group_shapes
from paramarena.params import checks as chk
from paramarena.params.inplace_load import dtype_cache

if TYPE_CHECKING:
    from paramarena.params.parameter import CtxArg, Parameter
    from paramarena.params.parameter_dict import ParameterDict
    from paramarena.storage.columns import StoredColumns

__all__ = ["Picked", "all_new", "load_rows"]


#: Parameters to read into new arena memory, by the dtype they get: the parameters, their
#: stored names and stored shapes, the init key each was drawn with (or None), and whether
#: every one of them has its stored shape already.
Picked = dict[
    np.dtype[Any], tuple[list[Any], list[str], list[tuple[int, ...]], list[Any] | None, bool]
]

#: What a new parameter of the dict holds: dense, no arrays (made or pending), not deferred.


def all_dense(plist: list[Parameter], storage: Any, *, empty: bool) -> bool:
    """Whether every parameter is dense, of ``storage`` and not deferred.

    ``empty``: and has no arrays, made or pending. One loop of attribute reads (~50 ns a
    parameter): a tuple of the six per parameter, compared with ``==``, took ten times as long.
    """
    for p in plist:
        if (
            p._stype != "default"
            or p._grad_stype != "default"
            or p._deferred_init
            or p._storage is not storage
            or (empty and (p._data_list is not None or p._lazy is not None))
        ):
            return False
    return True


def all_new(
    pdict: ParameterDict,
    targets: Mapping[str, str],
    info: StoredColumns,
    ctx: CtxArg,
    cast_dtype: bool,
    dtype_source: str,
) -> Picked | None:
    """Return every target grouped by dtype if each one is new, else None.

    New: a dense parameter of this dict without arrays, not deferred, that takes the stored
    shape (its own is unknown or the same) and dtype as they are, to live on one CPU
    context. The checks run over columns (a few C-level passes, no Python per parameter in the
    usual case); anything else (including every error) is left to the general path, which
    checks parameter by parameter and raises what it finds.
    """
    if not targets or (cast_dtype and dtype_source not in ("current", "saved")):
        return None
    if ctx is not None:
        given = chk.normalize_ctx(ctx, "load")
        if len(given) != 1 or not chk.is_cpu_context(given[0]):
            return None
    params = pdict._params
    n = len(targets)
    plist = list(map(params.__getitem__, targets))
    if not all_dense(plist, pdict._storage, empty=True):
        return None
    keys = list(targets.values())
    shapes, dtypes, at = info.select(keys)
    init_keys = (
        None
        if info.init_keys is None
        else (info.init_keys if at is None else info.init_keys[at]).tolist()
    )
    if not all(map(tuple.__instancecheck__, shapes)):
        return None
    own = list(map(attrgetter("_shape"), plist))
    shaped = own == shapes
    if not shaped:
        for mine, stored in zip(own, shapes, strict=True):
            if mine is not None and mine != stored and not chk.shape_fits(mine, stored):
                return None
    own_dtypes = list(map(attrgetter("_dtype"), plist))
    dtype_of = dtype_cache()
    try:
        ones = (dtypes.count(dtypes[0]) == n, own_dtypes.count(own_dtypes[0]) == n)
        if ones == (True, True):  # one pair for all: no tuple per parameter
            pairs = {(dtypes[0], own_dtypes[0]): None}
        else:
            pairs = dict.fromkeys(zip(dtypes, own_dtypes, strict=True))
    except TypeError:  # an unhashable dtype spec
        return None
    saved_of = {}
    for stored_dtype, mine in pairs:
        saved = dtype_of(stored_dtype)
        if saved != dtype_of(mine) and not (cast_dtype and dtype_source == "saved"):
            return None  # a mismatch (raised by the general path), or a cast
        saved_of[(stored_dtype, mine)] = saved
    if cast_dtype and dtype_source == "current":
        init_keys = None  # values converted: not the drawn ones
    if len(saved_of) == 1:
        return {next(iter(saved_of.values())): (plist, keys, shapes, init_keys, shaped)}
    picked: Picked = {}
    for i, pair in enumerate(zip(dtypes, own_dtypes, strict=True)):
        group = picked.setdefault(saved_of[pair], ([], [], [], [] if init_keys else None, shaped))
        group[0].append(plist[i])
        group[1].append(keys[i])
        group[2].append(shapes[i])
        if init_keys is not None:
            group[3].append(init_keys[i])  # type: ignore[union-attr]
    return picked


def load_rows(
    pdict: ParameterDict,
    filename: Any,
    picked: Picked,
    ctx: CtxArg,
    cast_dtype: bool,
    dtype_source: str,
    options: Mapping[str, Any],
) -> bool:
    """Read ``picked`` (:func:`all_new`) into new arena rows and adopt them.

    All or nothing: after any error no parameter has changed and the rows are handed back.
    Returns whether every parameter got its init key (False: none did).
    """
    from paramarena.storage.columns import PackedTarget, load_packed

    c = Context("cpu", 0) if ctx is None else chk.normalize_ctx(ctx, "load")[0]
    plans = []
    targets = []
    try:
        for dtype, (_, keys, shapes, _, _) in picked.items():
            arena = pdict._storage.data.arena(c, dtype)
            grouped = group_shapes(shapes)
            runs, buf, offsets = arena.allocate_rows(grouped, len(shapes))
            plans.append((dtype, grouped, runs))
            targets.append(PackedTarget(buf, keys, shapes, offsets))
        other = load_packed(filename, targets, **options)
        if other:  # the checkpoint changed since it was planned: the usual load for those
            for plist, keys, _, _, _ in picked.values():
                for p, key in zip(plist, keys, strict=True):
                    if key in other:
                        p._load_init(other[key], ctx, cast_dtype, dtype_source)
    except BaseException:
        for _, _, runs in plans:
            _release(pdict, c, runs)
        raise
    keyed = True
    for (dtype, grouped, runs), (plist, keys, _, init_keys, shaped) in zip(
        plans, picked.values(), strict=True
    ):
        keys_now = None if other else init_keys
        _adopt_rows(pdict, c, dtype, plist, grouped, runs, other, keys_now, shaped)
        keyed = keyed and init_keys is not None and not other
        if cast_dtype and dtype_source == "saved":  # they take the stored dtype (as ``cast``)
            dtype_of = dtype_cache()
            for p, key in zip(plist, keys, strict=True):
                if key not in other and dtype_of(p._dtype) != dtype:
                    p._dtype = dtype.type
    from paramarena.hooks.manager import get_plugin_manager

    hook = get_plugin_manager().hook.paramarena_parameter_initialized
    if hook.get_hookimpls():
        for plist, *_ in picked.values():
            for p in plist:
                hook(parameter=p, ctx=list(p._ctx_list or []))
    return keyed


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
    init_keys: list[Any] | None,
    shaped: bool = False,
) -> None:
    """Give each parameter of ``plist`` its row of ``runs`` (its gradient pending likewise).

    With ``init_keys`` (one per parameter), each also gets the key its values were drawn with;
    ``shaped``: every parameter has its stored shape already.
    """
    from paramarena.params.dict_loading import _adopt_all
    from paramarena.params.parameter import Parameter

    if other:  # some were loaded another way: their rows go back
        taken = {id(p) for p in plist if p._data_list is not None or p._lazy is not None}
        views = []
        batch = []
        for members, run in runs:
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
        if init_keys is not None:
            for p, key in zip(plist, init_keys, strict=True):
                p.init_key = key
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
        # one run: its members are every parameter, in order
        mine = plist if len(runs) == 1 else list(map(plist.__getitem__, members))
        if not shaped and list(map(_SHAPE, mine)).count(shape) != len(mine):
            for p in mine:
                if p._shape != shape:
                    if p._shape is None:
                        p._shape = shape
                    else:
                        p.shape = shape
        # without init keys each keeps its own (set_init_keys may set some afterwards)
        keys = map(_INIT_KEY, mine) if init_keys is None else map(init_keys.__getitem__, members)
        for p, row, key in zip(mine, range(len(mine)), keys, strict=True):
            p._ctx_list = ctx_list
            p._ctx_map = ctx_map
            p._lazy = pair
            p._lazy_index = row
            p.init_key = key
    if not nulls and plist:
        Parameter._grad_epoch += 1


_INIT_KEY = attrgetter("init_key")
_GRAD_REQ = attrgetter("_grad_req")
_SHAPE = attrgetter("_shape")
