"""Loading into parameters' current arrays: which can be overwritten, and what is checked first.

A ``ParameterDict.load`` into a dict that is already initialized reads straight into the
current arrays where shape, dtype and context allow (no second copy of the model). The load
is all or nothing: everything is checked before the first byte is overwritten, by the
backend's own load where it can (zarr: ``check_first``), else by :func:`verify_before_overwrite`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena.params import checks as chk

if TYPE_CHECKING:
    import os

    from paramarena.params.parameter import CtxArg
    from paramarena.params.parameter_dict import ParameterDict

__all__ = [
    "checks_first",
    "dtype_cache",
    "in_place_destinations",
    "reads_in_place",
    "verify_before_overwrite",
]


def dtype_cache() -> Callable[[Any], np.dtype[Any]]:
    """Return ``chk.as_np_dtype`` remembering its answers for the duration of one call."""
    found: dict[Any, np.dtype[Any]] = {}

    def dtype_of(spec: Any) -> np.dtype[Any]:
        key = spec if isinstance(spec, str) else id(spec)
        got = found.get(key)
        if got is None:
            got = found[key] = chk.as_np_dtype(spec)
        return got

    return dtype_of


def in_place_destinations(
    pdict: ParameterDict, targets: Mapping[str, str], stored: Mapping[str, Any], ctx: CtxArg
) -> dict[str, Any]:
    """Return the current arrays of initialized parameters that can be loaded in place.

    By stored name: parameters of one CPU context whose array is a C-contiguous writable
    numpy array of the stored shape and dtype (no cast).
    """
    picked: dict[str, Any] = {}
    given = None if ctx is None else set(chk.normalize_ctx(ctx, "load"))
    # contexts by identity (they live as long as the loop): no Context.__hash__ per parameter
    cpu_ok: dict[int, bool] = {}
    dtype_of = dtype_cache()
    params = pdict._params
    for name, key in targets.items():
        p = params[name]
        data, contexts = p._data, p._ctx_list
        if data is None or len(data) != 1 or contexts is None:
            continue
        if given is not None and given != set(contexts):
            continue
        view, info = data[0], stored[key]
        if not isinstance(view, np.ndarray):
            continue
        c = contexts[0]
        ok = cpu_ok.get(id(c))
        if ok is None:
            ok = cpu_ok[id(c)] = chk.is_cpu_context(c)
        if not ok:
            continue
        shape = info.shape if type(info.shape) is tuple else tuple(info.shape)
        if view.shape != shape:
            continue
        if view.dtype != dtype_of(info.dtype):
            continue
        flags = view.flags
        if flags.c_contiguous and flags.writeable:
            picked[key] = view
    return picked


def reads_in_place(filename: str | os.PathLike[str], options: Mapping[str, Any]) -> bool:
    """Whether the backend may read straight into ``out=`` arrays (local directories only).

    Other sources (files, remote stores) are read into new arrays that ``storage.load`` copies
    into ``out=`` only after everything was read and checked: no verification pass is needed.
    """
    import os as _os

    from paramarena import storage
    from paramarena.storage.fileio import local_path

    spec = storage.resolve(filename, "r", options.get("format"))
    if not getattr(spec.backend, "accepts_out", False):
        return False
    path = local_path(_os.fspath(filename))
    return path is not None and _os.path.isdir(path)


def checks_first(filename: str | os.PathLike[str], options: Mapping[str, Any]) -> bool:
    """Whether the backend's ``load`` checks everything before reading into ``out=`` itself.

    Such a backend (zarr: ``check_first=True``) checks and reads one committed version in one
    go, and reads only the very files it checked; the others get :func:`verify_before_overwrite`.
    """
    from paramarena import storage

    spec = storage.resolve(filename, "r", options.get("format"))
    return bool(getattr(spec.backend, "checks_first", False))


def verify_before_overwrite(
    filename: str | os.PathLike[str], names: Sequence[str], options: Mapping[str, Any]
) -> None:
    """Read and check ``names``, keeping nothing (:func:`paramarena.storage.check`).

    A load that reads straight into parameters' current arrays runs this first, so that a
    corrupt, missing or unreadable array raises before any parameter is overwritten. Memory:
    one chunk (zarr on local disk) or one bounded batch.
    """
    from paramarena import storage

    storage.check(filename, names=names, **options)
