"""zero / zero_ranges against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from paramarena import kernels


def test_zero_many_arrays_and_dtypes():
    arrays = [np.ones(5, np.float32), np.full((2, 3), 7, np.int64), np.ones((4, 4), np.float16)]
    arrays.append(np.ones((6, 6))[::2, ::3])  # non-contiguous view
    kernels.zero(arrays)
    for a in arrays:
        assert not a.any()


@pytest.mark.parametrize("n", [1000, 1_000_000])
def test_zero_ranges_matches_numpy(n):
    buf = np.arange(n, dtype=np.float32) + 1
    starts = np.array([0, n // 4, n // 2 + 3], np.int64)
    stops = np.array([5, n // 4 + 17, n - 1], np.int64)
    ref = buf.copy()
    for s, e in zip(starts, stops, strict=True):
        ref[s:e] = 0
    kernels.zero_ranges(buf, starts, stops)
    np.testing.assert_array_equal(buf, ref)


@pytest.mark.parametrize("n", [100, 1_000_000, 5_000_001])  # the last: chunks on threads
def test_zero_single_range_large_and_small(n):
    buf = np.ones(n, np.float64)
    kernels.zero_ranges(buf, np.array([1], np.int64), np.array([n - 1], np.int64))
    assert buf[0] == 1
    assert buf[-1] == 1
    assert not buf[1:-1].any()
    kernels.zero_ranges(buf, np.array([], np.int64), np.array([], np.int64))
    assert buf[0] == 1
