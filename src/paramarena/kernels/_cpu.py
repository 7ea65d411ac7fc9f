"""CPU kernels: the scalar bodies of ``_bodies`` compiled with ``numba.njit(cache=True)``.

Imported lazily by :mod:`paramarena.kernels` (never by ``import paramarena``): the casts and
range zeroing. The random fills that ``kernels`` runs are the C-ABI kernels of ``_cpu_fills``
(loaded through ``_native`` without Numba); ``_fill_parallel`` here is the same fill as a Numba
``parallel=True`` kernel, kept as the reference that ``benchmarks/bench_contention.py`` compares
Numba's threading layers with. Values never depend on which one runs.

The scalar bodies are inlined at Numba-IR level so that LLVM sees one straight-line loop body
and vectorizes across Philox blocks / elements; loop indices are unsigned so that stores carry
no negative-index wrap-around checks.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import prange
from numba.core import types
from numba.extending import intrinsic, overload

from paramarena.kernels import _bitcast, _bodies

_bitcast.register()

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_pjit = numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
_inline = numba.njit(inline="always", error_model="numpy")

_philox = _inline(_bodies.philox4x32_10)
_u01_f32 = _inline(_bodies.u01_f32)
_u01_f32_open = _inline(_bodies.u01_f32_open)
_u01_f64 = _inline(_bodies.u01_f64)
_box_muller = _inline(_bodies.box_muller)
_box_muller_f32 = _inline(_bodies.box_muller_f32)
_f32_to_f16 = _inline(_bodies.f32_to_f16_bits)
_f16_to_f32 = _inline(_bodies.f16_to_f32_bits)
_f32_to_bf16 = _inline(_bodies.f32_to_bf16_bits)
_bf16_to_f32 = _inline(_bodies.bf16_to_f32_bits)

_MASK32 = np.uint64(0xFFFFFFFF)
_SH32 = np.uint64(32)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_U4 = np.uint64(4)
_CHUNK = 1 << 14  # Philox blocks (or cast elements / 4) per parallel work item
_STAGE = 1024  # Philox blocks per stage of the float32 normal fill (16 KB of values)


# --- random fills --------------------------------------------------------------------------
# ``dist`` 0: uniform, value = a + b * U[0, 1); 1: normal, value = a + b * N(0, 1).
# ``_f32_blocks`` / ``_f64_blocks`` fill whole Philox blocks ``[b0, b1)`` (4 float32 or 2
# float64 values per block) into ``out`` starting at block ``base``.


@_jit
def _f32_uniform_blocks(out: Any, b0: int, b1: int, base: int, a: float, b: float, k: Any) -> None:
    k0, k1, n0, n1 = np.uint64(k[0]), np.uint64(k[1]), np.uint64(k[2]), np.uint64(k[3])
    ub = np.uint64(base)
    for blk in range(b0, b1):
        c = np.uint64(blk)
        x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
        i = (c - ub) * _U4
        out[i] = a + b * _u01_f32(x0)
        out[i + _U1] = a + b * _u01_f32(x1)
        out[i + _U2] = a + b * _u01_f32(x2)
        out[i + _U3] = a + b * _u01_f32(x3)


@_jit
def _f32_normal_blocks(out: Any, b0: int, b1: int, base: int, a: float, b: float, k: Any) -> None:
    # as ``_cpu_fills.f32_normal``: the float32 normals of a stage of blocks, then a + b * z in
    # float64 over the stage (the same values as computing a + b * z in the Box-Muller loop)
    k0, k1, n0, n1 = np.uint64(k[0]), np.uint64(k[1]), np.uint64(k[2]), np.uint64(k[3])
    ub = np.uint64(base)
    for s0 in range(b0, b1, _STAGE):
        s1 = min(s0 + _STAGE, b1)
        for blk in range(s0, s1):
            c = np.uint64(blk)
            x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
            z0, z1 = _box_muller_f32(x0, x1)
            z2, z3 = _box_muller_f32(x2, x3)
            j = (c - ub) * _U4
            out[j] = z0
            out[j + _U1] = z1
            out[j + _U2] = z2
            out[j + _U3] = z3
        for i in range((np.uint64(s0) - ub) * _U4, (np.uint64(s1) - ub) * _U4):
            out[i] = a + b * float(out[i])


@_jit
def _f64_uniform_blocks(out: Any, b0: int, b1: int, base: int, a: float, b: float, k: Any) -> None:
    k0, k1, n0, n1 = np.uint64(k[0]), np.uint64(k[1]), np.uint64(k[2]), np.uint64(k[3])
    ub = np.uint64(base)
    for blk in range(b0, b1):
        c = np.uint64(blk)
        x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
        i = (c - ub) * _U2
        out[i] = a + b * _u01_f64(x0, x1)
        out[i + _U1] = a + b * _u01_f64(x2, x3)


@_jit
def _f64_normal_blocks(out: Any, b0: int, b1: int, base: int, a: float, b: float, k: Any) -> None:
    k0, k1, n0, n1 = np.uint64(k[0]), np.uint64(k[1]), np.uint64(k[2]), np.uint64(k[3])
    ub = np.uint64(base)
    for blk in range(b0, b1):
        c = np.uint64(blk)
        x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
        z0, z1 = _box_muller(1.0 - _u01_f64(x0, x1), _u01_f64(x2, x3))
        i = (c - ub) * _U2
        out[i] = a + b * z0
        out[i + _U1] = a + b * z1


@_jit
def _f32_blocks(
    out: Any, b0: int, b1: int, base: int, dist: int, a: float, b: float, k: Any
) -> None:
    if dist == 0:
        _f32_uniform_blocks(out, b0, b1, base, a, b, k)
    else:
        _f32_normal_blocks(out, b0, b1, base, a, b, k)


@_jit
def _f64_blocks(
    out: Any, b0: int, b1: int, base: int, dist: int, a: float, b: float, k: Any
) -> None:
    if dist == 0:
        _f64_uniform_blocks(out, b0, b1, base, a, b, k)
    else:
        _f64_normal_blocks(out, b0, b1, base, a, b, k)


def _blocks(
    out: Any, per: int, b0: int, b1: int, base: int, dist: int, a: float, b: float, k: Any
) -> None:
    """Fill Philox blocks ``[b0, b1)`` of ``out`` (float32: 4 values a block, float64: 2)."""
    if per == 4:
        _f32_blocks(out, b0, b1, base, dist, a, b, k)
    else:
        _f64_blocks(out, b0, b1, base, dist, a, b, k)


@overload(_blocks, jit_options={"error_model": "numpy"})
def _blocks_typed(
    out: Any, per: Any, b0: Any, b1: Any, base: Any, dist: Any, a: Any, b: Any, k: Any
) -> Any:
    # chosen by the array's dtype while compiling: a float32 fill never compiles the float64
    # block function (and the other way round), which shortens the cold start
    target = _f32_blocks if out.dtype == types.float32 else _f64_blocks

    def impl(
        out: Any, per: Any, b0: Any, b1: Any, base: Any, dist: Any, a: Any, b: Any, k: Any
    ) -> None:
        target(out, b0, b1, base, dist, a, b, k)

    return impl


@_jit
def _tail(out: Any, per: int, dist: int, a: float, b: float, k: Any) -> None:
    """Fill the last, partial Philox block of ``out`` (through a scratch block)."""
    n = out.size
    nfull = n // per
    rest = n - nfull * per
    if rest == 0:
        return
    tmp = np.empty(per, out.dtype)
    _blocks(tmp, per, nfull, nfull + 1, nfull, dist, a, b, k)
    for j in range(rest):
        out[nfull * per + j] = tmp[j]


@_pjit
def _fill_parallel(out: Any, per: int, dist: int, a: float, b: float, k: Any) -> None:
    nfull = out.size // per
    nchunks = (nfull + _CHUNK - 1) // _CHUNK
    for ch in prange(nchunks):
        _blocks(out, per, ch * _CHUNK, min(nfull, (ch + 1) * _CHUNK), 0, dist, a, b, k)
    _tail(out, per, dist, a, b, k)


# --- casts (bit-level on unsigned views, or native for float32 <-> float64) -----------------
# ``kind`` 0: f32 -> f16, 1: f16 -> f32, 2: f32 -> bf16, 3: bf16 -> f32, 4: native conversion.


@_jit
def _cast_range(src: Any, dst: Any, start: int, stop: int, kind: int) -> None:
    s0 = np.uint64(start)
    s1 = np.uint64(stop)
    if kind == 0:
        for i in range(s0, s1):
            dst[i] = np.uint16(_f32_to_f16(np.uint64(src[i])))
    elif kind == 1:
        for i in range(s0, s1):
            dst[i] = np.uint32(_f16_to_f32(np.uint64(src[i])))
    elif kind == 2:
        for i in range(s0, s1):
            dst[i] = np.uint16(_f32_to_bf16(np.uint64(src[i])))
    elif kind == 3:
        for i in range(s0, s1):
            dst[i] = np.uint32(_bf16_to_f32(np.uint64(src[i])))
    else:
        for i in range(s0, s1):
            dst[i] = src[i]


@_jit
def _cast_serial(src: Any, dst: Any, kind: int) -> None:
    _cast_range(src, dst, 0, src.size, kind)


@_pjit
def _cast_parallel(src: Any, dst: Any, kind: int) -> None:
    n = src.size
    step = 4 * _CHUNK
    nchunks = (n + step - 1) // step
    for ch in prange(nchunks):
        _cast_range(src, dst, ch * step, min(n, (ch + 1) * step), kind)


# float32 -> float16 with the CPU's conversion instruction (F16C ``vcvtps2ph`` on x86, ``fcvt``
# on arm64): LLVM's ``fptrunc`` rounds to nearest even like numpy; only NaNs differ (hardware
# quiets them), so NaN inputs take numpy's rule. Used after a self-check, else ``kind`` 0.


def _fptrunc_half_bits_typer(typingctx: Any, x: Any) -> Any:
    sig = types.uint16(types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return sig, codegen


_fptrunc_half_bits: Any = intrinsic(_fptrunc_half_bits_typer)


_ABS32 = np.uint64(0x7FFFFFFF)
_INF32 = np.uint64(0x7F800000)
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_SIG32 = np.uint64(0x007FFFFF)
_SH13 = np.uint64(13)
_SH16 = np.uint64(16)
_U0 = np.uint64(0)
_U7C00 = np.uint64(0x7C00)
_U8000 = np.uint64(0x8000)


@_jit
def _f16_hw_range(src: Any, bits: Any, dst: Any, start: int, stop: int) -> None:
    for i in range(np.uint64(start), np.uint64(stop)):
        h = np.uint64(_fptrunc_half_bits(src[i]))
        f = np.uint64(bits[i])
        payload = (f & _SIG32) >> _SH13
        nan = ((f >> _SH16) & _U8000) + _U7C00 + payload + np.uint64(payload == _U0)
        m = _ONES * np.uint64((f & _ABS32) > _INF32)
        dst[i] = np.uint16((nan & m) | (h & ~m))


@_jit
def _f16_hw_serial(src: Any, bits: Any, dst: Any) -> None:
    _f16_hw_range(src, bits, dst, 0, src.size)


@_pjit
def _f16_hw_parallel(src: Any, bits: Any, dst: Any) -> None:
    n = src.size
    step = 4 * _CHUNK
    nchunks = (n + step - 1) // step
    for ch in prange(nchunks):
        _f16_hw_range(src, bits, dst, ch * step, min(n, (ch + 1) * step))


# --- zero -------------------------------------------------------------------------------------


@_jit
def _zero_ranges_serial(buf: Any, starts: Any, stops: Any) -> None:
    for r in range(starts.size):
        buf[starts[r] : stops[r]] = 0


@_jit
def _zero_range(buf: Any, start: int, stop: int) -> None:
    buf[start:stop] = 0


@_pjit
def _zero_flat_parallel(buf: Any, start: int, stop: int) -> None:
    n = stop - start
    step = 1 << 20
    nchunks = (n + step - 1) // step
    for ch in prange(nchunks):
        buf[start + ch * step : min(stop, start + (ch + 1) * step)] = 0
