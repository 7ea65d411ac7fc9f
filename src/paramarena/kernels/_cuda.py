# mypy: disable-error-code="attr-defined,untyped-decorator,misc,no-untyped-call,unused-ignore"
"""CUDA kernels: the same scalar bodies as the CPU (``_bodies``) compiled with ``numba.cuda``.

Imported only when a ``gpu`` context is used (needs ``pip install 'paramarena[cuda]'``). One
thread computes one Philox block (4 float32 / 2 float64 values) or one cast / zero element.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda
from numba.cuda.extending import overload

from paramarena.kernels import _bodies


# the float32 <-> bits helpers of the bodies: Numba-CUDA's own scalar ``view`` (on the CPU they
# are LLVM bitcasts, ``_bitcast``; the simulator runs the plain-Python ``view``)
@overload(_bodies.float32_from_bits, inline="always")
def _float32_from_bits(b: Any) -> Any:
    def impl(b: Any) -> Any:
        return np.uint32(b).view(np.float32)

    return impl


@overload(_bodies.float32_bits, inline="always")
def _float32_bits(v: Any) -> Any:
    def impl(v: Any) -> Any:
        return np.uint64(np.float32(v).view(np.uint32))

    return impl


_dev = cuda.jit(device=True)

_philox = _dev(_bodies.philox4x32_10)
_u01_f32 = _dev(_bodies.u01_f32)
_u01_f32_open = _dev(_bodies.u01_f32_open)
_u01_f64 = _dev(_bodies.u01_f64)
_box_muller = _dev(_bodies.box_muller)
_box_muller_f32 = _dev(_bodies.box_muller_f32)
_f32_to_f16 = _dev(_bodies.f32_to_f16_bits)
_f16_to_f32 = _dev(_bodies.f16_to_f32_bits)
_f32_to_bf16 = _dev(_bodies.f32_to_bf16_bits)
_bf16_to_f32 = _dev(_bodies.bf16_to_f32_bits)

_MASK32 = np.uint64(0xFFFFFFFF)
_SH32 = np.uint64(32)
THREADS = 256


@cuda.jit
def _fill_f32(out: Any, dist: int, a: float, b: float, k0: Any, k1: Any, n0: Any, n1: Any) -> None:
    blk = cuda.grid(1)
    n = out.size
    i = blk * 4
    if i >= n:
        return
    c = np.uint64(blk)
    x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
    if dist == 0:
        v0 = a + b * _u01_f32(x0)
        v1 = a + b * _u01_f32(x1)
        v2 = a + b * _u01_f32(x2)
        v3 = a + b * _u01_f32(x3)
    else:
        z0, z1 = _box_muller_f32(x0, x1)
        z2, z3 = _box_muller_f32(x2, x3)
        v0 = a + b * float(z0)
        v1 = a + b * float(z1)
        v2 = a + b * float(z2)
        v3 = a + b * float(z3)
    out[i] = v0
    if i + 1 < n:
        out[i + 1] = v1
    if i + 2 < n:
        out[i + 2] = v2
    if i + 3 < n:
        out[i + 3] = v3


@cuda.jit
def _fill_f64(out: Any, dist: int, a: float, b: float, k0: Any, k1: Any, n0: Any, n1: Any) -> None:
    blk = cuda.grid(1)
    n = out.size
    i = blk * 2
    if i >= n:
        return
    c = np.uint64(blk)
    x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
    if dist == 0:
        v0 = a + b * _u01_f64(x0, x1)
        v1 = a + b * _u01_f64(x2, x3)
    else:
        z0, z1 = _box_muller(1.0 - _u01_f64(x0, x1), _u01_f64(x2, x3))
        v0 = a + b * z0
        v1 = a + b * z1
    out[i] = v0
    if i + 1 < n:
        out[i + 1] = v1


@cuda.jit
def _cast_f32_to_f16(src: Any, dst: Any) -> None:
    i = cuda.grid(1)
    if i < src.size:
        dst[i] = np.uint16(_f32_to_f16(np.uint64(src[i])))


@cuda.jit
def _cast_f16_to_f32(src: Any, dst: Any) -> None:
    i = cuda.grid(1)
    if i < src.size:
        dst[i] = np.uint32(_f16_to_f32(np.uint64(src[i])))


@cuda.jit
def _cast_f32_to_bf16(src: Any, dst: Any) -> None:
    i = cuda.grid(1)
    if i < src.size:
        dst[i] = np.uint16(_f32_to_bf16(np.uint64(src[i])))


@cuda.jit
def _cast_bf16_to_f32(src: Any, dst: Any) -> None:
    i = cuda.grid(1)
    if i < src.size:
        dst[i] = np.uint32(_bf16_to_f32(np.uint64(src[i])))


@cuda.jit
def _cast_native(src: Any, dst: Any) -> None:
    i = cuda.grid(1)
    if i < src.size:
        dst[i] = src[i]


@cuda.jit
def _zero(flat: Any) -> None:
    i = cuda.grid(1)
    if i < flat.size:
        flat[i] = 0


def launch(kernel: Any, threads_needed: int, *args: Any) -> None:
    """Launch ``kernel`` over ``threads_needed`` threads (1-D grid)."""
    if threads_needed <= 0:
        return
    blocks = (threads_needed + THREADS - 1) // THREADS
    kernel[blocks, THREADS](*args)
