"""Scalar kernel bodies written once in a plain-Python subset.

Every function here is compiled twice: with ``numba.njit`` for the CPU (``_cpu.py``) and with
``numba.cuda.jit(device=True)`` for CUDA (``_cuda.py``); the plain-Python versions also run
as-is (tests, the CUDA simulator). Integers are carried as ``numpy.uint64`` holding 32-bit
values so that every compiler sees the same types and no intermediate overflows.

This module must not import numba.
"""

from __future__ import annotations

import math

import numpy as np

# Philox4x32 constants (Random123).
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_SH32 = np.uint64(32)
_SH8 = np.uint64(8)
_SH5 = np.uint64(5)
_SH6 = np.uint64(6)
_SH13 = np.uint64(13)
_SH16 = np.uint64(16)
_SH23 = np.uint64(23)

_TWO_M24 = 1.0 / 16777216.0  # 2**-24
_TWO_M53 = 1.0 / 9007199254740992.0  # 2**-53
_TWO26 = 67108864.0  # 2**26
_TWO_PI = 2.0 * math.pi


def philox4x32_10(
    c0: np.uint64,
    c1: np.uint64,
    c2: np.uint64,
    c3: np.uint64,
    k0: np.uint64,
    k1: np.uint64,
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """Philox4x32 with 10 rounds: counter ``(c0..c3)``, key ``(k0, k1)``, 32-bit words.

    The rounds are written out (not a ``for`` loop) so that LLVM can vectorize the CPU fill
    loops across blocks; the body stays plain Python for the CUDA compiler and the simulator.
    """
    # round 1
    p0 = _M0 * c0
    p1 = _M1 * c2
    c0, c1, c2, c3 = (p1 >> _SH32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _MASK32
    k0 = (k0 + _W0) & _MASK32
    k1 = (k1 + _W1) & _MASK32
    # round 2
    p0 = _M0 * c0
    p1 = _M1 * c2
    c0, c1, c2, c3 = (p1 >> _SH32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _MASK32
    k0 = (k0 + _W0) & _MASK32
    k1 = (k1 + _W1) & _MASK32
    # round 3
    p0 = _M0 * c0
    p1 = _M1 * c2
    c0, c1, c2, c3 = (p1 >> _SH32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _MASK32
    k0 = (k0 + _W0) & _MASK32
    k1 = (k1 + _W1) & _MASK32
    # round 4
    p0 = _M0 * c0
    p1 = _M1 * c2
    c0, c1, c2, c3 = (p1 >> _SH32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _MASK32
    k0 = (k0 + _W0) & _MASK32
    k1 = (k1 + _W1) & _MASK32
    # round 5
    p0 = _M0 * c0
    p1 = _M1 * c2
    c0, c1, c2, c3 = (p1 >> _SH32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _MASK32
    k0 = (k0 + _W0) & _MASK32
    k1 = (k1 + _W1) & _MASK32
    # round 6
    p0 = _M0 * c0
    p1 = _M1 * c2
    c0, c1, c2, c3 = (p1 >> _SH32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _MASK32
    k0 = (k0 + _W0) & _MASK32
    k1 = (k1 + _W1) & _MASK32
    # round 7
    p0 = _M0 * c0
    p1 = _M1 * c2
    c0, c1, c2, c3 = (p1 >> _SH32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _MASK32
    k0 = (k0 + _W0) & _MASK32
    k1 = (k1 + _W1) & _MASK32
    # round 8
    p0 = _M0 * c0
    p1 = _M1 * c2
    c0, c1, c2, c3 = (p1 >> _SH32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _MASK32
    k0 = (k0 + _W0) & _MASK32
    k1 = (k1 + _W1) & _MASK32
    # round 9
    p0 = _M0 * c0
    p1 = _M1 * c2
    c0, c1, c2, c3 = (p1 >> _SH32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _MASK32
    k0 = (k0 + _W0) & _MASK32
    k1 = (k1 + _W1) & _MASK32
    # round 10
    p0 = _M0 * c0
    p1 = _M1 * c2
    c0, c1, c2, c3 = (p1 >> _SH32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c3 ^ k1, p0 & _MASK32
    return c0, c1, c2, c3


def u01_f32(x: np.uint64) -> float:
    """Map one 32-bit word to ``[0, 1)`` using its top 24 bits (exact in float32)."""
    return float(x >> _SH8) * _TWO_M24


def u01_f32_open(x: np.uint64) -> float:
    """Map one 32-bit word to ``(0, 1]`` using its top 24 bits (for logarithms)."""
    return (float(x >> _SH8) + 1.0) * _TWO_M24


def u01_f64(a: np.uint64, b: np.uint64) -> float:
    """Map two 32-bit words to ``[0, 1)`` with 53 random bits (27 from ``a``, 26 from ``b``)."""
    return (float(a >> _SH5) * _TWO26 + float(b >> _SH6)) * _TWO_M53


def box_muller(u1: float, u2: float) -> tuple[float, float]:
    """Two independent standard normals from ``u1`` in ``(0, 1]`` and ``u2`` in ``[0, 1)``."""
    r = math.sqrt(-2.0 * math.log(u1))
    t = _TWO_PI * u2
    return r * math.cos(t), r * math.sin(t)


_U0 = np.uint64(0)
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_F32 = np.float32
_U32 = np.uint32
_I32 = np.int32
_SH2 = np.uint64(2)
_SH30 = np.uint64(30)
_U2P29 = np.uint64(1 << 29)
_U2P30 = np.uint64(1 << 30)
_SIGN32 = np.uint64(1 << 31)
#: 32-bit operands, so that the quadrant test stays in 32-bit lanes
_ODD32 = np.uint32(1 << 30)
_ZERO32 = np.uint32(0)
#: the low 22 of u2's 24 bits, moved to the top of a 32-bit word (the angle within its quadrant)
_ANGLE_BITS = np.uint64(0xFFFFFC00)
#: float32 bits of sqrt(2)/2 plus one ulp: mantissas from here on are halved (x <= float32 sqrt 2)
_HALF_SQRT2_BITS = np.uint64(0x3F3504F4)
# float32 constants (every operand of the float32 path is float32, so Numba keeps float32)
_F_1 = _F32(1.0)
_F_HALF = _F32(0.5)
_F_M2 = _F32(-2.0)
_F_M24 = _F32(-24.0)
#: 2 pi / 2**24 (rounded to float32) times 2**-10 (exact), for the angle scaled by 2**10
_F_ANG = _F32(2.0 * np.pi / 16777216.0) * _F32(2.0**-10)
# Cephes logf: log(1 + f) = f - f^2/2 + f^3 P(f), |f| <= sqrt(2) - 1
_L8 = _F32(7.0376836292e-2)
_L7 = _F32(-1.1514610310e-1)
_L6 = _F32(1.1676998740e-1)
_L5 = _F32(-1.2420140846e-1)
_L4 = _F32(1.4249322787e-1)
_L3 = _F32(-1.6668057665e-1)
_L2 = _F32(2.0000714765e-1)
_L1 = _F32(-2.4999993993e-1)
_L0 = _F32(3.3333331174e-1)
_LN2_HI_F = _F32(0.693359375)
_LN2_LO_F = _F32(-2.12194440e-4)
# Cephes sinf / cosf on [-pi/4, pi/4]
_SF2 = _F32(-1.9515295891e-4)
_SF1 = _F32(8.3321608736e-3)
_SF0 = _F32(-1.6666654611e-1)
_CF2 = _F32(2.443315711809948e-5)
_CF1 = _F32(-1.388731625493765e-3)
_CF0 = _F32(4.166664568298827e-2)


def float32_from_bits(b: np.uint64) -> np.float32:
    """Return the float32 whose bits are ``b`` (< 2**32): an exact reinterpretation.

    Numba's CPU target compiles this (and :func:`float32_bits`) as one LLVM bitcast (overloaded
    in ``_bitcast``), the CUDA target as its own scalar ``view`` (``_cuda``).
    """
    return _U32(b).view(_F32)


def float32_bits(v: np.float32) -> np.uint64:
    """Return the bits of the float32 ``v``, as an integer below 2**32."""
    return np.uint64(_F32(v).view(_U32))


def box_muller_f32(x0: np.uint64, x1: np.uint64) -> tuple[np.float32, np.float32]:
    """Two standard normals from two 32-bit words, computed in float32 arithmetic only.

    ``u1 = ((x0 >> 8) + 1) * 2**-24`` in ``(0, 1]`` and ``u2 = (x1 >> 8) * 2**-24`` in
    ``[0, 1)``; returns ``(r cos 2 pi u2, r sin 2 pi u2)`` with ``r = sqrt(-2 ln u1)``. The
    logarithm (its polynomial by Estrin's scheme) and sine/cosine are Cephes' float32
    polynomials after exact range reductions done on the bits: ``u1 * 2**24`` (an integer,
    exact in float32) is split into ``2**k * x`` with ``x`` in ``[sqrt(2)/2, sqrt(2))`` by
    integer operations on its float32 bits, and the angle's quadrant and its offset within it
    come from the integer ``x1``. Every floating-point operation is a float32 ``+``, ``*`` or
    ``sqrt``, each rounded once (no fused multiply-add, no libm call), or exact (a choice, a
    sign bit); so the Numba CPU loop, the CUDA simulator and plain numpy give bit-identical
    results (``math.sqrt`` of a float32 is the correctly rounded float32 square root in all
    three). Accuracy: within ``2.5 * 2**-23 * max(1, |z|)`` of the float64 Box-Muller of the
    same ``(u1, u2)`` (at most 6.7e-7 absolute; ``tests/kernels`` checks every ``u1`` and every
    angle).
    """
    # ln u1 = ln x + (k - 24) ln 2, u1 * 2**24 = 2**k * x; k = exponent (+ 1 if x was halved).
    # Every integer below fits in 32 bits (so the vectorized loop works on 32-bit lanes).
    bits = float32_bits(_F32(_I32((x0 >> _SH8) + _U1)))
    k = np.uint64(_U32(bits - _HALF_SQRT2_BITS)) >> _SH23
    f = float32_from_bits(bits - (k << _SH23)) - _F_1
    e = _F32(_I32(k)) + _F_M24
    z = f * f
    # P(f) by Estrin's scheme (about half the dependency chain of Horner's rule)
    z2 = z * z
    p = ((_L7 * f + _L6) * z + (_L5 * f + _L4)) * z2 + ((_L3 * f + _L2) * z + (_L1 * f + _L0))
    p = _L8 * (z2 * z2) + p
    y = f * z * p + e * _LN2_LO_F - _F_HALF * z
    log_u1 = f + y + e * _LN2_HI_F
    r = _F32(math.sqrt(_F_M2 * log_u1))
    # 2 pi u2 = quadrant * pi/2 + theta, |theta| <= pi/4: u2's top 2 bits rounded by the third
    # give the quadrant, the low 22 bits read as a signed number the offset theta
    h = _U32(x1 + _U2P29)  # the quadrant is bits 30 and 31 of h (mod 2**32)
    theta = _F32(_I32((x1 << _SH2) & _ANGLE_BITS)) * _F_ANG
    t = theta * theta
    sin_t = ((_SF2 * t + _SF1) * t + _SF0) * t * theta + theta
    cos_t = ((_CF2 * t + _CF1) * t + _CF0) * t * t - _F_HALF * t + _F_1
    odd = (h & _ODD32) != _ZERO32  # quadrants 1 and 3: cos and sin swap
    cos_a = r * (sin_t if odd else cos_t)
    sin_a = r * (cos_t if odd else sin_t)
    # signs as bits: cos < 0 in quadrants 1 and 2, sin < 0 in 2 and 3 (r * -c == -(r * c))
    cos_a = float32_from_bits(float32_bits(cos_a) ^ ((h + _U2P30) & _SIGN32))
    sin_a = float32_from_bits(float32_bits(sin_a) ^ (h & _SIGN32))
    return cos_a, sin_a


_U7C00 = np.uint64(0x7C00)
_U1000 = np.uint64(0x1000)
_U3FFF = np.uint64(0x3FFF)
_U7FF = np.uint64(0x7FF)
_U8000 = np.uint64(0x8000)
_EXP32 = np.uint64(0x7F800000)
_SIG32 = np.uint64(0x007FFFFF)
_HIDDEN32 = np.uint64(0x00800000)
_EXP_H_MIN = np.uint64(0x38000000)  # float32 exponent bits of 2**-15 (largest f16 subnormal)
_EXP_H_ZERO = np.uint64(0x33000000)  # below 2**-25: rounds to zero
_EXP_H_OVER = np.uint64(0x47800000)  # 2**16: overflows to inf
_U102 = np.uint64(102)
_U112 = np.uint64(112)
_U113 = np.uint64(113)


def f32_to_f16_bits(f: np.uint64) -> np.uint64:
    """Float32 bits -> float16 bits, round-to-nearest-even, exactly as numpy's ``astype``.

    numpy's ``npy_floatbits_to_halfbits`` (NaN payloads truncated, kept non-zero). Every case is
    computed and then chosen with bit masks (``_ONES * cond``) instead of branches, so that LLVM
    vectorizes the loop; no intermediate wraps around.
    """
    h_sgn = (f >> _SH16) & _U8000
    f_exp = f & _EXP32
    f_sig = f & _SIG32
    # normal half: round the 23-bit significand to 10 bits (a carry bumps the exponent)
    sig_n = f_sig + _U1000 * np.uint64((f_sig & _U3FFF) != _U1000)
    normal = ((max(f_exp, _EXP_H_MIN) - _EXP_H_MIN) >> _SH13) + (sig_n >> _SH13)
    # subnormal half: shift the full significand right by 1..11 more bits, then round
    e = min(max(f_exp >> _SH23, _U102), _U112)
    sig_s = (_HIDDEN32 + f_sig) >> (_U113 - e)
    tie = ((sig_s & _U3FFF) == _U1000) & ((f & _U7FF) == _U0)
    sub = (sig_s + _U1000 * (_U1 - np.uint64(tie))) >> _SH13
    # NaN: keep the top payload bits, but never let it become inf
    nan = _U7C00 + (f_sig >> _SH13)
    nan = nan + np.uint64(nan == _U7C00)
    m = _ONES * np.uint64(f_exp <= _EXP_H_MIN)
    r = (sub & m) | (normal & ~m)
    m = _ONES * np.uint64(f_exp < _EXP_H_ZERO)
    r = r & ~m
    m = _ONES * np.uint64(f_exp >= _EXP_H_OVER)
    r = (_U7C00 & m) | (r & ~m)
    m = _ONES * np.uint64((f_exp == _EXP32) & (f_sig != _U0))
    r = (nan & m) | (r & ~m)
    return h_sgn + r


def f16_to_f32_bits(h: np.uint64) -> np.uint64:
    """Float16 bits -> float32 bits (exact; NaN payloads kept as numpy does)."""
    h_exp = h & np.uint64(0x7C00)
    f_sgn = (h & np.uint64(0x8000)) << _SH16
    if h_exp == np.uint64(0):
        h_sig = h & np.uint64(0x03FF)
        if h_sig == np.uint64(0):
            return f_sgn
        h_sig = h_sig << np.uint64(1)
        while (h_sig & np.uint64(0x0400)) == np.uint64(0):
            h_sig = h_sig << np.uint64(1)
            h_exp = h_exp + np.uint64(1)
        f_e = (np.uint64(112) - h_exp) << _SH23
        return f_sgn + f_e + ((h_sig & np.uint64(0x03FF)) << _SH13)
    if h_exp == np.uint64(0x7C00):
        return f_sgn + np.uint64(0x7F800000) + ((h & np.uint64(0x03FF)) << _SH13)
    return f_sgn + (((h & np.uint64(0x7FFF)) + np.uint64(0x1C000)) << _SH13)


def f32_to_bf16_bits(f: np.uint64) -> np.uint64:
    """Float32 bits -> bfloat16 bits, round-to-nearest-even, exactly as ml_dtypes does.

    NaNs become the quiet NaN ``0x7fc0`` with the input's sign.
    """
    if (f & np.uint64(0x7FFFFFFF)) > np.uint64(0x7F800000):
        return ((f >> _SH16) & np.uint64(0x8000)) | np.uint64(0x7FC0)
    lsb = (f >> _SH16) & np.uint64(1)
    return ((f + np.uint64(0x7FFF) + lsb) >> _SH16) & np.uint64(0xFFFF)


def bf16_to_f32_bits(b: np.uint64) -> np.uint64:
    """Bfloat16 bits -> float32 bits (exact)."""
    return b << _SH16
