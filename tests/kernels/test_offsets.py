"""kernels.offsets: a slice filled at an element offset equals that slice of the whole fill."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from paramarena import kernels
from paramarena.errors import ParameterTypeError, ParameterValueError
from paramarena.kernels.offsets import fill_normal_at, fill_uniform_at

DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dist", ["uniform", "normal"])
@pytest.mark.parametrize(
    ("total", "start", "stop"),
    [(37, 0, 37), (37, 1, 2), (37, 3, 9), (37, 5, 36), (37, 36, 37), (1000, 4, 996), (9, 2, 3)],
)
def test_slice_equals_slice_of_whole_fill(
    dtype: object, dist: str, total: int, start: int, stop: int
) -> None:
    whole = np.empty(total, dtype)
    part = np.empty(stop - start, dtype)
    if dist == "uniform":
        kernels.fill_uniform(whole, -2.0, 3.0, seed=11, key="net_w")
        fill_uniform_at(part, -2.0, 3.0, seed=11, key="net_w", offset=start)
    else:
        kernels.fill_normal(whole, 0.5, 2.0, seed=11, key="net_w")
        fill_normal_at(part, 0.5, 2.0, seed=11, key="net_w", offset=start)
    np.testing.assert_array_equal(part.view(np.uint8), whole[start:stop].view(np.uint8))


def test_numpy_reference_of_block_layout() -> None:
    """Element i comes from Philox block i // 4, lane i % 4: a 2-D slice of rows matches."""
    whole = np.empty((7, 5), np.float32)
    kernels.fill_uniform(whole, 0.0, 1.0, seed=3, key="k")
    rows = np.empty((3, 5), np.float32)
    fill_uniform_at(rows, 0.0, 1.0, seed=3, key="k", offset=2 * 5)
    np.testing.assert_array_equal(rows, whole[2:5])
    # the values are multiples of 2**-24 in [0, 1), as the uniform kernel promises
    assert np.all((rows * 2**24) == np.floor(rows * 2**24))
    assert rows.min() >= 0.0
    assert rows.max() < 1.0


def test_large_slice_uses_the_block_path() -> None:
    whole = np.empty(300_001, np.float32)
    kernels.fill_normal(whole, 0.0, 1.0, seed=5, key="big")
    part = np.empty(200_003, np.float32)
    fill_normal_at(part, 0.0, 1.0, seed=5, key="big", offset=50_001)
    np.testing.assert_array_equal(part, whole[50_001:250_004])


def test_bad_arguments() -> None:
    with pytest.raises(ParameterTypeError, match="int32"):
        fill_uniform_at(np.empty(3, np.int32), 0, 1, seed=0, key="k", offset=0)
    with pytest.raises(ParameterValueError, match="offset"):
        fill_uniform_at(np.empty(3, np.float32), 0, 1, seed=0, key="k", offset=-1)
    with pytest.raises(ParameterTypeError, match="numpy"):
        fill_uniform_at([1.0], 0, 1, seed=0, key="k", offset=0)  # type: ignore[arg-type]
