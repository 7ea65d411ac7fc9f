"""Random fills of a slice: elements ``[offset, offset + out.size)`` of a longer C-ordered stream.

Element ``i`` of :func:`paramarena.kernels.fill_uniform` / :func:`~paramarena.kernels.fill_normal`
is a pure function of ``(seed, key, i, dtype)``: Philox block ``i // per`` gives lanes
``i % per`` (``per`` is 4 for float32 and the half types, 2 for float64). These functions fill
``out`` with elements ``offset ..`` of that stream, so that a rank holding rows ``[r0, r1)`` of
a parameter fills exactly the values the whole-array fill puts there: the same kernel writes the
whole blocks and the partial last block straight into ``out``, a partial first block goes
through a scratch block.
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


def _fill_at(
    out: np.ndarray, offset: int, dist: int, a: float, b: float, seed: int, key: str
) -> None:
    from paramarena.kernels import _F64, _stream_digest
    from paramarena.kernels._streams import _fill_stream

    _check(out, offset)
    digest = _stream_digest(seed, key)
    if out.size == 0:
        return
    wide = _F64 if out.dtype == _F64 else np.dtype(np.float32)
    direct = out.dtype == wide and out.flags.c_contiguous and out.flags.writeable
    target = out if direct else np.empty(out.shape, wide)
    _fill_stream(target.reshape(-1), dist, a, b, digest, int(offset))
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
