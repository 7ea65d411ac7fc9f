"""Values produced by each built-in initializer, their dtypes, errors and determinism."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paramarena.init as init
import paramarena.kernels.seeds
from paramarena import kernels
from paramarena.errors import InitializerError


def fill(initializer: init.Initializer, name: str, arr: np.ndarray, seed: int = 0) -> np.ndarray:
    """Apply ``initializer`` as Gluon does (``__init__`` attribute set)."""
    initializer(init.InitDesc(name, {"__init__": initializer}, seed=seed), arr)
    return arr


def empty(*shape: int, dtype: object = np.float32) -> np.ndarray:
    arr: np.ndarray = np.empty(shape, dtype=np.dtype(dtype))  # type: ignore[call-overload,arg-type]
    if arr.dtype.kind == "f":
        arr[...] = np.nan
    return arr


# --- deterministic initializers -------------------------------------------------------------------


def test_zero_and_one_fill_every_dtype() -> None:
    for dtype in (np.float32, np.float16, np.int32, np.uint8, np.bool_, ml_dtypes.bfloat16):
        z = fill(init.Zero(), "w", np.full((2, 3), 7, dtype=dtype))
        o = fill(init.One(), "w", np.zeros((2, 3), dtype=dtype))
        assert z.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(z.astype(np.float64), np.zeros((2, 3)))
        np.testing.assert_array_equal(o.astype(np.float64), np.ones((2, 3)))


def test_constant_scalar_array_list_and_broadcast() -> None:
    np.testing.assert_array_equal(fill(init.Constant(2.5), "w", empty(2, 2)), np.full((2, 2), 2.5))
    row = fill(init.Constant([1, 2, 3]), "w", empty(2, 3))
    np.testing.assert_array_equal(row, [[1, 2, 3], [1, 2, 3]])
    full = np.arange(6, dtype=np.float64).reshape(2, 3)
    np.testing.assert_array_equal(fill(init.Constant(full), "w", empty(2, 3)), full)
    ints = fill(init.Constant(3), "w", np.zeros(4, dtype=np.uint8))
    np.testing.assert_array_equal(ints, [3, 3, 3, 3])


def test_constant_dumps_lists_without_side_effects() -> None:
    c = init.Constant(np.array([1, 2], dtype=np.float32))
    assert c.dumps() == '["constant", {"value": [1.0, 2.0]}]'
    assert c.dumps() == '["constant", {"value": [1.0, 2.0]}]'
    assert init.Constant([[1, 2], [3, 4]]).dumps() == '["constant", {"value": [[1, 2], [3, 4]]}]'
    assert init.Constant(np.int64(4)).dumps() == '["constant", {"value": 4}]'
    again = init.create(init.Constant([1.5, 2.5]).dumps())
    np.testing.assert_array_equal(fill(again, "w", empty(2)), [1.5, 2.5])


def test_constant_errors() -> None:
    with pytest.raises(InitializerError, match=r"shape \(3,\) cannot be broadcast to parameter w"):
        fill(init.Constant([1, 2, 3]), "w", empty(2, 2))
    with pytest.raises(InitializerError, match="must be a number, an array"):
        init.Constant(object())
    with pytest.raises(InitializerError, match="not array-like"):
        init.Constant([[1, 2], [3]])


def mxnet_bilinear(shape: tuple[int, ...]) -> np.ndarray:
    """The spec's flat-index formula, element by element."""
    weight = np.zeros(math.prod(shape), dtype=np.float32)
    f = math.ceil(shape[3] / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    for i in range(weight.size):
        x = i % shape[3]
        y = (i // shape[3]) % shape[2]
        weight[i] = (1 - abs(x / f - c)) * (1 - abs(y / f - c))
    return weight.reshape(shape)


def test_bilinear_exact_values() -> None:
    arr = fill(init.Bilinear(), "up_weight", empty(1, 1, 4, 4))
    expected = [0.0625, 0.1875, 0.1875, 0.0625, 0.1875, 0.5625, 0.5625, 0.1875]
    np.testing.assert_array_equal(arr.ravel(), np.array(expected + expected[::-1], np.float32))
    for shape in ((2, 3, 4, 4), (1, 2, 3, 5), (3, 1, 6, 7), (1, 1, 1, 1)):
        got = fill(init.Bilinear(), "w", empty(*shape))
        np.testing.assert_array_equal(got, mxnet_bilinear(shape))


def test_bilinear_needs_4d() -> None:
    with pytest.raises(InitializerError, match=r"4-D .* up_weight has shape \(4, 4\)"):
        fill(init.Bilinear(), "up_weight", empty(4, 4))


def test_lstmbias_values() -> None:
    arr = fill(init.LSTMBias(2.5), "lstm_bias", empty(8))
    np.testing.assert_array_equal(arr, [0, 0, 2.5, 2.5, 0, 0, 0, 0])
    arr = fill(init.LSTMBias(), "lstm_bias", empty(12))
    np.testing.assert_array_equal(arr, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(InitializerError, match="0-D"):
        fill(init.LSTMBias(), "b", empty())


# --- random initializers: distribution ------------------------------------------------------


def test_uniform_bounds_and_moments() -> None:
    arr = fill(init.Uniform(0.5), "fc_weight", empty(200_000))
    assert arr.min() >= -0.5
    assert arr.max() < 0.5
    assert arr.min() < -0.49
    assert arr.max() > 0.49
    assert abs(float(arr.mean())) < 0.01
    assert float(arr.std()) == pytest.approx(0.5 / math.sqrt(3), rel=0.02)


def test_uniform_default_scale() -> None:
    arr = fill(init.Uniform(), "fc_weight", empty(50_000))
    assert float(np.abs(arr).max()) <= 0.07
    assert float(np.abs(arr).max()) > 0.069


def test_normal_moments() -> None:
    arr = fill(init.Normal(2.0), "fc_weight", empty(200_000))
    assert abs(float(arr.mean())) < 0.03
    assert float(arr.std()) == pytest.approx(2.0, rel=0.02)
    default = fill(init.Normal(), "fc_weight", empty(100_000))
    assert float(default.std()) == pytest.approx(0.01, rel=0.03)


@pytest.mark.parametrize(
    ("factor_type", "factor"),
    [("avg", (288 + 576) / 2), ("in", 288), ("out", 576)],
)
def test_xavier_scale_for_every_factor_type(factor_type: str, factor: float) -> None:
    shape = (64, 32, 3, 3)  # fan_in = 32*9 = 288, fan_out = 64*9 = 576
    scale = math.sqrt(3.0 / factor)
    assert init.Xavier(factor_type=factor_type).scale_for(shape) == pytest.approx(scale)
    arr = fill(init.Xavier(factor_type=factor_type), "conv_weight", empty(*shape))
    assert float(np.abs(arr).max()) <= scale * (1 + 1e-6)
    assert float(np.abs(arr).max()) > 0.99 * scale
    gauss = fill(init.Xavier("gaussian", factor_type, magnitude=2), "conv_weight", empty(*shape))
    assert float(gauss.std()) == pytest.approx(math.sqrt(2.0 / factor), rel=0.03)


def test_xavier_2d_uses_plain_fans() -> None:
    assert init.Xavier().scale_for((10, 30)) == pytest.approx(math.sqrt(3.0 / 20))
    assert init.Xavier(factor_type="in", magnitude=6).scale_for((10, 30)) == pytest.approx(
        math.sqrt(6.0 / 30)
    )


def test_xavier_errors() -> None:
    with pytest.raises(
        InitializerError, match=r"cannot be applied to vector bn_gamma\. It requires"
    ):
        fill(init.Xavier(), "bn_gamma", empty(5))
    with pytest.raises(InitializerError, match="Incorrect factor type 'sum'"):
        init.Xavier(factor_type="sum")
    with pytest.raises(InitializerError, match="Unknown random type 'cauchy'"):
        init.Xavier(rnd_type="cauchy")
    x = init.Xavier()
    x.factor_type = "bad"
    with pytest.raises(InitializerError, match="Incorrect factor type 'bad'"):
        fill(x, "w", empty(3, 3))
    y = init.Xavier()
    y.rnd_type = "bad"
    with pytest.raises(InitializerError, match="Unknown random type 'bad'"):
        fill(y, "w", empty(3, 3))


def test_msraprelu_is_gaussian_xavier_with_he_magnitude() -> None:
    m = init.MSRAPrelu(factor_type="in", slope=0.0)
    assert m.magnitude == 2.0
    assert m.rnd_type == "gaussian"
    assert init.MSRAPrelu().magnitude == pytest.approx(2 / 1.0625)
    arr = fill(m, "conv_weight", empty(128, 64, 3, 3))
    assert float(arr.std()) == pytest.approx(math.sqrt(2.0 / (64 * 9)), rel=0.02)


@pytest.mark.parametrize("rand_type", ["uniform", "normal"])
@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (8, 2, 3, 3), (5, 5)])
def test_orthogonal_is_scaled_orthonormal(rand_type: str, shape: tuple[int, ...]) -> None:
    scale = 1.414
    arr = fill(init.Orthogonal(rand_type=rand_type), "w", empty(*shape, dtype=np.float64))
    mat = arr.reshape(shape[0], -1)
    nout, nin = mat.shape
    gram = mat @ mat.T if nout <= nin else mat.T @ mat
    np.testing.assert_allclose(gram, scale**2 * np.eye(min(nout, nin)), atol=1e-10)


def test_orthogonal_errors_and_float32() -> None:
    with pytest.raises(InitializerError, match="rand_type must be 'uniform' or 'normal', got 'x'"):
        init.Orthogonal(rand_type="x")
    with pytest.raises(InitializerError, match=r"to b of shape \(4,\). It requires at least 2D"):
        fill(init.Orthogonal(), "b", empty(4))
    with pytest.raises(InitializerError, match="parameter w of dtype int32"):
        fill(init.Orthogonal(), "w", np.zeros((3, 3), dtype=np.int32))
    arr = fill(init.Orthogonal(2.0), "w", empty(3, 5))
    np.testing.assert_allclose(arr @ arr.T, 4 * np.eye(3), atol=1e-5)
    fill(init.Orthogonal(), "w", empty(0, 3))  # nothing to fill, no error


# --- random initializers: dtypes ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int8, np.bool_, np.int64])
@pytest.mark.parametrize(
    "initializer", [init.Uniform(), init.Normal(), init.Xavier(), init.MSRAPrelu()]
)
def test_random_initializers_refuse_integer_dtypes(
    initializer: init.Initializer, dtype: type
) -> None:
    arr: np.ndarray = np.zeros((3, 3), dtype=dtype)
    name = np.dtype(dtype).name
    with pytest.raises(InitializerError, match=f"cannot fill parameter net_w of dtype {name}"):
        fill(initializer, "net_w", arr)
    assert not arr.any()


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_half_precision_is_the_float32_draw_cast(dtype: type) -> None:
    ref = fill(init.Uniform(0.5), "fc_weight", empty(64, 8), seed=3)
    half = fill(init.Uniform(0.5), "fc_weight", empty(64, 8, dtype=dtype), seed=3)
    assert half.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(half, ref.astype(dtype))
    assert float(np.abs(half.astype(np.float32)).max()) <= 0.5


def test_float64_draws_stay_in_bounds() -> None:
    arr = fill(init.Uniform(0.25), "w", empty(10_000, dtype=np.float64))
    assert arr.dtype == np.float64
    assert np.abs(arr).max() <= 0.25


def test_non_contiguous_view_gets_the_values_of_a_contiguous_array() -> None:
    base = np.zeros((6, 8), dtype=np.float32)
    view = base[:, ::2]
    fill(init.Normal(1.0), "w", view, seed=9)
    ref = fill(init.Normal(1.0), "w", empty(6, 4), seed=9)
    np.testing.assert_array_equal(view, ref)
    assert not base[:, 1::2].any()


def test_empty_arrays_are_fine() -> None:
    for initializer in (init.Uniform(), init.Normal(), init.Xavier(), init.Zero()):
        fill(initializer, "w", empty(0, 4))


# --- determinism --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "initializer",
    [init.Uniform(), init.Normal(), init.Xavier(), init.MSRAPrelu(), init.Orthogonal()],
    ids=lambda i: type(i).__name__,
)
def test_values_are_a_function_of_seed_and_name(initializer: init.Initializer) -> None:
    a = fill(initializer, "net_dense0_weight", empty(16, 8), seed=42)
    b = fill(initializer, "net_dense0_weight", empty(16, 8), seed=42)
    np.testing.assert_array_equal(a, b)
    other_name = fill(initializer, "net_dense1_weight", empty(16, 8), seed=42)
    other_seed = fill(initializer, "net_dense0_weight", empty(16, 8), seed=43)
    assert not np.array_equal(a, other_name)
    assert not np.array_equal(a, other_seed)


