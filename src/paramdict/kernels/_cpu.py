"""CPU kernels: the scalar bodies of ``_bodies`` compiled with ``numba.njit(cache=True)``.

Imported lazily by :mod:`paramdict.kernels` (never by ``import paramdict``). Every loop exists
twice: a serial version for small arrays (no thread start-up) and a ``parallel=True`` version
(``prange``, honours ``NUMBA_NUM_THREADS``). Values never depend on which one runs.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from paramdict.kernels import _bodies

_jit = numba.njit(cache=True, nogil=True)
_pjit = numba.njit(cache=True, nogil=True, parallel=True)

_philox = _jit(_bodies.philox4x32_10)
_u01_f32 = _jit(_bodies.u01_f32)
_u01_f32_open = _jit(_bodies.u01_f32_open)
_u01_f64 = _jit(_bodies.u01_f64)
_box_muller = _jit(_bodies.box_muller)
_f32_to_f16 = _jit(_bodies.f32_to_f16_bits)
_f16_to_f32 = _jit(_bodies.f16_to_f32_bits)
_f32_to_bf16 = _jit(_bodies.f32_to_bf16_bits)
_bf16_to_f32 = _jit(_bodies.bf16_to_f32_bits)

_MASK32 = np.uint64(0xFFFFFFFF)
_SH32 = np.uint64(32)


# --- random fills --------------------------------------------------------------------------
# ``dist`` 0: uniform, value = a + b * U[0, 1); 1: normal, value = a + b * N(0, 1).


@_jit
def _block_f32(
    blk: int, dist: int, a: float, b: float, k0: Any, k1: Any, n0: Any, n1: Any
) -> tuple[float, float, float, float]:
    c = np.uint64(blk)
    x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
    if dist == 0:
        return (
            a + b * _u01_f32(x0),
            a + b * _u01_f32(x1),
            a + b * _u01_f32(x2),
            a + b * _u01_f32(x3),
        )
    z0, z1 = _box_muller(_u01_f32_open(x0), _u01_f32(x1))
    z2, z3 = _box_muller(_u01_f32_open(x2), _u01_f32(x3))
    return a + b * z0, a + b * z1, a + b * z2, a + b * z3


@_jit
def _block_f64(
    blk: int, dist: int, a: float, b: float, k0: Any, k1: Any, n0: Any, n1: Any
) -> tuple[float, float]:
    c = np.uint64(blk)
    x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
    if dist == 0:
        return a + b * _u01_f64(x0, x1), a + b * _u01_f64(x2, x3)
    z0, z1 = _box_muller(1.0 - _u01_f64(x0, x1), _u01_f64(x2, x3))
    return a + b * z0, a + b * z1


@_jit
def _store_f32(out: Any, blk: int, dist: int, a: float, b: float, k: Any) -> None:
    v0, v1, v2, v3 = _block_f32(blk, dist, a, b, k[0], k[1], k[2], k[3])
    i = blk * 4
    n = out.size
    if i + 3 < n:
        out[i] = v0
        out[i + 1] = v1
        out[i + 2] = v2
        out[i + 3] = v3
    else:
        out[i] = v0
        if i + 1 < n:
            out[i + 1] = v1
        if i + 2 < n:
            out[i + 2] = v2


@_jit
def _store_f64(out: Any, blk: int, dist: int, a: float, b: float, k: Any) -> None:
    v0, v1 = _block_f64(blk, dist, a, b, k[0], k[1], k[2], k[3])
    i = blk * 2
    out[i] = v0
    if i + 1 < out.size:
        out[i + 1] = v1


@_jit
def _fill_f32_serial(out: Any, dist: int, a: float, b: float, k: Any) -> None:
    for blk in range((out.size + 3) // 4):
        _store_f32(out, blk, dist, a, b, k)


@_pjit
def _fill_f32_parallel(out: Any, dist: int, a: float, b: float, k: Any) -> None:
    for blk in prange((out.size + 3) // 4):
        _store_f32(out, blk, dist, a, b, k)


@_jit
def _fill_f64_serial(out: Any, dist: int, a: float, b: float, k: Any) -> None:
    for blk in range((out.size + 1) // 2):
        _store_f64(out, blk, dist, a, b, k)


@_pjit
def _fill_f64_parallel(out: Any, dist: int, a: float, b: float, k: Any) -> None:
    for blk in prange((out.size + 1) // 2):
        _store_f64(out, blk, dist, a, b, k)


# --- casts (bit-level on unsigned views, or native for float32 <-> float64) -----------------


@_jit
def _f32_to_f16_serial(src: Any, dst: Any) -> None:
    for i in range(src.size):
        dst[i] = np.uint16(_f32_to_f16(np.uint64(src[i])))


@_pjit
def _f32_to_f16_parallel(src: Any, dst: Any) -> None:
    for i in prange(src.size):
        dst[i] = np.uint16(_f32_to_f16(np.uint64(src[i])))


@_jit
def _f16_to_f32_serial(src: Any, dst: Any) -> None:
    for i in range(src.size):
        dst[i] = np.uint32(_f16_to_f32(np.uint64(src[i])))


@_pjit
def _f16_to_f32_parallel(src: Any, dst: Any) -> None:
    for i in prange(src.size):
        dst[i] = np.uint32(_f16_to_f32(np.uint64(src[i])))


@_jit
def _f32_to_bf16_serial(src: Any, dst: Any) -> None:
    for i in range(src.size):
        dst[i] = np.uint16(_f32_to_bf16(np.uint64(src[i])))


@_pjit
def _f32_to_bf16_parallel(src: Any, dst: Any) -> None:
    for i in prange(src.size):
        dst[i] = np.uint16(_f32_to_bf16(np.uint64(src[i])))


@_jit
def _bf16_to_f32_serial(src: Any, dst: Any) -> None:
    for i in range(src.size):
        dst[i] = np.uint32(src[i]) << np.uint32(16)


@_pjit
def _bf16_to_f32_parallel(src: Any, dst: Any) -> None:
    for i in prange(src.size):
        dst[i] = np.uint32(src[i]) << np.uint32(16)


@_jit
def _native_serial(src: Any, dst: Any) -> None:
    for i in range(src.size):
        dst[i] = src[i]


@_pjit
def _native_parallel(src: Any, dst: Any) -> None:
    for i in prange(src.size):
        dst[i] = src[i]


# --- zero -------------------------------------------------------------------------------------


@_jit
def _zero_ranges_serial(buf: Any, starts: Any, stops: Any) -> None:
    for r in range(starts.size):
        for i in range(starts[r], stops[r]):
            buf[i] = 0


@_pjit
def _zero_flat_parallel(buf: Any, start: int, stop: int) -> None:
    for i in prange(start, stop):
        buf[i] = 0
