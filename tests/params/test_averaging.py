"""Issue 12.4: averaging copies on several contexts is bit-identical to MXNet 1.9.1.

The reference below follows MXNet's reduction one element and one operation at a time with
Python scalars: ``add_n`` (``elemwise_sum.h``: ``c0 + (c1 + (c2 + c3))`` for 2-4 copies, a left
fold from 5 on) in the parameter's dtype (half_t: float32 then round to nearest even;
bf16_t: float32 then truncate; integers: wrap around), then ``/ DType(n)`` (integers truncate
toward zero).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

import paramarena as pa
from paramarena.params.averaging import host_average, mxnet_sum_order
from paramarena.params.checks import as_np_dtype

DTYPES = ["float16", "float32", "float64", "bfloat16", "uint8", "int8", "int32", "int64"]


def _f32(x: float) -> float:
    return float(np.float32(x))


def _bf16_bits_to_float(bits: int) -> float:
    return float(struct.unpack("<f", struct.pack("<I", bits << 16))[0])


def _float_to_bf16_bits(x: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", x))[0]) >> 16


def _ref_scalar(values: list, dtype: np.dtype) -> object:
    """One element, step by step as MXNet computes it."""
    n = len(values)
    if dtype.name == "bfloat16":
        f = _bf16_bits_to_float
        add = lambda a, b: _float_to_bf16_bits(_f32(f(a) + f(b)))  # noqa: E731
        div = lambda a: _float_to_bf16_bits(_f32(_bf16_bits_to_float(a) / n))  # noqa: E731
    elif dtype == np.float16:
        add = lambda a, b: np.float16(np.float32(a) + np.float32(b))  # noqa: E731
        div = lambda a: np.float16(np.float32(a) / np.float32(n))  # noqa: E731
    elif dtype.kind == "f":
        add = lambda a, b: dtype.type(a) + dtype.type(b)  # noqa: E731
        div = lambda a: dtype.type(a) / dtype.type(n)  # noqa: E731
    else:
        bits = dtype.itemsize * 8
        signed = dtype.kind == "i"

        def wrap(v: int) -> int:
            v &= (1 << bits) - 1
            return v - (1 << bits) if signed and v >= 1 << (bits - 1) else v

        add = lambda a, b: wrap(int(a) + int(b))  # noqa: E731
        div = lambda a: wrap(abs(a) // n * (1 if a >= 0 else -1))  # noqa: E731
    if n <= 4:
        total = values[-1]
        for v in reversed(values[:-1]):
            total = add(v, total)
    else:
        total = values[0]
        for v in values[1:]:
            total = add(total, v)
    return div(total)


def _reference(copies: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    if dtype.name == "bfloat16":
        flat = [c.view(np.uint16).ravel().tolist() for c in copies]
        out = [_ref_scalar(list(vals), dtype) for vals in zip(*flat, strict=True)]
        return np.array(out, np.uint16).view(dtype).reshape(copies[0].shape)
    flat = [c.ravel().tolist() for c in copies]
    out = [_ref_scalar(list(vals), dtype) for vals in zip(*flat, strict=True)]
    return np.array(out).astype(dtype).reshape(copies[0].shape)


def _random_copies(dtype: np.dtype, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    shape = (7, 11)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return [
            rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
            for _ in range(n)
        ]
    if dtype.name == "bfloat16":
        vals = [rng.normal(0, 1000, shape).astype(np.float32) for _ in range(n)]
        return [(v.view(np.uint32) >> 16).astype(np.uint16).view(dtype) for v in vals]
    scale = 1000.0 if dtype == np.float16 else 1e6
    return [(rng.normal(0, scale, shape) * rng.random(shape)).astype(dtype) for _ in range(n)]


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_host_average_matches_the_step_by_step_reference(dtype_name: str, n: int) -> None:
    dtype = as_np_dtype(dtype_name)
    rng = np.random.default_rng(10 * DTYPES.index(dtype_name) + n)
    for _ in range(3):
        copies = _random_copies(dtype, n, rng)
        assert _same_bits(host_average(copies, dtype), _reference(copies, dtype))


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_saved_multi_context_parameter_matches_mxnet(tmp_path, dtype_name: str, n: int) -> None:
    dtype = as_np_dtype(dtype_name)
    rng = np.random.default_rng(n * 1000 + DTYPES.index(dtype_name))
    copies = _random_copies(dtype, n, rng)
    params = pa.ParameterDict()
    p = params.get("w", shape=copies[0].shape, dtype=dtype_name, init="zeros")
    params.initialize(ctx=[pa.cpu(i) for i in range(n)])
    for c, arr in zip(p.list_ctx(), copies, strict=True):
        p.data(c)[...] = arr
    params.save(tmp_path / "w.params")
    saved = pa.storage.load(tmp_path / "w.params")["w"]
    assert _same_bits(np.asarray(saved), _reference(copies, dtype))


def test_addition_order() -> None:
    assert mxnet_sum_order(2) == [(0, 1)]
    assert mxnet_sum_order(4) == [(2, 3), (1, -1), (0, -1)]
    assert mxnet_sum_order(6) == [(0, 1), (-1, 2), (-1, 3), (-1, 4), (-1, 5)]


def test_int64_average_is_exact() -> None:
    big = np.array([2**61 + 1, -(2**61) - 3], np.int64)
    other = np.array([2**61 + 2, -(2**61) - 4], np.int64)
    out = host_average([big, other], np.dtype(np.int64))
    assert out.tolist() == [2**61 + 1, -(2**61) - 3]  # (2a+3)//2 truncates toward zero


def test_float32_three_copies_use_mxnet_order() -> None:
    # (a + b) + c and a + (b + c) differ here; MXNet computes the latter.
    a, b, c = (np.array([x], np.float32) for x in (1.0, 2.0**24, -(2.0**24) + 1.0))
    assert host_average([a, b, c], np.dtype(np.float32))[0] == np.float32(2.0) / np.float32(3)