def test_uniform_uses_the_kernel_keyed_by_the_full_name() -> None:
    arr = fill(init.Uniform(0.3), "net_dense0_weight", empty(5, 7), seed=11)
    ref = np.empty((5, 7), dtype=np.float32)
    kernels.fill_uniform(ref, -0.3, 0.3, seed=11, key="net_dense0_weight")
    np.testing.assert_array_equal(arr, ref)
    arr = fill(init.Normal(0.3), "net_dense0_weight", empty(5, 7), seed=11)
    kernels.fill_normal(ref, 0.0, 0.3, seed=11, key="net_dense0_weight")
    np.testing.assert_array_equal(arr, ref)


def test_seed_none_uses_the_global_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paramarena.kernels.seeds, "_seed", 1234)
    implicit = empty(10)
    init.Uniform()(init.InitDesc("w", {"__init__": "uniform"}), implicit)
    explicit = fill(init.Uniform(), "w", empty(10), seed=1234)
    np.testing.assert_array_equal(implicit, explicit)


def test_order_of_initialization_does_not_matter() -> None:
    first = [fill(init.Xavier(), n, empty(4, 4), seed=5) for n in ("a_weight", "b_weight")]
    second = [fill(init.Xavier(), n, empty(4, 4), seed=5) for n in ("b_weight", "a_weight")]
    np.testing.assert_array_equal(first[0], second[1])
    np.testing.assert_array_equal(first[1], second[0])


