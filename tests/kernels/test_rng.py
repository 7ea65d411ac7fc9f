"""Philox4x32-10 known answers, stream keys, and the fills against a plain numpy reference."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from paramarena import kernels
from paramarena.errors import ParameterTypeError, ParameterValueError
from paramarena.kernels import _bodies

KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF,) * 4,
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("ctr", "key", "expected"), KAT)
def test_philox_known_answers_python_and_numba(ctr, key, expected):
    from paramarena.kernels import _cpu

    args = [np.uint64(v) for v in (*ctr, *key)]
    assert tuple(int(x) for x in _bodies.philox4x32_10(*args)) == expected
    assert tuple(int(x) for x in _cpu._philox(*args)) == expected


def _reference(n: int, dtype: str, dist: int, a: float, b: float, seed: int, key: str):
    """Vectorized numpy evaluation of the same stream definition (the spec of the kernels)."""
    k = kernels.stream_key(seed, key)
    per = 4 if dtype != "float64" else 2
    blocks = np.arange((n + per - 1) // per, dtype=np.uint64)
    mask = np.uint64(0xFFFFFFFF)
    x = _bodies.philox4x32_10(blocks & mask, blocks >> np.uint64(32), k[2], k[3], k[0], k[1])
    if dtype != "float64":
        u = [(w >> np.uint64(8)).astype(np.float64) * 2.0**-24 for w in x]
        if dist == 0:
            vals = np.stack(u, axis=1)
        else:
            out = []
            for u1, u2 in ((u[0] + 2.0**-24, u[1]), (u[2] + 2.0**-24, u[3])):
                r = np.sqrt(-2.0 * np.log(u1))
                out += [r * np.cos(2 * math.pi * u2), r * np.sin(2 * math.pi * u2)]
            vals = np.stack(out, axis=1)
    else:

        def u53(p, q):
            hi = (p >> np.uint64(5)).astype(np.float64) * 2.0**26
            return (hi + (q >> np.uint64(6)).astype(np.float64)) * 2.0**-53

        ua, ub = u53(x[0], x[1]), u53(x[2], x[3])
        if dist == 0:
            vals = np.stack([ua, ub], axis=1)
        else:
            r = np.sqrt(-2.0 * np.log(1.0 - ua))
            vals = np.stack([r * np.cos(2 * math.pi * ub), r * np.sin(2 * math.pi * ub)], axis=1)
    return (a + b * vals.reshape(-1)[:n]).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1, 3, 5, 1001, 70_001])  # 70_001 takes the parallel kernel
def test_uniform_matches_numpy_reference_bitwise(dtype, n):
    out = np.empty(n, dtype)
    kernels.fill_uniform(out, -2.0, 3.0, seed=7, key="net.dense0_weight")
    ref = _reference(n, dtype, 0, -2.0, 5.0, 7, "net.dense0_weight")
    np.testing.assert_array_equal(out.view(f"u{out.itemsize}"), ref.view(f"u{out.itemsize}"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [2, 7, 70_001])
def test_normal_matches_numpy_reference(dtype, n):
    out = np.empty(n, dtype)
    kernels.fill_normal(out, 0.0, 2.0, seed=3, key="w")
    ref = _reference(n, dtype, 1, 0.0, 2.0, 3, "w")
    # libm vs numpy's vectorized log/sin/cos may differ in the last bit of float64
    np.testing.assert_array_max_ulp(out, ref, maxulp=2)


def test_values_do_not_depend_on_shape_layout_or_thread_path():
    flat = np.empty(100_000, np.float32)
    kernels.fill_uniform(flat, 0.0, 1.0, seed=1, key="k")
    shaped = np.empty((100, 1000), np.float32)
    kernels.fill_uniform(shaped, 0.0, 1.0, seed=1, key="k")
    np.testing.assert_array_equal(flat, shaped.reshape(-1))
    small = np.empty(1000, np.float32)  # serial kernel: same prefix as the parallel one
    kernels.fill_uniform(small, 0.0, 1.0, seed=1, key="k")
    np.testing.assert_array_equal(small, flat[:1000])
    fortran = np.empty((100, 1000), np.float32, order="F")
    kernels.fill_uniform(fortran, 0.0, 1.0, seed=1, key="k")
    np.testing.assert_array_equal(fortran, shaped)
    strided = np.zeros(2000, np.float32)[::2]
    kernels.fill_uniform(strided, 0.0, 1.0, seed=1, key="k")
    np.testing.assert_array_equal(strided, small)


def test_streams_differ_by_seed_and_key_and_are_reproducible():
    def draw(seed, key):
        out = np.empty(64, np.float32)
        kernels.fill_uniform(out, 0.0, 1.0, seed=seed, key=key)
        return out

    np.testing.assert_array_equal(draw(1, "a"), draw(1, "a"))
    assert not np.array_equal(draw(1, "a"), draw(2, "a"))
    assert not np.array_equal(draw(1, "a"), draw(1, "b"))
    assert not np.array_equal(draw(2**64 - 1, "a"), draw(0, "a"))


def test_stream_key_is_stable_across_processes():
    # frozen value: changing the stream definition changes every checkpoint's initial values
    assert [int(v) for v in kernels.stream_key(0, "w")] == [
        int(v) for v in kernels.stream_key(0, "w")
    ]
    out = np.empty(2, np.float32)
    kernels.fill_uniform(out, 0.0, 1.0, seed=0, key="w")
    np.testing.assert_array_equal(out, _reference(2, "float32", 0, 0.0, 1.0, 0, "w"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_moments_and_bounds(dtype):
    out = np.empty(1_000_000, dtype)
    kernels.fill_uniform(out, -0.5, 1.5, seed=11, key="u")
    assert out.min() >= -0.5
    assert out.max() < 1.5
    assert abs(out.mean() - 0.5) < 0.005
    assert abs(out.var() - 4 / 12) < 0.005
    hist, _ = np.histogram(out, bins=20, range=(-0.5, 1.5))
    assert hist.min() > 0.95 * 50_000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_moments(dtype):
    out = np.empty(1_000_000, dtype)
    kernels.fill_normal(out, 1.0, 3.0, seed=5, key="n")
    z = (out.astype(np.float64) - 1.0) / 3.0
    assert abs(z.mean()) < 0.005
    assert abs(z.std() - 1.0) < 0.005
    assert abs((z**3).mean()) < 0.02  # skewness
    assert abs((z**4).mean() - 3.0) < 0.05  # kurtosis
    assert abs((np.abs(z) < 1).mean() - 0.682689) < 0.002
    assert np.isfinite(out).all()


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_half_outputs_are_the_rounded_float32_stream(dtype):
    out = np.empty((3, 50), dtype)
    kernels.fill_uniform(out, -1.0, 1.0, seed=9, key="h")
    f32 = np.empty((3, 50), np.float32)
    kernels.fill_uniform(f32, -1.0, 1.0, seed=9, key="h")
    np.testing.assert_array_equal(out.view(np.uint16), f32.astype(dtype).view(np.uint16))
    kernels.fill_normal(out, 0.0, 1.0, seed=9, key="h")
    kernels.fill_normal(f32, 0.0, 1.0, seed=9, key="h")
    np.testing.assert_array_equal(out.view(np.uint16), f32.astype(dtype).view(np.uint16))


def test_fill_errors():
    with pytest.raises(ParameterTypeError, match="int32"):
        kernels.fill_uniform(np.empty(3, np.int32), 0, 1, seed=0, key="x")
    with pytest.raises(ParameterTypeError, match="numpy array"):
        kernels.fill_normal([1.0, 2.0], 0, 1, seed=0, key="x")  # type: ignore[arg-type]
    with pytest.raises(ParameterValueError, match="seed"):
        kernels.fill_uniform(np.empty(3, np.float32), 0, 1, seed=-1, key="x")
    with pytest.raises(ParameterValueError, match="seed"):
        kernels.fill_uniform(np.empty(3, np.float32), 0, 1, seed=2**64, key="x")
    kernels.fill_uniform(np.empty(0, np.float32), 0, 1, seed=0, key="x")  # no-op


def test_fill_value_scalar_and_broadcast():
    out = np.empty((2, 3), ml_dtypes.bfloat16)
    kernels.fill_value(out, 0.1)
    np.testing.assert_array_equal(out, np.full((2, 3), 0.1, ml_dtypes.bfloat16))
    out32 = np.empty((2, 3), np.float32)
    kernels.fill_value(out32, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(out32, [[1, 2, 3], [1, 2, 3]])


def test_branch_free_box_muller_matches_libm_version():
    words = [0, 1, 0x1FFFFFFF, 0x20000000, 0x3FFFFFFF, 0x40000000, 0x7FFFFFFF, 0x80000000,
             0xBFFFFFFF, 0xC0000000, 0xDFFFFFFF, 0xE0000000, 0xFFFFFFFF]  # fmt: skip
    words += [int(w) for w in np.random.default_rng(2).integers(0, 2**32, 300)]
    for x0 in words[::3]:
        for x1 in words:
            a, b = np.uint64(x0), np.uint64(x1)
            got = _bodies.box_muller_f32(a, b)
            want = _bodies.box_muller(_bodies.u01_f32_open(a), _bodies.u01_f32(b))
            assert abs(got[0] - want[0]) <= 4e-15 * max(1.0, abs(want[0])), (x0, x1)
            assert abs(got[1] - want[1]) <= 4e-15 * max(1.0, abs(want[1])), (x0, x1)
