"""Philox4x32-10 known answers, stream keys, and the fills against a plain numpy reference."""

from __future__ import annotations

import math
import os

import ml_dtypes
import numpy as np
import pytest

from paramarena import kernels
from paramarena.errors import ParameterTypeError, ParameterValueError
from paramarena.kernels import _bodies
from paramarena.kernels.offsets import fill_normal_at

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


def _box_muller_f32_reference(w0: np.ndarray, w1: np.ndarray) -> list[np.ndarray]:
    """The float32 normal transform written with numpy float32 arrays (IEEE, one rounding each).

    Cephes' logf / sinf / cosf polynomials after exact range reductions, as documented in
    docs/kernels.md; independent of ``_bodies`` (written with ``frexp`` and ``where``).
    """
    f32 = np.float32
    v = ((w0 >> np.uint64(8)) + np.uint64(1)).astype(np.float32)  # u1 * 2**24, exact
    mant, ex = np.frexp(v)  # v = mant * 2**ex, mant in [0.5, 1)
    xf = (mant * f32(2.0)).astype(np.float32)
    e = (ex - 1 - 24).astype(np.float32)
    big = xf > f32(1.4142135623730951)
    xf = np.where(big, xf * f32(0.5), xf)
    e = np.where(big, e + f32(1.0), e)
    f = xf - f32(1.0)
    z = f * f
    # P(f) = c8 f^8 + ... + c0 by Estrin's scheme: pairs (c[2i+1] f + c[2i]), combined by f^2,
    # then f^4, then c8 f^8 (a shorter dependency chain than Horner's, hence these roundings)
    c = [f32(v) for v in (3.3333331174e-1, -2.4999993993e-1, 2.0000714765e-1, -1.6668057665e-1,
                          1.4249322787e-1, -1.2420140846e-1, 1.1676998740e-1, -1.1514610310e-1,
                          7.0376836292e-2)]  # fmt: skip
    q = [c[2 * i + 1] * f + c[2 * i] for i in range(4)]
    z2 = z * z
    p = (q[3] * z + q[2]) * z2 + (q[1] * z + q[0])
    p = c[8] * (z2 * z2) + p
    y = f * z * p + e * f32(-2.12194440e-4) - f32(0.5) * z
    r = np.sqrt(f32(-2.0) * (f + y + e * f32(0.693359375)))
    m = w1 >> np.uint64(8)
    q = (m + np.uint64(1 << 21)) >> np.uint64(22)
    theta = (m.astype(np.float32) - q.astype(np.float32) * f32(2**22)) * f32(2 * math.pi / 2**24)
    t = theta * theta
    s = ((f32(-1.9515295891e-4) * t + f32(8.3321608736e-3)) * t + f32(-1.6666654611e-1)) * t
    s = s * theta + theta
    c = ((f32(2.443315711809948e-5) * t + f32(-1.388731625493765e-3)) * t
         + f32(4.166664568298827e-2)) * t * t - f32(0.5) * t + f32(1.0)  # fmt: skip
    quadrant = q & np.uint64(3)
    cos_a = np.select([quadrant == 0, quadrant == 1, quadrant == 2], [c, -s, -c], s)
    sin_a = np.select([quadrant == 0, quadrant == 1, quadrant == 2], [s, c, -s], -c)
    return [r * cos_a, r * sin_a]


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
            z = _box_muller_f32_reference(x[0], x[1]) + _box_muller_f32_reference(x[2], x[3])
            vals = np.stack([v.astype(np.float64) for v in z], axis=1)
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


#: float32 normal sizes around the kernels' stages (1024 blocks = 4096 values) and work items
#: (``kernels`` cuts big arrays into items of 256K values)
NORMAL_SIZES = [2, 7, 4096, 4097, 4 * 1024 * 3 - 1, 70_001, (1 << 18) + 4093, 600_003]


