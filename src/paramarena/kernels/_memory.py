"""Large host arrays on transparent huge pages, so that first-touch page faults are cheap.

A fresh 100 MB ``np.empty`` is 25,000 4 KiB page faults on first write (glibc maps every
allocation above its mmap threshold afresh): that, not the conversion, was most of an allocating
cast. Arrays of at least :data:`HUGE_PAGE_THRESHOLD` bytes are therefore mapped here with
``mmap`` and ``madvise(MADV_HUGEPAGE)`` on their 2 MiB-aligned span: the kernel threads that
write them first take 50x fewer faults, in parallel. Anonymous mappings are zero-filled, so
:func:`zeros` costs nothing until written. Where ``MADV_HUGEPAGE`` does not exist (not Linux), or
with ``PARAMARENA_HUGE_PAGES=0`` in the environment, these are ``np.empty`` / ``np.zeros``.
The memory returns to the system when the array (the last view of it) is freed.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from typing import Any

import numpy as np

__all__ = ["HUGE_PAGE_THRESHOLD", "empty", "zeros"]

#: Arrays of at least this many bytes are mapped on (transparent) huge pages.
HUGE_PAGE_THRESHOLD = 4 << 20
_HUGE = 2 << 20
_MADV_HUGEPAGE: int | None = getattr(mmap, "MADV_HUGEPAGE", None)
if os.environ.get("PARAMARENA_HUGE_PAGES", "").strip().lower() in ("0", "no", "false", "off"):
    _MADV_HUGEPAGE = None  # opt out: plain numpy allocations


def _mapped(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray | None:
    nbytes = math.prod(shape) * dtype.itemsize
    if _MADV_HUGEPAGE is None or nbytes < HUGE_PAGE_THRESHOLD:
        return None
    try:
        m = mmap.mmap(-1, nbytes + _HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError):  # address space limits: let numpy try (and raise)
        return None
    raw = np.frombuffer(m, np.uint8)
    offset = -raw.ctypes.data % _HUGE
    del raw
    with contextlib.suppress(OSError):  # THP disabled ("never"): still a valid, zeroed mapping
        m.madvise(_MADV_HUGEPAGE, offset, nbytes // _HUGE * _HUGE)
    return np.frombuffer(m, dtype, count=math.prod(shape), offset=offset).reshape(shape)


def empty(shape: Any, dtype: Any) -> np.ndarray:
    """Return an uninitialized C-contiguous array, on huge pages when it is large.

    Parameters
    ----------
    shape : int or tuple of int
        Array shape.
    dtype : dtype_like
        Element type.

    Returns
    -------
    numpy.ndarray
        Writable array (its ``base`` is the mapping when it is large).
    """
    dt = np.dtype(dtype)
    shp = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    arr = _mapped(shp, dt)
    return np.empty(shp, dt) if arr is None else arr


def zeros(shape: Any, dtype: Any) -> np.ndarray:
    """Return a zero-filled C-contiguous array, on huge pages when it is large.

    Parameters
    ----------
    shape : int or tuple of int
        Array shape.
    dtype : dtype_like
        Element type.

    Returns
    -------
    numpy.ndarray
        Writable array of zeros; its pages are mapped lazily, on first write.
    """
    dt = np.dtype(dtype)
    shp = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    arr = _mapped(shp, dt)
    return np.zeros(shp, dt) if arr is None else arr
