"""CPU random-fill kernels: C-ABI functions (``numba.cfunc``) over a table of work items.

Imported only to compile a kernel (see :mod:`paramarena.kernels._native`, which caches the
machine code so that later processes do not import Numba at all). One kernel per
(dtype, distribution), so that a process compiles / loads only the ones it uses (a Xavier
initialize of float32 parameters: the float32 uniform one only). Each takes pointers and
integers only::

    kernel(buf, items, params, keys, i0, i1)

and fills work items ``i0 .. i1 - 1``: item ``r`` writes ``items[3r + 2]`` values of the stream
with words ``keys[4r : 4r + 4]`` into ``buf[items[3r] : items[3r] + items[3r + 2]]``, starting
at Philox block ``items[3r + 1]`` of that stream (a big array is several items), with
``a, b = params[2r], params[2r + 1]``: uniform ``a + b * U[0, 1)``, normal ``a + b * N(0, 1)``.
The last, partial Philox block of an item writes only the values that fit. Element ``i`` of a
stream therefore gets the same value whichever item, thread or call computes it, and the same
as ``_cpu._f32_blocks`` / ``_f64_blocks`` (the same scalar bodies of ``_bodies``, the same
expressions). The caller checks that every item lies inside ``buf``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numba
import numpy as np
from numba.core import types

from paramarena.kernels import _bitcast, _bodies

_bitcast.register()

_inline = numba.njit(inline="always", error_model="numpy")

_philox = _inline(_bodies.philox4x32_10)
_u01_f32 = _inline(_bodies.u01_f32)
_u01_f64 = _inline(_bodies.u01_f64)
_box_muller = _inline(_bodies.box_muller)
_box_muller_f32 = _inline(_bodies.box_muller_f32)
_bits = _bodies.float32_bits
_from_bits = _bodies.float32_from_bits

_MASK32 = np.uint64(0xFFFFFFFF)
_SH32 = np.uint64(32)
_SH2 = np.uint64(2)
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_U4 = np.uint64(4)
#: Philox blocks per stage of the float32 normal kernel (16 KB of values)
_STAGE = 1024


@_inline
def _item(items: Any, params: Any, keys: Any, r: int) -> Any:
    """Item ``r``: (start in buf, first block, value count, a, b, k0, k1, n0, n1)."""
    return (
        np.uint64(items[3 * r]),
        np.uint64(items[3 * r + 1]),
        np.uint64(items[3 * r + 2]),
        params[2 * r],
        params[2 * r + 1],
        np.uint64(keys[4 * r]),
        np.uint64(keys[4 * r + 1]),
        np.uint64(keys[4 * r + 2]),
        np.uint64(keys[4 * r + 3]),
    )


@_inline
def _uniform4(x0: Any, x1: Any, x2: Any, x3: Any, a: float, b: float) -> Any:
    return a + b * _u01_f32(x0), a + b * _u01_f32(x1), a + b * _u01_f32(x2), a + b * _u01_f32(x3)


@_inline
def _normal4(x0: Any, x1: Any, x2: Any, x3: Any, a: float, b: float) -> Any:
    z0, z1 = _box_muller_f32(x0, x1)
    z2, z3 = _box_muller_f32(x2, x3)
    return a + b * float(z0), a + b * float(z1), a + b * float(z2), a + b * float(z3)


@_inline
def _uniform2(x0: Any, x1: Any, x2: Any, x3: Any, a: float, b: float) -> Any:
    return a + b * _u01_f64(x0, x1), a + b * _u01_f64(x2, x3)


@_inline
def _normal2(x0: Any, x1: Any, x2: Any, x3: Any, a: float, b: float) -> Any:
    z0, z1 = _box_muller(1.0 - _u01_f64(x0, x1), _u01_f64(x2, x3))
    return a + b * z0, a + b * z1


# The four kernels differ only in the block function they call (a call through an argument
# would not be inlined, and LLVM would not vectorize the loop): keep their bodies in step. The
# block loop counts in int64, like the njit kernels of ``_cpu``, and the partial last block is
# written before it: a uint64 counter, or the partial block after the loop, each measured 3-7%
# slower for float32 uniforms. (An out-of-line function for the partial block does as well, but
# a call can raise in Numba's calling convention: the code then imports Numba's and CPython's
# error functions and could not be linked without Numba.)


def f32_uniform(buf: Any, items: Any, params: Any, keys: Any, i0: int, i1: int) -> None:
    for r in range(i0, i1):
        o, first, n, a, b, k0, k1, n0, n1 = _item(items, params, keys, r)
        nfull = n >> _SH2
        rest = n - nfull * _U4
        if rest != _U0:
            c = first + nfull
            x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
            v0, v1, v2, v3 = _uniform4(x0, x1, x2, x3, a, b)
            i = o + nfull * _U4
            buf[i] = v0
            if rest > _U1:
                buf[i + _U1] = v1
            if rest > _U2:
                buf[i + _U2] = v2
        for blk in range(np.int64(first), np.int64(first + nfull)):
            c = np.uint64(blk)
            x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
            v0, v1, v2, v3 = _uniform4(x0, x1, x2, x3, a, b)
            i = o + (c - first) * _U4
            buf[i] = v0
            buf[i + _U1] = v1
            buf[i + _U2] = v2
            buf[i + _U3] = v3


def f32_normal(buf: Any, items: Any, params: Any, keys: Any, i0: int, i1: int) -> None:
    # Full blocks in stages of ``_STAGE`` blocks (16 KB of ``buf``, in L1), three loops each:
    # the Philox words into ``buf`` (as float32 bit patterns, never used as floats), the
    # float32 Box-Muller pairs in place, then ``a + b * z`` in float64. The same values as
    # ``_normal4`` (``float(z)`` is exact); each loop vectorizes on its own and keeps its
    # constants in registers (one fused loop spilled them, and its float64 step alone cost a
    # quarter of the kernel's time).
    for r in range(i0, i1):
        o, first, n, a, b, k0, k1, n0, n1 = _item(items, params, keys, r)
        nfull = n >> _SH2
        rest = n - nfull * _U4
        if rest != _U0:
            c = first + nfull
            x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
            v0, v1, v2, _ = _normal4(x0, x1, x2, x3, a, b)
            i = o + nfull * _U4
            buf[i] = v0
            if rest > _U1:
                buf[i + _U1] = v1
            if rest > _U2:
                buf[i + _U2] = v2
        s0 = np.int64(first)
        end = np.int64(first + nfull)
        while s0 < end:  # (a stepped range or ``min`` could raise: imports of Numba's)
            s1 = s0 + _STAGE if end - s0 > _STAGE else end
            for blk in range(s0, s1):
                c = np.uint64(blk)
                x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
                i = o + (c - first) * _U4
                buf[i] = _from_bits(x0)
                buf[i + _U1] = _from_bits(x1)
                buf[i + _U2] = _from_bits(x2)
                buf[i + _U3] = _from_bits(x3)
            p0 = o + (np.uint64(s0) - first) * _U4  # first value of the stage
            p1 = o + (np.uint64(s1) - first) * _U4
            for pair in range((p1 - p0) >> _U1):
                i = p0 + pair * _U2
                z0, z1 = _box_muller_f32(_bits(buf[i]), _bits(buf[i + _U1]))
                buf[i] = z0
                buf[i + _U1] = z1
            for i in range(p0, p1):
                buf[i] = a + b * float(buf[i])
            s0 = s1


def f64_uniform(buf: Any, items: Any, params: Any, keys: Any, i0: int, i1: int) -> None:
    for r in range(i0, i1):
        o, first, n, a, b, k0, k1, n0, n1 = _item(items, params, keys, r)
        nfull = n >> _U1
        if n & _U1:
            c = first + nfull
            x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
            v0, v1 = _uniform2(x0, x1, x2, x3, a, b)
            buf[o + nfull * _U2] = v0
        for blk in range(np.int64(first), np.int64(first + nfull)):
            c = np.uint64(blk)
            x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
            v0, v1 = _uniform2(x0, x1, x2, x3, a, b)
            i = o + (c - first) * _U2
            buf[i] = v0
            buf[i + _U1] = v1


def f64_normal(buf: Any, items: Any, params: Any, keys: Any, i0: int, i1: int) -> None:
    for r in range(i0, i1):
        o, first, n, a, b, k0, k1, n0, n1 = _item(items, params, keys, r)
        nfull = n >> _U1
        if n & _U1:
            c = first + nfull
            x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
            v0, v1 = _normal2(x0, x1, x2, x3, a, b)
            buf[o + nfull * _U2] = v0
        for blk in range(np.int64(first), np.int64(first + nfull)):
            c = np.uint64(blk)
            x0, x1, x2, x3 = _philox(c & _MASK32, c >> _SH32, n0, n1, k0, k1)
            v0, v1 = _normal2(x0, x1, x2, x3, a, b)
            i = o + (c - first) * _U2
            buf[i] = v0
            buf[i + _U1] = v1


KERNELS = {
    "f32_uniform": (f32_uniform, types.float32),
    "f32_normal": (f32_normal, types.float32),
    "f64_uniform": (f64_uniform, types.float64),
    "f64_normal": (f64_normal, types.float64),
}


def signature(element: Any) -> Any:
    """Return the C signature of a kernel writing ``element`` values."""
    ptr: Any = types.CPointer
    void: Any = types.void
    return void(
        ptr(element), ptr(types.int64), ptr(types.float64), ptr(types.uint32), types.int64,
        types.int64,
    )  # fmt: skip


def compile_kernel(name: str, *, cache: bool) -> Any:
    """Compile kernel ``name`` with ``numba.cfunc`` (``cache``: Numba's own on-disk cache)."""
    fn, element = KERNELS[name]
    return numba.cfunc(signature(element), cache=cache, error_model="numpy")(fn)


def python_kernel(name: str) -> Any:
    """Kernel ``name`` run as plain Python on the same arguments (``NUMBA_DISABLE_JIT=1``).

    With Numba's JIT disabled for debugging, nothing can be compiled: the kernel's Python source
    runs on numpy views of the memory the arguments point to (very slowly; same values).
    """
    fn, element = KERNELS[name]
    dtype = np.float32 if element == types.float32 else np.float64

    def address(arg: Any) -> int:
        if isinstance(arg, int):
            return arg
        if isinstance(arg, bytes):
            return ctypes.cast(ctypes.c_char_p(arg), ctypes.c_void_p).value or 0
        return ctypes.addressof(arg)

    def view(arg: Any, ctype: Any, count: int) -> np.ndarray:
        return np.ctypeslib.as_array((ctype * count).from_address(address(arg)))

    def call(buf: Any, items: Any, params: Any, keys: Any, i0: int, i1: int) -> None:
        if i1 <= i0:
            return
        table = view(items, ctypes.c_int64, 3 * i1).reshape(i1, 3)
        extent = int((table[i0:, 0] + table[i0:, 2]).max())
        ctype = ctypes.c_float if dtype == np.float32 else ctypes.c_double
        out = view(buf, ctype, max(extent, 1))
        fn(out, table.reshape(-1), view(params, ctypes.c_double, 2 * i1),
           view(keys, ctypes.c_uint32, 4 * i1), i0, i1)  # fmt: skip

    return call
