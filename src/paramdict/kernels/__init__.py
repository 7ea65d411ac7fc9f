"""Typed public entry points of the compute kernels (fill, cast, zero).

The jitted implementations are private; everything here takes and returns numpy arrays.
Numba is imported only when a kernel first runs, never by ``import paramdict``.

NOTE: this first cut is a plain-numpy implementation of the interface; the Numba kernels
(counter-based Philox RNG, parallel fill/cast/zero) replace the bodies without changing
the signatures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["cast", "fill_normal", "fill_uniform", "fill_value", "zero"]


def _generator(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=16).digest()
    return np.random.Generator(np.random.Philox(key=int.from_bytes(digest, "little")))


def fill_uniform(out: np.ndarray, low: float, high: float, *, seed: int, key: str) -> None:
    """Fill ``out`` in place with U[low, high) values keyed by ``(seed, key)``."""
    gen = _generator(seed, key)
    out[...] = gen.uniform(low, high, out.shape).astype(out.dtype, copy=False)


def fill_normal(out: np.ndarray, mean: float, std: float, *, seed: int, key: str) -> None:
    """Fill ``out`` in place with N(mean, std) values keyed by ``(seed, key)``."""
    gen = _generator(seed, key)
    out[...] = gen.normal(mean, std, out.shape).astype(out.dtype, copy=False)


def fill_value(out: np.ndarray, value: Any) -> None:
    """Fill ``out`` in place with ``value`` (broadcast)."""
    out[...] = value


def cast(src: np.ndarray, dtype: Any) -> np.ndarray:
    """Return ``src`` converted to ``dtype`` (a new array), like ``src.astype(dtype)``."""
    return np.asarray(src).astype(dtype)


def zero(arrays: Sequence[np.ndarray]) -> None:
    """Set every array in ``arrays`` to zero."""
    for a in arrays:
        a[...] = 0
