"""BLAKE2b stream keys of many parameters at once: a C-ABI function (``numba.cfunc``).

:func:`paramarena.kernels.stream_keys` derives each parameter's Philox stream words as the
16-byte BLAKE2b digest (``person=b"paramdict-phx4"``) of the seed's 8 little-endian bytes
followed by the name's UTF-8 bytes. ``hashlib`` does that in ~0.3 µs a name, most of it Python
around the C calls; for many names this kernel computes the same digests from one buffer (RFC
7693 BLAKE2b, unrolled over scalars) on paramarena's kernel threads. Like the fill kernels it
takes pointers and integers only, and :mod:`paramarena.kernels._native` caches its machine
code::

    kernel(buf, ends, scratch, out, i0, i1)

``buf`` holds the seed's 8 bytes, then every name's bytes back to back; name ``r`` is
``buf[8 + ends[r] : 8 + ends[r + 1]]``; its four 32-bit words go to ``out[4r : 4r + 4]``,
for ``r`` in ``i0 .. i1 - 1``. ``scratch`` is 16 uint64 (128 bytes) of the caller's, one
per concurrent call: the message block being hashed. Imported only to compile the kernel.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numba
import numpy as np
from numba.core import types

__all__ = ["KERNEL_NAME", "compile_kernel", "python_kernel"]

KERNEL_NAME = "stream_keys"

_inline = numba.njit(inline="always", error_model="numpy")

_U = np.uint64
_IV0, _IV1, _IV2, _IV3 = (
    _U(0x6A09E667F3BCC908),
    _U(0xBB67AE8584CAA73B),
    _U(0x3C6EF372FE94F82B),
    _U(0xA54FF53A5F1D36F1),
)
_IV4, _IV5, _IV6, _IV7 = (
    _U(0x510E527FADE682D1),
    _U(0x9B05688C2B3E6C1F),
    _U(0x1F83D9ABFB41BD6B),
    _U(0x5BE0CD19137E2179),
)
#: parameter block word 0: digest length 16, no key, fanout 1, depth 1
_H0 = _IV0 ^ _U(0x01010010)
#: ``person`` (16 bytes, zero-padded) as two little-endian words, xor-ed into h6 and h7
_H6 = _IV6 ^ _U(0x6369646D61726170)
_H7 = _IV7 ^ _U(0x347868702D74)
_ONES = _U(0xFFFFFFFFFFFFFFFF)
_MASK32 = _U(0xFFFFFFFF)
_S1, _S8, _S16, _S24, _S32 = _U(1), _U(8), _U(16), _U(24), _U(32)
_S40, _S48, _S63 = _U(40), _U(48), _U(63)


@_inline
def _g(a: Any, b: Any, c: Any, d: Any, x: Any, y: Any) -> Any:
    a = a + b + x
    d = d ^ a
    d = (d >> _S32) | (d << _S32)
    c = c + d
    b = b ^ c
    b = (b >> _S24) | (b << _S40)
    a = a + b + y
    d = d ^ a
    d = (d >> _S16) | (d << _S48)
    c = c + d
    b = b ^ c
    b = (b >> _S63) | (b << _S1)
    return a, b, c, d


#: BLAKE2b's message schedule: round ``r`` uses permutation ``r % 10``
_SIGMA = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    ],
    np.intp,
)


@_inline
def _compress(h: Any, m: Any, t: Any, last: bool) -> Any:
    """BLAKE2b's compression of the 16 message words ``m`` into ``h`` (8-tuple)."""
    v0, v1, v2, v3, v4, v5, v6, v7 = h
    v8, v9, v10, v11 = _IV0, _IV1, _IV2, _IV3
    v12, v13, v14, v15 = _IV4 ^ t, _IV5, _IV6, _IV7
    if last:
        v14 = v14 ^ _ONES
    for r in range(12):
        v0, v4, v8, v12 = _g(v0, v4, v8, v12, m[_SIGMA[r, 0]], m[_SIGMA[r, 1]])
        v1, v5, v9, v13 = _g(v1, v5, v9, v13, m[_SIGMA[r, 2]], m[_SIGMA[r, 3]])
        v2, v6, v10, v14 = _g(v2, v6, v10, v14, m[_SIGMA[r, 4]], m[_SIGMA[r, 5]])
        v3, v7, v11, v15 = _g(v3, v7, v11, v15, m[_SIGMA[r, 6]], m[_SIGMA[r, 7]])
        v0, v5, v10, v15 = _g(v0, v5, v10, v15, m[_SIGMA[r, 8]], m[_SIGMA[r, 9]])
        v1, v6, v11, v12 = _g(v1, v6, v11, v12, m[_SIGMA[r, 10]], m[_SIGMA[r, 11]])
        v2, v7, v8, v13 = _g(v2, v7, v8, v13, m[_SIGMA[r, 12]], m[_SIGMA[r, 13]])
        v3, v4, v9, v14 = _g(v3, v4, v9, v14, m[_SIGMA[r, 14]], m[_SIGMA[r, 15]])
    h0, h1, h2, h3, h4, h5, h6, h7 = h
    return (
        h0 ^ v0 ^ v8, h1 ^ v1 ^ v9, h2 ^ v2 ^ v10, h3 ^ v3 ^ v11,
        h4 ^ v4 ^ v12, h5 ^ v5 ^ v13, h6 ^ v6 ^ v14, h7 ^ v7 ^ v15,
    )  # fmt: skip


