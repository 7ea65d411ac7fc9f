"""Averaging a parameter's copies on several contexts into one host array, as MXNet 1.9.1 does.

MXNet's ``Parameter._reduce`` computes ``add_n(*copies) / n`` (spec a.10). Both steps run in
the parameter's own dtype (mshadow ``DType``), and the result is reproduced here bit for bit:

- **Order of the additions** (``ElementWiseSumCompute_``, ``elemwise_sum.h``): for 2 to 4 copies
  one kernel computes ``c0 + (c1 + (c2 + c3))`` (a right fold); for 5 or more copies the
  output starts as ``c0`` and each further copy is added in turn, ``((c0 + c1) + c2) + ...``.
- **float32 / float64**: IEEE additions and one division by ``n`` in that dtype.
- **float16** (``mshadow::half::half_t``): every addition and the division are done in float32
  and rounded back to float16 (round to nearest even, F16C), one operation at a time.
- **bfloat16** (``mshadow::bfloat::bf16_t``): the same in float32, but each result is
  *truncated* to its upper 16 bits (``FloatToBF16``), not rounded.
- **integers** (int8, uint8, int32, int64): the sum wraps around in the dtype, as C++ does, and
  the division is exact integer division truncating toward zero (``DType(n)``), so int64 stays
  exact (no float64 round trip).
- **bool**: MXNet 1.9.1 has no ``add_n`` kernel for bool and cannot save such a parameter from
  several contexts; paramarena averages it with the uint8 rule (True only where every copy is
  True) rather than fail.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["host_average", "mxnet_add", "mxnet_sum_order"]


def mxnet_sum_order(n: int) -> list[tuple[int, int]]:
    """Return the additions ``add_n`` of ``n`` copies performs, as ``(left, right)`` pairs.

    Operand ``i >= 0`` is copy ``i``; ``-1`` is the previous partial sum.

    Examples
    --------
    >>> mxnet_sum_order(3)
    [(1, 2), (0, -1)]
    >>> mxnet_sum_order(5)
    [(0, 1), (-1, 2), (-1, 3), (-1, 4)]
    """
    if n < 2:
        return []
    if n <= 4:
        return [(n - 2, n - 1)] + [(i, -1) for i in range(n - 3, -1, -1)]
    return [(0, 1)] + [(-1, i) for i in range(2, n)]


def _bf16_to_f32(a: np.ndarray) -> np.ndarray:
    return (a.view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def _f32_to_bf16(a: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    return (
        (np.ascontiguousarray(a, np.float32).view(np.uint32) >> np.uint32(16))
        .astype(np.uint16)
        .view(dtype)
    )


def mxnet_add(a: np.ndarray, b: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """Return ``a + b`` computed as mshadow computes it for ``DType = dtype``."""
    if dtype.name == "bfloat16":
        return _f32_to_bf16(_bf16_to_f32(a) + _bf16_to_f32(b), dtype)
    if dtype == np.float16:
        return (a.astype(np.float32) + b.astype(np.float32)).astype(np.float16)
    if dtype.kind in "iu":
        with np.errstate(over="ignore"):
            return np.asarray(np.add(a, b, dtype=dtype, casting="unsafe"))
    return np.asarray(np.add(a, b, dtype=dtype))


def _divide(total: np.ndarray, n: int, dtype: np.dtype[Any]) -> np.ndarray:
    """``total / DType(n)`` as mshadow's ``div`` computes it."""
    if dtype.name == "bfloat16":
        return _f32_to_bf16(_bf16_to_f32(total) / np.float32(n), dtype)
    if dtype == np.float16:
        return (total.astype(np.float32) / np.float32(n)).astype(np.float16)
    if dtype.kind in "iu":
        # C++ integer division truncates toward zero; numpy's // floors.
        floor = np.asarray(total // dtype.type(n))
        inexact = np.asarray(total % dtype.type(n)) != 0
        return np.where(inexact & (total < 0), floor + dtype.type(1), floor).astype(dtype)
    return np.asarray(np.divide(total, dtype.type(n), dtype=dtype))


def host_average(hosts: list[np.ndarray], dtype: np.dtype[Any]) -> np.ndarray:
    """Return the copy, or the element-wise average of several host copies, as ``dtype``.

    Bit-identical to MXNet 1.9.1's ``add_n(*copies) / n`` (see the module docstring).

    Parameters
    ----------
    hosts : list of numpy.ndarray
        The parameter's copies, one per context, already on the host.
    dtype : numpy.dtype
        The parameter's dtype (the result's).

    Returns
    -------
    numpy.ndarray
        ``hosts[0]`` itself for one copy; otherwise a new array.
    """
    if len(hosts) == 1:
        return hosts[0]
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        as_u8 = [np.asarray(h).astype(np.uint8) for h in hosts]
        return host_average(as_u8, np.dtype(np.uint8)).astype(np.bool_)
    copies = [np.asarray(h).astype(dtype, copy=False) for h in hosts]
    partial: np.ndarray | None = None
    for left, right in mxnet_sum_order(len(copies)):
        a = partial if left == -1 else copies[left]
        b = partial if right == -1 else copies[right]
        assert a is not None
        assert b is not None
        partial = mxnet_add(a, b, dtype)
    assert partial is not None
    return np.asarray(_divide(partial, len(copies), dtype)).reshape(copies[0].shape)
