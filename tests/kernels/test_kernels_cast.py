"""Cast kernels: bit-identical to numpy / ml_dtypes ``astype`` (exhaustive over 16-bit types)."""

from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
import pytest

from paramarena import kernels
from paramarena.kernels import _bodies

BF16 = np.dtype(ml_dtypes.bfloat16)


def _f32_edge_cases() -> np.ndarray:
    """Every float32 high half with the low halves that matter for rounding, plus randoms."""
    hi = np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)
    lows = np.array(
        [0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x2001, 0x3000, 0x7FFF, 0x8000, 0x8001,
         0xA000, 0xE000, 0xEFFF, 0xF000, 0xFFFF],
        dtype=np.uint32,
    )  # fmt: skip
    grid = (hi[:, None] | lows[None, :]).reshape(-1)
    rng = np.random.default_rng(0)
    rand = rng.integers(0, 2**32, size=1 << 20, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([grid, rand]).view(np.float32)


def _astype(a: np.ndarray, dtype) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return a.astype(dtype)


def _assert_bits_equal(got: np.ndarray, want: np.ndarray) -> None:
    u = f"u{want.itemsize}"
    assert got.dtype == want.dtype
    bad = np.flatnonzero(got.view(u) != want.view(u))
    assert bad.size == 0, f"{bad.size} mismatches, first at {bad[:5]}"


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["float16", "bfloat16"])
def test_float32_to_half_matches_astype(dtype):
    src = _f32_edge_cases()
    got = kernels.cast(src, dtype)
    _assert_bits_equal(got, _astype(src, dtype))
    small = src[:1000]  # serial kernel path
    _assert_bits_equal(kernels.cast(small, dtype), _astype(small, dtype))


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["float16", "bfloat16"])
def test_half_to_float32_exhaustive(dtype):
    src = np.arange(1 << 16, dtype=np.uint16).view(dtype)
    _assert_bits_equal(kernels.cast(src, np.float32), _astype(src, np.float32))
    # and every half value survives the round trip through float32 (NaNs stay NaN)
    back = kernels.cast(kernels.cast(src, np.float32), dtype)
    ok = np.isnan(src.astype(np.float32))
    _assert_bits_equal(back[~ok], src[~ok])
    assert np.isnan(back[ok].astype(np.float32)).all()


def test_float32_float64_both_ways():
    src = _f32_edge_cases()
    _assert_bits_equal(kernels.cast(src, np.float64), _astype(src, np.float64))
    with np.errstate(invalid="ignore"):
        wide = src.astype(np.float64) * (1 + 2.0**-30)
    d = np.concatenate(
        [
            wide,
            np.array([1e300, -1e300, 2.0**-149 * 0.5, 2.0**-149 * 0.75, np.inf, -np.inf]),
            np.random.default_rng(1).standard_normal(1000) * 1e38,
        ]
    )
    _assert_bits_equal(kernels.cast(d, np.float32), _astype(d, np.float32))


def test_specific_rounding_cases():
    vals = np.array([65504.0, 65520.0, 65519.99, 2.0**-24, 2.0**-25, 2.0**-25 * 1.0001,
                     1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, -0.0, np.inf, -np.inf, np.nan],
                    np.float32)  # fmt: skip
    _assert_bits_equal(kernels.cast(vals, np.float16), _astype(vals, np.float16))
    _assert_bits_equal(kernels.cast(vals, "bfloat16"), _astype(vals, BF16))
    assert kernels.cast(vals, np.float16)[1] == np.inf  # 65520 rounds to inf (ties to even)


def test_bodies_in_plain_python_match_numpy():
    bits = [0x3F800000, 0x7F800001, 0xFFC12345, 0x33000000, 0x33000001, 0x387FE000, 0x477FF000]
    for b in bits:
        f = np.array([b], np.uint32).view(np.float32)
        h = int(_bodies.f32_to_f16_bits(np.uint64(b)))
        assert h == int(_astype(f, np.float16).view(np.uint16)[0]), hex(b)
        bf = int(_bodies.f32_to_bf16_bits(np.uint64(b)))
        assert bf == int(_astype(f, BF16).view(np.uint16)[0]), hex(b)


@pytest.mark.parametrize(
    ("src_dtype", "dst_dtype"),
    [("float32", "int32"), ("float64", "int8"), ("int64", "float32"), ("float16", "float64"),
     ("bfloat16", "float16"), ("float32", "float32"), ("int32", "uint8")],
)  # fmt: skip
def test_fallback_pairs_equal_astype_and_return_new_arrays(src_dtype, dst_dtype):
    src_dt = BF16 if src_dtype == "bfloat16" else np.dtype(src_dtype)
    src = _astype(np.linspace(-300, 300, 97), src_dt).reshape(97)
    got = kernels.cast(src, dst_dtype)
    _assert_bits_equal(got, _astype(src, dst_dtype))
    assert not np.shares_memory(got, src)
    assert kernels.has_cast_kernel(src_dt, dst_dtype) is False