@pytest.mark.parametrize("n", NORMAL_SIZES)
def test_float32_normal_matches_numpy_reference_bitwise(n):
    out = np.empty(n, np.float32)
    kernels.fill_normal(out, 0.5, 2.0, seed=3, key="w")
    ref = _reference(n, "float32", 1, 0.5, 2.0, 3, "w")
    np.testing.assert_array_equal(out.view(np.uint32), ref.view(np.uint32))
    # a slice starting inside a stage (the offset fills start at any element)
    part = np.empty(n - n // 3, np.float32)
    fill_normal_at(part, 0.5, 2.0, seed=3, key="w", offset=n // 3)
    np.testing.assert_array_equal(part.view(np.uint32), ref[n // 3 :].view(np.uint32))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("dist", [0, 1], ids=["uniform", "normal"])
def test_numba_parallel_fill_matches_numpy_reference_bitwise(dist):
    # ``_cpu._fill_parallel`` (the Numba ``parallel=True`` fill that bench_contention compares
    # the threading layers with) and its partial-block ``_tail``: the same values
    from paramarena.kernels import _cpu

    n = 2 * 4 * (1 << 14) + 4 * 1024 + 7  # two parallel chunks, a stage more, a partial block
    k = kernels.stream_key(3, "w").astype(np.uint32)
    out = np.empty(n, np.float32)
    _cpu._fill_parallel(out, 4, dist, 0.5, 2.0, k)
    ref = _reference(n, "float32", dist, 0.5, 2.0, 3, "w")
    np.testing.assert_array_equal(out.view(np.uint32), ref.view(np.uint32))


def test_numba_compiled_float32_box_muller_matches_reference_on_edge_words():
    # the CPU-compiled scalar body (bit casts as LLVM bitcasts) on every exponent range of u1,
    # every quadrant boundary of the angle, and random words
    import numba

    from paramarena.kernels import _cpu

    @numba.njit
    def run(w0, w1, z0, z1):
        for i in range(w0.size):
            z0[i], z1[i] = _cpu._box_muller_f32(w0[i], w1[i])

    w0, w1 = _words_covering(4099)
    quarter = np.uint64(1 << 30)
    edges = np.array([j * quarter + d for j in range(4) for d in (0, 255, 256)], np.uint64)
    edges = np.concatenate([edges, edges - np.uint64(1) - (edges == 0), edges + (quarter >> 1)])
    # u1 * 2**24 = m at the binade edges and around sqrt(2) * 2**e (where x is halved)
    m = np.array([round(2**e * f) + d for e in range(25) for f in (1.0, math.sqrt(2.0))
                  for d in (-1, 0, 1)], np.int64)  # fmt: skip
    m_words = (np.clip(m, 1, 1 << 24).astype(np.uint64) - np.uint64(1)) << np.uint64(8)
    w0 = np.concatenate([w0, np.resize(w0, edges.size), m_words])
    w1 = np.concatenate([w1, edges & np.uint64(0xFFFFFFFF), np.resize(w1, m_words.size)])
    z0, z1 = np.empty(w0.size, np.float32), np.empty(w0.size, np.float32)
    run(w0, w1, z0, z1)
    want0, want1 = _box_muller_f32_reference(w0, w1)
    np.testing.assert_array_equal(z0.view(np.uint32), want0.view(np.uint32))
    np.testing.assert_array_equal(z1.view(np.uint32), want1.view(np.uint32))


@pytest.mark.parametrize("fill", [kernels.fill_normal, kernels.fill_uniform])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fills_do_not_depend_on_thread_count(fill, dtype):
    previous = kernels.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            kernels.set_num_threads(threads)
            out = np.empty(1_300_001, dtype)  # several chunks and a partial last block
            fill(out, 0.5, 2.0, seed=4, key="t")
            results.append(out)
    finally:
        kernels.set_num_threads(previous)
    assert kernels.get_num_threads() == previous
    bits = f"u{np.dtype(dtype).itemsize}"
    for out in results[1:]:
        np.testing.assert_array_equal(out.view(bits), results[0].view(bits))
    if fill is kernels.fill_uniform:
        ref = _reference(1_300_001, np.dtype(dtype).name, 0, 0.5, 1.5, 4, "t")
        np.testing.assert_array_equal(results[0].view(bits), ref.view(bits))
    elif dtype == np.float32:
        ref = _reference(1_300_001, "float32", 1, 0.5, 2.0, 4, "t")
        np.testing.assert_array_equal(results[0].view(bits), ref.view(bits))


def test_set_num_threads_rejects_nonsense():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ParameterValueError, match="threads"):
            kernels.set_num_threads(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [2, 7, 70_001])
def test_float64_normal_matches_numpy_reference(n):
    out = np.empty(n, np.float64)
    kernels.fill_normal(out, 0.0, 2.0, seed=3, key="w")
    ref = _reference(n, "float64", 1, 0.0, 2.0, 3, "w")
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


#: documented accuracy contract of the float32 normals (docs/kernels.md): within 2.5 float32
#: ulp-of-1 (2**-23) of the float64 Box-Muller, relative to max(1, |z|); 7e-7 absolute
ERROR_F32_NORMAL_ULP = 2.5
MAX_ABS_ERROR_F32_NORMAL = 7e-7


_EDGE_WORDS = np.array([0, 1, 0xFF, 0x100, 0x1FF, 0x1FFFFFFF, 0x20000000, 0x3FFFFFFF, 0x40000000,
                        0x7FFFFFFF, 0x80000000, 0xBFFFFFFF, 0xC0000000, 0xDFFFFFFF, 0xE0000000,
                        0xFFFFFEFF, 0xFFFFFF00, 0xFFFFFFFF], np.uint64)  # fmt: skip


def _assert_error_contract(w0: np.ndarray, w1: np.ndarray) -> None:
    for lo in range(0, w0.size, 1 << 20):  # slices: bounded memory
        a, b = w0[lo : lo + (1 << 20)], w1[lo : lo + (1 << 20)]
        z0, z1 = _box_muller_f32_reference(a, b)
        u1 = ((a >> np.uint64(8)) + np.uint64(1)).astype(np.float64) * 2.0**-24
        u2 = (b >> np.uint64(8)).astype(np.float64) * 2.0**-24
        r = np.sqrt(-2.0 * np.log(u1))
        for got, want in ((z0, r * np.cos(2 * math.pi * u2)), (z1, r * np.sin(2 * math.pi * u2))):
            err = np.abs(got - want)
            assert err.max() <= MAX_ABS_ERROR_F32_NORMAL
            assert (err / np.maximum(1.0, np.abs(want))).max() <= ERROR_F32_NORMAL_ULP * 2.0**-23


def _words_covering(stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``stride``-th u1 with random angles, every ``stride``-th angle with random u1."""
    rng = np.random.default_rng(2)
    every = np.arange(0, 1 << 24, stride, dtype=np.uint64) << np.uint64(8)
    noise = rng.integers(0, 2**32, every.size, dtype=np.uint64)
    w0 = np.concatenate([every, noise, np.repeat(_EDGE_WORDS, _EDGE_WORDS.size)])
    w1 = np.concatenate([noise, every, np.tile(_EDGE_WORDS, _EDGE_WORDS.size)])
    return w0, w1


def test_float32_box_muller_error_against_float64_reference():
    w0, w1 = _words_covering(61)  # odd stride: every exponent range and quadrant, ~0.5M words
    _assert_error_contract(w0, w1)
    # the scalar body (what Numba and the CUDA simulator compile) agrees bit for bit
    n = _EDGE_WORDS.size**2
    for a, b in zip(w0[-n::7], w1[-n::7], strict=True):
        got = _bodies.box_muller_f32(np.uint64(a), np.uint64(b))
        want = _box_muller_f32_reference(np.array([a]), np.array([b]))
        assert np.float32(got[0]) == want[0][0]
        assert np.float32(got[1]) == want[1][0]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(
    os.environ.get("PARAMARENA_EXHAUSTIVE_TESTS") != "1",
    reason="every u1 and every angle (2**25 values, ~30 s): PARAMARENA_EXHAUSTIVE_TESTS=1",
)
def test_float32_box_muller_error_exhaustive():
    _assert_error_contract(*_words_covering(1))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * (1.0 + erf(x / math.sqrt(2.0)).astype(np.float64))


def test_float32_normal_distribution_kolmogorov_smirnov():
    out = np.empty(200_000, np.float32)
    kernels.fill_normal(out, 0.0, 1.0, seed=21, key="ks")
    z = np.sort(out.astype(np.float64))
    cdf = _normal_cdf(z)
    n = z.size
    d = max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max())
    # critical value at the 0.1% level: 1.95 / sqrt(n)
    assert d < 1.95 / math.sqrt(n), d
    assert abs(z.mean()) < 0.01
    assert abs(z.var() - 1.0) < 0.01
    # tails: the largest |z| a 24-bit u1 allows is sqrt(48 ln 2) = 5.77
    assert np.abs(z).max() <= math.sqrt(48 * math.log(2)) + 1e-5
