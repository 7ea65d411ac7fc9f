"""Random fills of a slice: elements ``[offset, offset + out.size)`` of a longer C-ordered stream.

Element ``i`` of :func:`paramarena.kernels.fill_uniform` / :func:`~paramarena.kernels.fill_normal`
is a pure function of ``(seed, key, i, dtype)``: Philox block ``i // per`` gives lanes
``i % per`` (``per`` is 4 for float32 and the half types, 2 for float64). These functions fill
``out`` with elements ``offset ..`` of that stream, so that a rank holding rows ``[r0, r1)`` of
a parameter fills exactly the values the whole-array fill puts there: the whole blocks straight
into ``out``, the partial blocks at either end through one scratch block each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fill_normal_at", "fill_uniform_at"]


def _check(out: Any, offset: int) -> None:
    from paramarena.errors import ParameterTypeError, ParameterValueError
    from paramarena.kernels import _bf16

    if not isinstance(out, np.ndarray):
        raise ParameterTypeError(f"out must be a numpy array, got {type(out).__name__}.")
    if out.dtype.kind != "f" and out.dtype != _bf16():
        raise ParameterTypeError(
            f"random fills need a float16/bfloat16/float32/float64 array, got {out.dtype.name}."
        )
    if isinstance(offset, bool) or not isinstance(offset, int | np.integer) or offset < 0:
        raise ParameterValueError(f"offset must be a non-negative int, got {offset!r}.")


def _blocks(flat: np.ndarray, per: int, b0: int, b1: int, base: int, *args: Any) -> None:
    """Fill Philox blocks ``[b0, b1)`` into ``flat`` (block ``base`` at ``flat[0]``)."""
    if b1 <= b0:
        return
    from paramarena.kernels import _cpu

    if per == 4:
        _cpu._f32_blocks(flat, b0, b1, base, *args)
    else:
        _cpu._f64_blocks(flat, b0, b1, base, *args)


def _fill_at(
    out: np.ndarray, offset: int, dist: int, a: float, b: float, seed: int, key: str
) -> None:
    from paramarena.kernels import _F64, _stream_words

    _check(out, offset)
    k = _stream_words(seed, key)
    n = int(out.size)
    if n == 0:
        return
    offset = int(offset)
    wide = _F64 if out.dtype == _F64 else np.dtype(np.float32)
    direct = out.dtype == wide and out.flags.c_contiguous and out.flags.writeable
    target = out if direct else np.empty(out.shape, wide)
    flat = target.reshape(-1)
    per = 2 if wide == _F64 else 4
    end = offset + n
    first_full = -(-offset // per)  # first block starting at or after offset
    last_full = end // per  # blocks [first_full, last_full) lie inside the slice
    args = (dist, a, b, k)
    if first_full >= last_full:  # the slice lies within one or two blocks
        b0, b1 = offset // per, -(-end // per)
        scratch = np.empty((b1 - b0) * per, wide)
        _blocks(scratch, per, b0, b1, b0, *args)
        flat[:] = scratch[offset - b0 * per : end - b0 * per]
    else:
        head = first_full * per - offset
        _blocks(flat[head:], per, first_full, last_full, first_full, *args)
        if head:
            scratch = np.empty(per, wide)
            _blocks(scratch, per, first_full - 1, first_full, first_full - 1, *args)
            flat[:head] = scratch[per - head :]
        tail = end - last_full * per
        if tail:
            scratch = np.empty(per, wide)
            _blocks(scratch, per, last_full, last_full + 1, last_full, *args)
            flat[n - tail :] = scratch[:tail]
    if not direct:
        out[...] = target


def fill_uniform_at(
    out: np.ndarray, low: float, high: float, *, seed: int, key: str, offset: int
) -> None:
    """Fill ``out`` with elements ``[offset, offset + out.size)`` of a uniform stream.

    ``fill_uniform_at(out, lo, hi, seed=s, key=k, offset=o)`` writes what
    ``fill_uniform(whole, lo, hi, seed=s, key=k)`` writes to ``whole.reshape(-1)[o:o + out.size]``
    for any longer ``whole`` of ``out``'s dtype, bit for bit.

    Parameters
    ----------
    out : numpy.ndarray
        float16, bfloat16, float32 or float64 destination (filled in C order).
    low, high : float
        Bounds, as in :func:`paramarena.kernels.fill_uniform`.
    seed : int
        Stream seed in ``[0, 2**64)``.
    key : str
        Stream name (the full parameter name).
    offset : int
        Index of ``out``'s first element in the whole stream.

    Raises
    ------
    paramarena.errors.ParameterTypeError
        ``out`` is not a floating-point numpy array.
    paramarena.errors.ParameterValueError
        ``offset`` is negative, or ``seed`` is out of range.
    """
    _fill_at(out, offset, 0, float(low), float(high) - float(low), seed, key)


def fill_normal_at(
    out: np.ndarray, mean: float, std: float, *, seed: int, key: str, offset: int
) -> None:
    """Fill ``out`` with elements ``[offset, offset + out.size)`` of a normal stream.

    The slice of :func:`paramarena.kernels.fill_normal`'s output, bit for bit (see
    :func:`fill_uniform_at`).

    Parameters
    ----------
    out : numpy.ndarray
        float16, bfloat16, float32 or float64 destination (filled in C order).
    mean, std : float
        Mean and standard deviation.
    seed : int
        Stream seed in ``[0, 2**64)``.
    key : str
        Stream name (the full parameter name).
    offset : int
        Index of ``out``'s first element in the whole stream.
    """
    _fill_at(out, offset, 1, float(mean), float(std), seed, key)
