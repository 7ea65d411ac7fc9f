"""crc32c of buffers, of slices of one buffer, and of a concatenation from its parts' crc32c.

A zarr checkpoint stores two checksums of the same bytes: the crc32c of each parameter (in the
manifest) and the crc32c of each chunk file (its 4-byte trailer). A save reads the data once:
it checksums each piece of a chunk (a large parameter, or a staging buffer of small ones) and
derives the chunk's crc32c from the pieces' with :func:`crc32c_combine` (zlib's
``crc32_combine``: no data touched), and a large parameter that spans chunks the same way.

The checksums themselves are computed by the ``crc32c`` package (hardware instructions where the
CPU has them), which releases the GIL for buffers of 32 KiB and more: writer threads checksum
and write in parallel.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["crc32c", "crc32c_combine", "crc32c_concat", "crc32c_slices"]

_POLY = 0x82F63B78  # Castagnoli, reflected
_ONE = 1 << 31  # the polynomial 1 in the reflected representation


_IMPL: list[Callable[..., int]] = []


def _extension() -> Callable[..., int]:
    """Return the ``crc32c`` package's C function, imported once.

    The package's ``__init__`` also imports its command line (``argparse``) and reads its
    version from the installed metadata: 15-20 ms added to the first save of a process. The
    extension module is loaded by itself when it can be found (it needs nothing from the
    package), else the package is imported as usual.
    """
    if not _IMPL:
        module = sys.modules.get("crc32c._crc32c")
        if module is None:
            module = _load_extension()
        _IMPL.append(module.crc32c)
    return _IMPL[0]


def _load_extension() -> Any:
    import importlib.machinery
    import importlib.util

    try:
        spec = importlib.util.find_spec("crc32c")
        where = list(spec.submodule_search_locations or []) if spec else []
        for directory in where:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(directory, "_crc32c" + suffix)
                if os.path.isfile(path):
                    loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", path)
                    ext = importlib.util.spec_from_file_location(
                        "crc32c._crc32c", path, loader=loader
                    )
                    if ext is None:
                        continue
                    module = importlib.util.module_from_spec(ext)
                    loader.exec_module(module)
                    sys.modules.setdefault("crc32c._crc32c", module)
                    return sys.modules["crc32c._crc32c"]
    except (ImportError, OSError, ValueError):  # pragma: no cover - fall back to the package
        pass
    import crc32c as package  # pragma: no cover - an installation laid out otherwise

    return package  # pragma: no cover


def crc32c(data: Any, value: int = 0) -> int:
    """Return the crc32c of a buffer (continuing from ``value``, the crc32c of what came before)."""
    return (_IMPL[0] if _IMPL else _extension())(data, value)


def crc32c_slices(buffer: memoryview, bounds: Sequence[int]) -> list[int]:
    """Return the crc32c of ``buffer[bounds[i]:bounds[i + 1]]`` for every ``i``.

    Parameters
    ----------
    buffer : memoryview
        A one-dimensional byte buffer (format ``B``).
    bounds : sequence of int
        Non-decreasing byte offsets, ``len(bounds) - 1`` slices.
    """
    crc = _extension()
    return [crc(buffer[a:b]) for a, b in itertools.pairwise(bounds)]


def _multiply(a: int, b: int) -> int:
    """Product of two polynomials modulo the Castagnoli polynomial (reflected, zlib's multmodp)."""
    m = _ONE
    p = 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _squares() -> list[int]:
    """``x**(2**k)`` modulo the polynomial for k in 0..63."""
    table = [_ONE >> 1]  # x**1
    for _ in range(63):
        table.append(_multiply(table[-1], table[-1]))
    return table


_X2N = _squares()


@functools.lru_cache(maxsize=4096)
def _append_zeros_operator(nbytes: int) -> int:
    """``x**(8 * nbytes)`` modulo the polynomial: appending ``nbytes`` zero bytes."""
    if nbytes >= 1 << 60:
        raise ValueError(f"crc32c_combine: length {nbytes} is out of range")
    p = _ONE
    n, k = nbytes, 3  # 8 * nbytes == nbytes * 2**3
    while n:
        if n & 1:
            p = _multiply(_X2N[k], p)
        n >>= 1
        k += 1
    return p


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """Return the crc32c of ``A + B`` from ``crc32c(A)``, ``crc32c(B)`` and ``len(B)``.

    CRCs are linear over GF(2): appending ``n`` bytes multiplies a message's CRC by
    ``x**(8n)`` modulo the polynomial (the operator for each length is cached).
    """
    if len2 <= 0 or not crc1:
        return crc1 ^ crc2
    return _multiply(_append_zeros_operator(len2), crc1) ^ crc2


def crc32c_concat(parts: Iterable[tuple[int, int]]) -> int:
    """Return the crc32c of the concatenation of parts given as ``(crc32c, length)``."""
    crc = 0
    for part_crc, length in parts:
        crc = crc32c_combine(crc, part_crc, length)
    return crc
