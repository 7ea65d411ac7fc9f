"""Checking arrays of a checkpoint as a load would, keeping nothing: :func:`check`.

What ``ParameterDict.load`` runs before overwriting parameters in place (the all-or-nothing
load). Re-exported as :func:`paramarena.storage.check`.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from paramarena.storage.failures import api_errors

__all__ = ["CHECK_BATCH_BYTES", "check"]


#: Bytes read at once by :func:`check` for backends without their own ``check``.
CHECK_BATCH_BYTES = 64 << 20


def check(
    path_or_url: str | os.PathLike[str],
    *,
    names: Collection[str] | None = None,
    format: str | None = None,
    **options: Any,
) -> None:
    """Read and check arrays as :func:`paramarena.storage.load` does, keeping nothing.

    What a load that overwrites arrays in place runs first, so that a corrupt, missing or
    unreadable array raises before anything is overwritten. A backend with a ``check`` method
    streams (zarr: a 1 MiB window at a time); for the others the arrays are loaded in batches of
    at most :data:`CHECK_BATCH_BYTES` (or the largest array) and dropped.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        The checkpoint.
    names : collection of str, optional
        Only these arrays (default: all).
    format : str, optional
        Format name.
    **options
        As for :func:`paramarena.storage.load` (``progress`` is ignored).

    Raises
    ------
    paramarena.errors.MissingParameterError, paramarena.errors.StorageError
        What :func:`paramarena.storage.load` of the same arrays would raise.
    """
    from paramarena import storage

    uri = storage._uri(path_or_url)
    options = {k: v for k, v in options.items() if k != "progress"}
    spec = storage.resolve(uri, "r", format)
    checker = getattr(spec.backend, "check", None)
    wanted = None if names is None else list(dict.fromkeys(names))
    if checker is not None:
        with api_errors(uri, "load"):
            checker(uri, names=wanted, **options)
        return
    info = storage.inspect(uri, format=format, **options)
    sizes = {a.name: int(a.nbytes) for a in info.arrays}
    if not info.named:
        sizes = {f"arr_{i}": int(a.nbytes) for i, a in enumerate(info.arrays)}
    batch: list[str] = []
    size = 0
    for name in wanted if wanted is not None else list(sizes):
        nbytes = sizes.get(name, 0)
        if batch and size + nbytes > CHECK_BATCH_BYTES:
            storage.load(uri, names=batch, format=format, progress=False, **options)
            batch, size = [], 0
        batch.append(name)
        size += nbytes
    if batch:
        storage.load(uri, names=batch, format=format, progress=False, **options)