def test_parameter_dict_initialize_matches_a_direct_call() -> None:
    import paramarena as pa

    params = pa.ParameterDict("net_")
    w = params.get("weight", shape=(6, 5))
    params.initialize(init.Xavier(), seed=77)
    ref = fill(init.Xavier(), "net_weight", empty(6, 5), seed=77)
    np.testing.assert_array_equal(w.data(), ref)


# --- properties over many shapes ----------------------------------------------------------------

shapes_2d_plus = st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple)


@settings(max_examples=40, deadline=None)
@given(
    shape=shapes_2d_plus,
    factor_type=st.sampled_from(["avg", "in", "out"]),
    magnitude=st.floats(0.5, 6.0),
    name=st.text("abcdefgh_0123456789", min_size=1, max_size=12),
)
def test_xavier_uniform_stays_within_its_scale(
    shape: tuple[int, ...], factor_type: str, magnitude: float, name: str
) -> None:
    x = init.Xavier(factor_type=factor_type, magnitude=magnitude)
    arr = fill(x, name, empty(*shape))
    assert float(np.abs(arr).max()) <= x.scale_for(shape) * (1 + 1e-6)
    again = fill(x, name, empty(*shape))
    np.testing.assert_array_equal(arr, again)


@settings(max_examples=40, deadline=None)
@given(shape=shapes_2d_plus, scale=st.floats(0.1, 3.0), normal=st.booleans())
def test_orthogonal_property(shape: tuple[int, ...], scale: float, normal: bool) -> None:
    rand_type = "normal" if normal else "uniform"
    arr = fill(init.Orthogonal(scale, rand_type), "w", empty(*shape, dtype=np.float64))
    mat = arr.reshape(shape[0], -1)
    nout, nin = mat.shape
    gram = mat @ mat.T if nout <= nin else mat.T @ mat
    np.testing.assert_allclose(gram, scale**2 * np.eye(min(nout, nin)), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)))
def test_bilinear_property(shape: tuple[int, int, int, int]) -> None:
    np.testing.assert_array_equal(fill(init.Bilinear(), "w", empty(*shape)), mxnet_bilinear(shape))


def test_zero_dimensional_parameters() -> None:
    scalar = fill(init.Uniform(0.5), "s_weight", np.zeros((), np.float32), seed=2)
    assert scalar.shape == ()
    assert 0 < abs(float(scalar)) <= 0.5
    again = fill(init.Uniform(0.5), "s_weight", np.zeros((), np.float32), seed=2)
    assert float(again) == float(scalar)
    assert float(fill(init.Constant(4.0), "c", np.zeros((), np.float32))) == 4.0
    assert float(fill(init.One(), "c", np.zeros((), np.float32))) == 1.0
    with pytest.raises(InitializerError, match="It requires at least 2D"):
        fill(init.Xavier(), "s_weight", np.zeros((), np.float32))
