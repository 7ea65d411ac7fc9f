"""Large host arrays on transparent huge pages, so that first-touch page faults are cheap.

A fresh 100 MB ``np.empty`` is 25,000 4 KiB page faults on first write (glibc maps every
allocation above its mmap threshold afresh): that, not the conversion, was most of an allocating
cast. Arrays of at least :data:`HUGE_PAGE_THRESHOLD` bytes are therefore mapped here with
``mmap`` and ``madvise(MADV_HUGEPAGE)`` on their 2 MiB-aligned span: the kernel threads that
write them first take 50x fewer faults, in parallel. Anonymous mappings are zero-filled, so
:func:`zeros` costs nothing until written. Where ``MADV_HUGEPAGE`` does not exist (not Linux), or
with ``PARAMARENA_HUGE_PAGES=0`` in the environment, these are ``np.empty`` / ``np.zeros``.
When the last view of an :func:`empty` array is freed, its mapping is kept for reuse by a
later one (up to :data:`KEEP_BYTES` in 4 mappings, like glibc keeps freed blocks below its mmap
threshold), so repeated allocating casts take no page faults at all; :func:`zeros` mappings
return to the system when freed, unless made with ``reuse=True`` (then they are kept and
reused too, zeroed by the kernel threads).
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import weakref
from typing import Any

import numpy as np

__all__ = ["HUGE_PAGE_THRESHOLD", "empty", "zeros"]

#: Arrays of at least this many bytes are mapped on (transparent) huge pages.
HUGE_PAGE_THRESHOLD = 4 << 20
_HUGE = 2 << 20
_MADV_HUGEPAGE: int | None = getattr(mmap, "MADV_HUGEPAGE", None)
if os.environ.get("PARAMARENA_HUGE_PAGES", "").strip().lower() in ("0", "no", "false", "off"):
    _MADV_HUGEPAGE = None  # opt out: plain numpy allocations


#: Mappings of freed :func:`empty` arrays kept for reuse (already faulted in: a reused output
#: takes no page faults at all), at most this many bytes and :data:`_KEEP_COUNT` mappings.
KEEP_BYTES = 512 << 20
_KEEP_COUNT = 4
# list.append / list.pop are atomic under the GIL; the finalizer below may run on any thread at
# any allocation, so no lock is taken around this list (a lock could deadlock there)
_free: list[mmap.mmap] = []


def _keep(m: mmap.mmap) -> None:
    """Keep the mapping of a freed :func:`empty` array for the next one (bounded)."""
    if len(m) > KEEP_BYTES:
        return
    _free.append(m)
    while len(_free) > _KEEP_COUNT or sum(len(x) for x in _free) > KEEP_BYTES:
        try:
            _free.pop(0)  # the oldest: unmapped when the last reference goes
        except IndexError:
            break


def _reuse(size: int) -> mmap.mmap | None:
    """Take a kept mapping of at least ``size`` bytes and at most twice that, if there is one."""
    for m in list(_free):
        if size <= len(m) <= 2 * size + _HUGE:
            try:
                _free.remove(m)
            except ValueError:  # taken by another thread meanwhile
                continue
            return m
    return None


def _mapped(
    shape: tuple[int, ...], dtype: np.dtype[Any], *, reuse: bool, zero: bool = False
) -> np.ndarray | None:
    nbytes = math.prod(shape) * dtype.itemsize
    if _MADV_HUGEPAGE is None or nbytes < HUGE_PAGE_THRESHOLD:
        return None
    m = _reuse(nbytes + _HUGE) if reuse else None
    if m is None:
        try:
            m = mmap.mmap(-1, nbytes + _HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except (OSError, ValueError):  # address space limits: let numpy try (and raise)
            return None
        fresh = True
    else:
        fresh = False
    raw = np.frombuffer(m, np.uint8)
    offset = -raw.ctypes.data % _HUGE
    del raw
    if fresh:
        with contextlib.suppress(OSError):  # THP disabled ("never"): a valid, zeroed mapping
            m.madvise(_MADV_HUGEPAGE, offset, nbytes // _HUGE * _HUGE)
    owner = np.frombuffer(m, dtype, count=math.prod(shape), offset=offset)
    if zero and not fresh:  # a reused mapping holds old values
        _parallel_zero(owner)
    if reuse:  # once every view of ``owner`` is gone, its mapping may serve the next one
        weakref.finalize(owner, _keep, m).atexit = False
    return owner.reshape(shape)


def _as_shape(shape: Any) -> tuple[int, ...]:
    """Return ``shape`` (an int or a sequence of ints) as a tuple of ints."""
    return (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)


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
    shp = _as_shape(shape)
    arr = _mapped(shp, dt, reuse=True)
    return np.empty(shp, dt) if arr is None else arr


def zeros(shape: Any, dtype: Any, *, reuse: bool = False) -> np.ndarray:
    """Return a zero-filled C-contiguous array, on huge pages when it is large.

    Parameters
    ----------
    shape : int or tuple of int
        Array shape.
    dtype : dtype_like
        Element type.
    reuse : bool, optional
        Take a kept mapping of a freed large array if there is one (zeroed by the kernel
        threads: ~10 ms per 100 MB, where first-touch faults of new memory cost 6-10x that on a
        virtual machine), and keep this one for reuse when it is freed. For arrays about to be
        written anyway (a dict's parameter values); the default maps new memory that costs
        nothing until written (gradients that may never be).

    Returns
    -------
    numpy.ndarray
        Writable array of zeros; without ``reuse`` its pages are mapped lazily, on first write.
    """
    dt = np.dtype(dtype)
    shp = _as_shape(shape)
    arr = _mapped(shp, dt, reuse=reuse, zero=reuse)
    return np.zeros(shp, dt) if arr is None else arr


def _parallel_zero(array: np.ndarray) -> None:
    """Zero the C-contiguous ``array`` with ``memset`` on the kernel threads (no Numba)."""
    import ctypes

    from paramarena.kernels._threads import get_num_threads, run_chunks

    address, nbytes = array.ctypes.data, array.nbytes
    parts = max(1, min(get_num_threads(), nbytes >> 22))  # pieces of >= 4 MiB
    step = -(-nbytes // parts)

    def run(g: int) -> None:
        start = g * step
        ctypes.memset(address + start, 0, max(0, min(step, nbytes - start)))

    run_chunks(run, parts)
