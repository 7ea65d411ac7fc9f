"""CPU kernel filling many small random streams in one call (batched initialization).

Each range ``[offsets[j], offsets[j] + sizes[j])`` of a flat buffer is filled exactly as
``_cpu._fill_serial`` fills a whole array with stream key ``keys[j]``: the same compiled body runs,
so a batched fill is bit-identical to one fill per parameter. Imported lazily, like ``_cpu``.
"""

from __future__ import annotations

from typing import Any

import numba
from numba import prange

from paramarena.kernels import _cpu

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_pjit = numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")


@_jit
def _fill_ranges(
    buf: Any, per: int, offsets: Any, sizes: Any, dists: Any, a: Any, b: Any, keys: Any
) -> None:
    for j in range(offsets.size):
        o = offsets[j]
        _cpu._fill_serial(buf[o : o + sizes[j]], per, dists[j], a[j], b[j], keys[j])


@_pjit
def _fill_ranges_parallel(
    buf: Any,
    per: int,
    offsets: Any,
    sizes: Any,
    dists: Any,
    a: Any,
    b: Any,
    keys: Any,
    bounds: Any,
) -> None:
    # work item g fills ranges bounds[g] .. bounds[g + 1] - 1 (about equal numbers of values)
    for g in prange(bounds.size - 1):
        for j in range(bounds[g], bounds[g + 1]):
            o = offsets[j]
            _cpu._fill_serial(buf[o : o + sizes[j]], per, dists[j], a[j], b[j], keys[j])
