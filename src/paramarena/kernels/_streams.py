"""Random streams written into flat buffers: work items, their grouping into calls, kernels.

Private helpers of :mod:`paramarena.kernels`: a stream's elements ``start ..`` into one array
(:func:`_fill_stream`), or many ranges of one buffer (:func:`_plan_items`), through the C-ABI fill
kernels of ``_cpu_fills`` (loaded by ``_native``; see there for the item table they read). Big
ranges are cut into work items of one chunk each and handed to the kernel threads one at a time
(:func:`paramarena.kernels._threads.run_chunks`): values never depend on how the work is cut.
This module must not import numba.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from paramarena.kernels._threads import run_chunks

#: Arrays with at least this many elements are split into chunks for the kernel threads
#: (:func:`set_num_threads`); smaller ones run on the calling thread (no thread wake-up).
PARALLEL_THRESHOLD = 1 << 16

# Work items handed to the kernel threads one at a time: small enough that a thread slowed down
# by a busy core holds up the end of a call by well under a millisecond, big enough that the
# Python dispatch per chunk (a few microseconds) stays below 2% of the work.
_FILL_CHUNK_BLOCKS = 1 << 16  # Philox blocks: 256K float32 / 128K float64 values
_F64 = np.dtype(np.float64)
_ZERO = np.zeros(1, np.int64)


def _plan_items(
    flat: np.ndarray,
    dist: int,
    offsets: np.ndarray,
    sizes: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    keys: np.ndarray,
    firsts: np.ndarray | None = None,
    calls: int | None = None,
) -> Callable[[], None]:
    """Return the call that fills ranges of ``flat`` with one distribution (checked inputs).

    Range ``j`` gets its stream's values from Philox block ``firsts[j]`` on (default 0: the
    stream's start). Ranges of more than one chunk (:data:`_FILL_CHUNK_BLOCKS` Philox blocks)
    become several work items; consecutive items are grouped into calls of about one chunk of
    values each, which the kernel threads take one at a time (:func:`run_chunks`). Everything
    but the kernels is done here.

    ``calls``: group the items into that many calls of about equal numbers of values (one per
    kernel thread: a thread that must take the GIL to start each call then takes it once)
    instead of calls of about one chunk each.
    """
    if not len(offsets):
        return _nothing
    per = 2 if flat.dtype == _F64 else 4
    kernel = _kernel(per, dist)
    chunk = _FILL_CHUNK_BLOCKS * per  # values
    pieces = np.maximum(-(-sizes // chunk), 1)
    if (pieces > 1).any():  # big ranges: one item per chunk (block numbers continue)
        row = np.repeat(np.arange(len(sizes)), pieces)
        piece = np.arange(len(row)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        items = np.empty((len(row), 3), np.int64)
        items[:, 0] = offsets[row] + piece * chunk
        items[:, 1] = piece * _FILL_CHUNK_BLOCKS + (0 if firsts is None else firsts[row])
        items[:, 2] = np.minimum(sizes[row] - piece * chunk, chunk)
        params = np.stack((a[row], b[row]), axis=1)
        keys = np.ascontiguousarray(keys[row])
    else:
        first = np.zeros_like(offsets) if firsts is None else firsts
        items = np.stack((offsets, first, sizes), axis=1)
        params = np.stack((a, b), axis=1)
    count = len(items)
    ends = np.cumsum(items[:, 2])
    total = int(ends[-1])
    calls = max(1, min(count, -(-total // chunk) if calls is None else calls))
    if calls == 1:
        bounds = [0, count]
    else:  # call g runs items bounds[g] .. bounds[g + 1] - 1 (about `chunk` values each)
        cuts = np.searchsorted(ends, np.arange(1, calls) * (total / calls), side="left") + 1
        cut = np.concatenate(([0], np.minimum(cuts, count), [count]))  # non-decreasing
        bounds = cut[np.concatenate(([True], cut[1:] != cut[:-1]))].tolist()  # (no np.unique:
        # its first use in a process imports numpy.ma, ~12 ms)
    addresses = (
        _buffer_arg(flat), items.ctypes.data, params.ctypes.data, keys.ctypes.data
    )  # fmt: skip

    def run(g: int) -> None:
        kernel(*addresses, bounds[g], bounds[g + 1])

    def run_all() -> None:
        # the arrays the addresses point into stay alive with this closure
        _keep = (flat, items, params, keys)
        run_chunks(run, len(bounds) - 1)

    return run_all


def _nothing() -> None:
    return None


_KERNELS: dict[tuple[int, int], Any] = {}
_ITEM = ctypes.c_int64 * 3
_PARAMS = ctypes.c_double * 2
_LITTLE = sys.byteorder == "little"


def _buffer_arg(flat: np.ndarray) -> Any:
    """Return the kernels' ``buf`` argument for a writable C-contiguous array (no copy)."""
    return ctypes.c_ubyte.from_buffer(flat)  # type: ignore[arg-type]


def _kernel(per: int, dist: int) -> Any:
    """Return the fill kernel for ``per`` values a block (4: float32, 2: float64) and ``dist``."""
    kernel = _KERNELS.get((per, dist))
    if kernel is None:
        from paramarena.kernels import _native

        name = ("f32_" if per == 4 else "f64_") + ("uniform", "normal")[dist]
        kernel = _KERNELS[per, dist] = _native.fill_kernel(name)
    return kernel


def _fill_stream(
    flat: np.ndarray, dist: int, a: float, b: float, digest: bytes, start: int
) -> None:
    """Write elements ``start .. start + flat.size`` of a stream into ``flat``.

    ``flat``: 1-D, C-contiguous, writable float32/float64; ``digest``: the stream's 16 bytes
    (:func:`_stream_digest`). A partial Philox block at the start goes through a scratch block.
    """
    per = 2 if flat.dtype == _F64 else 4
    n = flat.size
    lane = start % per
    if lane and n:
        head = min(per - lane, n)
        scratch = np.empty(per, flat.dtype)
        _fill_stream(scratch, dist, a, b, digest, start - lane)
        flat[:head] = scratch[lane : lane + head]
        flat, start, n = flat[head:], start + head, n - head
    if not n:
        return
    if n < PARALLEL_THRESHOLD:  # one work item, on this thread
        words = digest if _LITTLE else np.frombuffer(digest, "<u4").astype(np.uint32).ctypes.data
        buf = _buffer_arg(flat)
        _kernel(per, dist)(buf, _ITEM(0, start // per, n), _PARAMS(a, b), words, 0, 1)
    else:
        keys = np.frombuffer(digest, "<u4").astype(np.uint32).reshape(1, 4)
        _plan_items(
            flat, dist, _ZERO, np.array([n]), np.array([a]), np.array([b]), keys,
            np.array([start // per]),
        )()  # fmt: skip
