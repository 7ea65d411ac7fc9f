"""crc32c of a concatenation from the crc32c of its parts (zlib's ``crc32_combine``).

A sharded save learns each rank's crc32c of its rows; the manifest needs the crc32c of the whole
parameter. CRCs are linear over GF(2): appending ``n`` bytes to a message multiplies its CRC
by ``x**(8n)`` modulo the polynomial, computed here by repeated squaring of the 32x32
"append one zero bit" operator (O(log n), no data touched).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["crc32c_combine", "crc32c_concat"]

_POLY = 0x82F63B78  # Castagnoli, reflected


def _times(mat: list[int], vec: int) -> int:
    out = 0
    i = 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _square(mat: list[int]) -> list[int]:
    return [_times(mat, mat[n]) for n in range(32)]


#: _POWERS[k]: the operator appending 2**k zero bytes (built on first use, then reused)
_POWERS: list[list[int]] = []


def _power(k: int) -> list[int]:
    if not _POWERS:
        op = [_POLY] + [1 << n for n in range(31)]  # one zero bit
        for _ in range(3):
            op = _square(op)  # 2, 4, 8 zero bits: one zero byte
        _POWERS.append(op)
    while len(_POWERS) <= k:
        _POWERS.append(_square(_POWERS[-1]))
    return _POWERS[k]


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """Return the crc32c of ``A + B`` from ``crc32c(A)``, ``crc32c(B)`` and ``len(B)``."""
    if len2 <= 0:
        return crc1
    k = 0
    while len2 and crc1:  # the operator is linear: zero stays zero
        if len2 & 1:
            crc1 = _times(_power(k), crc1)
        len2 >>= 1
        k += 1
    return crc1 ^ crc2


def crc32c_concat(parts: Iterable[tuple[int, int]]) -> int:
    """Return the crc32c of the concatenation of parts given as ``(crc32c, length)``."""
    crc = 0
    for part_crc, length in parts:
        crc = crc32c_combine(crc, part_crc, length)
    return crc