def stream_keys(buf: Any, ends: Any, scratch: Any, out: Any, i0: int, i1: int) -> None:
    """Write the stream words of names ``i0 .. i1 - 1`` (see the module docstring).

    Nothing in it can raise (pointer indexing, no arrays), so its machine code calls no
    Python or Numba runtime function and loads without Numba.
    """
    words = scratch  # this call's own 16 words: the message block being hashed
    for r in range(i0, i1):
        name0 = ends[r]  # message byte i (i >= 8) is buf[name0 + i]
        length = 8 + ends[r + 1] - name0
        h = (_H0, _IV1, _IV2, _IV3, _IV4, _IV5, _H6, _H7)
        blocks = (length + 127) // 128  # >= 1: the message holds at least the seed
        for blk in range(blocks):
            base = blk * 128
            for j in range(16):
                words[j] = _U(0)
            size = length - base
            for k in range(size if size < 128 else 128):  # (min/max would add error paths)
                i = base + k
                byte = _U(buf[i] if i < 8 else buf[name0 + i])
                words[k >> 3] |= byte << _U((k & 7) * 8)
            last = blk == blocks - 1
            t = _U(length) if last else _U(base + 128)
            h = _compress(h, words, t, last)
        out[4 * r] = np.uint32(h[0] & _MASK32)
        out[4 * r + 1] = np.uint32(h[0] >> _S32)
        out[4 * r + 2] = np.uint32(h[1] & _MASK32)
        out[4 * r + 3] = np.uint32(h[1] >> _S32)


def signature() -> Any:
    """Return the C signature of the kernel (the fill kernels' argument layout)."""
    ptr: Any = types.CPointer
    void: Any = types.void
    return void(
        ptr(types.uint8), ptr(types.int64), ptr(types.uint64), ptr(types.uint32), types.int64,
        types.int64,
    )  # fmt: skip


def compile_kernel(*, cache: bool) -> Any:
    """Compile the kernel with ``numba.cfunc`` (``cache``: Numba's own on-disk cache)."""
    return numba.cfunc(signature(), cache=cache, error_model="numpy")(stream_keys)


def python_kernel() -> Any:
    """Return the kernel served by ``hashlib`` (``NUMBA_DISABLE_JIT=1``: nothing compiled)."""
    import ctypes

    def call(buf: Any, ends: Any, unused: Any, out: Any, i0: int, i1: int) -> None:
        if i1 <= i0:
            return
        bounds = np.ctypeslib.as_array((ctypes.c_int64 * (i1 + 1)).from_address(_address(ends)))
        size = 8 + int(bounds[i1])
        data = bytes((ctypes.c_ubyte * size).from_address(_address(buf)))
        words = np.ctypeslib.as_array((ctypes.c_uint32 * (4 * i1)).from_address(_address(out)))
        for r in range(i0, i1):
            message = data[:8] + data[8 + int(bounds[r]) : 8 + int(bounds[r + 1])]
            digest = hashlib.blake2b(message, digest_size=16, person=b"paramdict-phx4").digest()
            words[4 * r : 4 * r + 4] = np.frombuffer(digest, "<u4")

    return call


def _address(arg: Any) -> int:
    import ctypes

    if isinstance(arg, int):
        return arg
    return ctypes.addressof(arg)