def test_cast_keeps_shape_and_handles_noncontiguous_and_empty():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)[:, ::2, :]
    got = kernels.cast(a, np.float16)
    assert got.shape == (2, 2, 4)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, a.astype(np.float16))
    assert kernels.cast(np.empty((0, 3), np.float32), "bfloat16").shape == (0, 3)
    assert kernels.has_cast_kernel(np.float32, BF16)


@pytest.mark.parametrize("hardware", [True, False], ids=["cpu-instruction", "integer-kernel"])
def test_both_float16_paths_match_astype(monkeypatch, hardware):
    if hardware and not kernels._hardware_f16_ok():
        pytest.skip("this CPU has no float32->float16 conversion instruction")
    monkeypatch.setattr(kernels, "_HW_F16", [hardware])
    src = _f32_edge_cases()
    _assert_bits_equal(kernels.cast(src, np.float16), _astype(src, np.float16))
    _assert_bits_equal(kernels.cast(src[:999], np.float16), _astype(src[:999], np.float16))


def test_large_allocations_are_zeroed_writable_mappings():
    from paramarena.kernels import _memory

    big = _memory.HUGE_PAGE_THRESHOLD // 4 + 3
    z = kernels.zeros((big,), np.float32)
    assert z.shape == (big,)
    assert z.dtype == np.float32
    assert z.flags.c_contiguous
    assert z.flags.writeable
    assert not z.any()
    e = kernels.empty((3, big), np.float16)
    e[...] = 1.5
    assert e.shape == (3, big)
    assert (e == 1.5).all()
    small = kernels.empty(5, np.float64)
    assert small.shape == (5,)
    assert small.dtype == np.float64


def test_allocating_cast_of_a_large_array_matches_astype():
    src = np.empty(3_000_001, np.float32)  # 12 MB source, 6 MB output: huge-page mapped
    kernels.fill_normal(src, 0.0, 100.0, seed=1, key="big")
    out = kernels.cast(src, np.float16)
    with np.errstate(over="ignore"):
        want = src.astype(np.float16)
    np.testing.assert_array_equal(out.view(np.uint16), want.view(np.uint16))
    assert out.flags.writeable
    assert out.flags.c_contiguous


def test_freed_large_empty_arrays_are_reused_never_while_alive(monkeypatch):
    import gc

    from paramarena.kernels import _memory

    monkeypatch.setattr(_memory, "_free", [])  # no mappings kept by earlier tests

    n = _memory.HUGE_PAGE_THRESHOLD // 2 + 7  # float32: 8 MB
    a = kernels.empty((n,), np.float32)
    view = a[10:]
    addr = a.ctypes.data
    del a
    gc.collect()
    b = kernels.empty((n,), np.float32)  # `view` keeps the first mapping alive
    assert b.ctypes.data != addr
    view[:] = 1.0
    b[:] = 2.0
    assert (view == 1.0).all()
    del view
    gc.collect()
    c = kernels.empty((n,), np.float32)  # the first mapping is free now: reused
    assert c.ctypes.data == addr
    c[:] = 3.0
    assert (b == 2.0).all()
    zeros = kernels.zeros((n,), np.float32)  # never a recycled (dirty) mapping
    assert not zeros.any()


def test_zeros_with_reuse_takes_a_freed_mapping_and_zeroes_it(monkeypatch):
    import gc

    from paramarena.kernels import _memory

    monkeypatch.setattr(_memory, "_free", [])  # no mappings kept by earlier tests
    n = _memory.HUGE_PAGE_THRESHOLD // 2 + 7  # float32: 8 MB
    a = kernels.zeros((n,), np.float32, reuse=True)
    assert not a.any()
    a[:] = 5.0
    addr = a.ctypes.data
    lazy = kernels.zeros((n,), np.float32)  # without reuse: new memory, never kept
    del a, lazy
    gc.collect()
    assert len(_memory._free) == 1  # the reusable one only
    b = kernels.zeros((n,), np.float32, reuse=True)
    assert b.ctypes.data == addr  # the freed mapping, every value zero again
    assert not b.any()
    c = kernels.zeros((n,), np.float32, reuse=True)  # nothing kept: new memory
    assert c.ctypes.data != addr
    assert not c.any()
