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


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """Return the crc32c of ``A + B`` from ``crc32c(A)``, ``crc32c(B)`` and ``len(B)``."""
    if len2 <= 0:
        return crc1
    odd = [_POLY] + [1 << n for n in range(31)]  # one zero bit
    even = _square(odd)  # two zero bits
    odd = _square(even)  # four zero bits
    while True:
        even = _square(odd)
        if len2 & 1:
            crc1 = _times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _square(even)
        if len2 & 1:
            crc1 = _times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def crc32c_concat(parts: Iterable[tuple[int, int]]) -> int:
    """Return the crc32c of the concatenation of parts given as ``(crc32c, length)``."""
    crc = 0
    for part_crc, length in parts:
        crc = crc32c_combine(crc, part_crc, length)
    return crc
