"""``kernels.fill_random_ranges`` / ``stream_keys``: the values of one fill per range."""

from __future__ import annotations

import numpy as np
import pytest

from paramarena import errors, kernels


def test_stream_keys_equal_stream_key() -> None:
    names = ["a", "net_w", "ünïcode_weight", ""]
    keys = kernels.stream_keys(2**64 - 1, names)
    assert keys.shape == (4, 4)
    assert keys.dtype == np.uint32
    for row, name in zip(keys, names, strict=True):
        np.testing.assert_array_equal(row, kernels.stream_key(2**64 - 1, name).astype(np.uint32))
    with pytest.raises(errors.ParameterValueError):
        kernels.stream_keys(-1, names)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("many", [False, True], ids=["serial", "parallel"])
def test_ranges_equal_one_fill_per_range(dtype: type, many: bool) -> None:
    rng = np.random.default_rng(3)
    count = 400 if many else 40
    sizes = rng.integers(0, 2000 if many else 50, count)
    sizes[3] = kernels.PARALLEL_THRESHOLD + 5  # one range big enough for the parallel kernel
    gaps = rng.integers(0, 9, count)
    offsets = np.cumsum(sizes + gaps) - sizes
    buffer = np.full(int(offsets[-1] + sizes[-1] + 3), -7.0, dtype=dtype)
    dists = rng.integers(0, 2, count)
    a, b = rng.standard_normal(count), rng.random(count) + 0.1
    names = [f"p{j}" for j in range(count)]
    kernels.fill_random_ranges(buffer, offsets, sizes, dists, a, b, kernels.stream_keys(5, names))
    covered = np.zeros(buffer.size, bool)
    for j, name in enumerate(names):
        expected = np.empty(int(sizes[j]), dtype=dtype)
        if dists[j] == 0:
            kernels.fill_uniform(expected, a[j], a[j] + b[j], seed=5, key=name)
        else:
            kernels.fill_normal(expected, a[j], b[j], seed=5, key=name)
        got = buffer[offsets[j] : offsets[j] + sizes[j]]
        np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-12)
        if dists[j] == 1:
            np.testing.assert_array_equal(got, expected)  # same arguments: same bits
        covered[offsets[j] : offsets[j] + sizes[j]] = True
    assert (buffer[~covered] == -7.0).all()  # nothing outside the ranges is written


def test_refuses_buffers_it_cannot_fill() -> None:
    one = np.ones(1, np.int64)
    with pytest.raises(errors.ParameterTypeError):
        kernels.fill_random_ranges(
            np.zeros(8, np.float16), one * 0, one, one * 0, np.zeros(1), np.ones(1),
            kernels.stream_keys(1, ["x"]),
        )  # fmt: skip


@pytest.mark.timeout(300)
def test_prepared_ranges_give_the_bits_of_fill_random_ranges_and_check_first() -> None:
    """``prepare_random_ranges``: every check up front, then the same bits from another thread."""
    import threading

    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 3000, 300)
    sizes[7] = kernels.PARALLEL_THRESHOLD * 3 + 1
    offsets = np.cumsum(sizes) - sizes
    dists = rng.integers(0, 2, 300)
    a, b = rng.standard_normal(300), rng.random(300) + 0.1
    keys = kernels.stream_keys(9, [f"q{j}" for j in range(300)])
    want = np.zeros(int(sizes.sum()), np.float32)
    kernels.fill_random_ranges(want, offsets, sizes, dists, a, b, keys)
    got = np.zeros_like(want)
    run = kernels.prepare_random_ranges(got, offsets, sizes, dists, a, b, keys)
    assert not got.any()  # nothing written until the call runs
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    np.testing.assert_array_equal(got, want)
    with pytest.raises(errors.ParameterValueError, match="distributions 0 or 1"):
        kernels.prepare_random_ranges(got, offsets, sizes, dists + 2, a, b, keys)
    with pytest.raises(errors.ParameterTypeError, match="float32/float64 buffer"):
        kernels.prepare_random_ranges(got[::2], offsets, sizes, dists, a, b, keys)
