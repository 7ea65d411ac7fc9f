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
# fdlibm polynomial coefficients (log1p on [sqrt(2)/2 - 1, sqrt(2) - 1]; sin/cos on [-pi/4, pi/4])
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11
_SQRT2 = 1.4142135623730951
_U3 = np.uint64(3)
_U2P21 = np.uint64(1 << 21)
_SH22 = np.uint64(22)
_TWO22 = 4194304.0


def box_muller_f32(x0: np.uint64, x1: np.uint64) -> tuple[float, float]:
    """Two standard normals from two 32-bit words, with branch-free float64 log/sin/cos.

    Same value as ``box_muller(u01_f32_open(x0), u01_f32(x1))`` up to a few float64 ulp
    (fdlibm polynomials instead of libm), so float32 results match it to <= 1 float32 ulp; the
    arithmetic is selects only, so CPU loops vectorize and CUDA runs the same code.
    """
    # ln(u1), u1 = v * 2**-24 with the integer v in [1, 2**24]: v = 2**e * x, x in [1, 2)
    xf = float((x0 >> _SH8) + _U1)
    e = -24.0
    big = np.float64(xf >= 65536.0)
    xf = xf * (1.0 + big * -0.9999847412109375)
    e = e + big * 16.0
    big = np.float64(xf >= 256.0)
    xf = xf * (1.0 + big * -0.99609375)
    e = e + big * 8.0
    big = np.float64(xf >= 16.0)
    xf = xf * (1.0 + big * -0.9375)
    e = e + big * 4.0
    big = np.float64(xf >= 4.0)
    xf = xf * (1.0 + big * -0.75)
    e = e + big * 2.0
    big = np.float64(xf >= 2.0)
    xf = xf * (1.0 + big * -0.5)
    e = e + big * 1.0
    big = np.float64(xf > _SQRT2)
    xf = xf * (1.0 - 0.5 * big)
    e = e + big
    f = xf - 1.0
    sv = f / (2.0 + f)
    z = sv * sv
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    hfsq = 0.5 * f * f
    log_u1 = e * _LN2_HI - ((hfsq - (sv * (hfsq + t1 + t2) + e * _LN2_LO)) - f)
    r = math.sqrt(-2.0 * log_u1)
    # angle 2*pi*u2 = q * pi/2 + theta, |theta| <= pi/4, from the 24-bit integer m = u2 * 2**24
    m = x1 >> _SH8
    q = (m + _U2P21) >> _SH22
    theta = (float(m) - float(q) * _TWO22) * (_TWO_M24 * _TWO_PI)
    t = theta * theta
    sin_t = theta + theta * t * (_S1 + t * (_S2 + t * (_S3 + t * (_S4 + t * (_S5 + t * _S6)))))
    cos_t = 1.0 - 0.5 * t + t * t * (_C1 + t * (_C2 + t * (_C3 + t * (_C4 + t * (_C5 + t * _C6)))))
    quadrant = q & _U3
    cq = np.float64(quadrant == _U0) - np.float64(quadrant == _U2)  # cos(quadrant * pi/2)
    sq = np.float64(quadrant == _U1) - np.float64(quadrant == _U3)  # sin(quadrant * pi/2)
    cos_a = cq * cos_t - sq * sin_t
    sin_a = sq * cos_t + cq * sin_t
    return r * cos_a, r * sin_a


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
