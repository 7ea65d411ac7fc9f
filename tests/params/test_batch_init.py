"""Batched ``ParameterDict.initialize`` gives the values of per-parameter initialization."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from paramarena import init
from paramarena.devices.context import Context
from paramarena.kernels import PARALLEL_THRESHOLD
from paramarena.params.parameter import Parameter
from paramarena.params.parameter_dict import ParameterDict

SHAPES = [(3, 5), (1, 1), (7, 2, 3, 3), (2, PARALLEL_THRESHOLD // 2 + 3), (4, 33)]
INITIALIZERS = [
    init.Uniform(0.3),
    init.Normal(0.5),
    init.Xavier(),
    init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2.0),
    init.MSRAPrelu(),
    init.Orthogonal(),
    init.Constant(0.25),
]
DTYPES = ["float32", "float64", "float16", "bfloat16"]


def _bits(a: Any) -> np.ndarray:
    arr = np.asarray(a)
    return arr.view(np.uint8 if arr.dtype.itemsize == 1 else f"u{arr.dtype.itemsize}")


def _one_by_one(name: str, shape: tuple[int, ...], dtype: str, initializer: Any) -> np.ndarray:
    p = Parameter(name, shape=shape, dtype=dtype)  # standalone: the per-parameter path
    p.initialize(initializer, seed=11)
    return np.asarray(p.data())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("initializer", INITIALIZERS, ids=repr)
def test_batched_values_equal_per_parameter_values(initializer: Any, dtype: str) -> None:
    d = ParameterDict("net_")
    for i, shape in enumerate(SHAPES):
        d.get(f"w{i}_weight", shape=shape, dtype=dtype)
    d.initialize(initializer, seed=11)
    for name, p in d.items():
        expected = _one_by_one(name, p.shape, dtype, initializer)
        got = p.data()
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(_bits(got), _bits(expected), err_msg=name)


@pytest.mark.timeout(120)
def test_per_parameter_initializers_win_and_mix_in_one_call() -> None:
    d = ParameterDict()
    d.get("a_weight", shape=(5, 6), init=init.Normal(2.0))
    d.get("b_weight", shape=(5, 6), init="xavier")
    d.get("c_weight", shape=(5, 6))
    d.get("d_weight", shape=(8,), dtype="float64", init="ones")
    d.initialize(init.Uniform(0.5), seed=3)
    for name, spec in [
        ("a_weight", init.Normal(2.0)),
        ("b_weight", "xavier"),
        ("c_weight", init.Uniform(0.5)),
    ]:
        np.testing.assert_array_equal(d[name].data(), _seeded(name, (5, 6), spec))
    np.testing.assert_array_equal(d["d_weight"].data(), np.ones(8))


def _seeded(name: str, shape: tuple[int, ...], spec: Any) -> np.ndarray:
    p = Parameter(name, shape=shape)
    p.initialize(spec, seed=3)
    return np.asarray(p.data())


@pytest.mark.timeout(120)
def test_force_reinit_in_place_equals_a_fresh_initialization() -> None:
    def build() -> ParameterDict:
        d = ParameterDict()
        for i, shape in enumerate(SHAPES):
            d.get(f"p{i}_weight", shape=shape)
        return d

    d = build()
    d.initialize(init.Normal(1.0), seed=1)
    before = {n: p.data() for n, p in d.items()}
    for p in d.values():
        if p.grad().size:
            p.grad()[...] = 3.0
    d.initialize(init.Xavier(), seed=2, force_reinit=True)
    fresh = build()
    fresh.initialize(init.Xavier(), seed=2)
    for name, p in d.items():
        if p.data().size:
            assert p.data() is before[name]  # filled in place
        np.testing.assert_array_equal(p.data(), fresh[name].data())
        assert not p.grad().any()


@pytest.mark.timeout(60)
def test_hook_fires_once_per_parameter(initialized_calls: list[tuple[str, Any]]) -> None:
    d = ParameterDict()
    for i in range(5):
        d.get(f"p{i}_weight", shape=(2, 2))
    d.initialize(seed=1)
    d.initialize(seed=1, force_reinit=True)
    seen = [name for name, _ in initialized_calls]
    assert sorted(seen) == sorted([f"p{i}_weight" for i in range(5)] * 2)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("initializer", [init.Uniform(0.2), init.Normal(0.3)], ids=repr)
def test_many_small_parameters_filled_in_parallel_equal_per_parameter_values(
    initializer: Any, dtype: str
) -> None:
    shapes = [(30, 31), (7,), (1, 993)] * 150  # 4 * PARALLEL_THRESHOLD values and more
    assert sum(int(np.prod(s)) for s in shapes) >= 4 * PARALLEL_THRESHOLD
    d = ParameterDict()
    for i, shape in enumerate(shapes):
        d.get(f"q{i}_weight", shape=shape, dtype=dtype)
    d.initialize(initializer, seed=11)
    for name, p in list(d.items())[::7]:
        expected = _one_by_one(name, p.shape, dtype, initializer)
        np.testing.assert_array_equal(_bits(p.data()), _bits(expected), err_msg=name)


@pytest.mark.timeout(120)
def test_reinit_with_new_parameters_fills_two_segments_like_fresh_ones() -> None:
    """Old parameters re-filled in place and new ones freshly allocated, in one call."""

    def add(d: ParameterDict, first: int, count: int) -> None:
        for i in range(first, first + count):
            d.get(f"r{i}_weight", shape=(4, 4) if i % 3 else (9,))

    d = ParameterDict()
    add(d, 0, 30)
    d.initialize(init.Normal(1.0), seed=5)
    before = {n: p.data() for n, p in d.items()}
    add(d, 30, 30)  # new parameters: fresh views, in another segment
    d.initialize(init.Uniform(2.0), seed=6, force_reinit=True)
    fresh = ParameterDict()
    add(fresh, 0, 60)
    fresh.initialize(init.Uniform(2.0), seed=6)
    for name, p in d.items():
        if name in before:
            assert p.data() is before[name]
        np.testing.assert_array_equal(p.data(), fresh[name].data(), err_msg=name)
        assert p.init_key == 6


class _Failing(init.Initializer):
    def _init_weight(self, desc: Any, arr: np.ndarray) -> None:
        raise RuntimeError("initializer failed on purpose")


@pytest.mark.timeout(60)
def test_failing_initializer_in_any_group_leaves_in_place_parameters_untouched() -> None:
    """A float32 group re-filled in place, a float64 one whose initializer raises: no change."""
    d = ParameterDict()
    d.get("a_weight", shape=(3, 3))
    d.initialize(init.Normal(1.0), seed=1)
    before = d["a_weight"].data().copy()
    d.get("b_weight", shape=(2,), dtype="float64", init=_Failing())
    with pytest.raises(RuntimeError, match="on purpose"):
        d.initialize(init.Uniform(), seed=2, force_reinit=True)
    np.testing.assert_array_equal(d["a_weight"].data(), before)
    assert d["a_weight"].init_key == 1
    assert d["b_weight"]._data is None


def _many(count: int = 40) -> ParameterDict:
    d = ParameterDict("lazy_")
    for i in range(count):
        d.get(f"p{i}", shape=(3, 4) if i % 2 else (5,))
    return d


def test_arrays_of_a_batched_initialize_are_made_on_first_access_and_stay_the_same() -> None:
    d = _many()
    d.initialize(init.Uniform(0.5), seed=11)  # the seed of _one_by_one
    params = list(d.values())
    assert all(p._lazy is not None for p in params)  # nothing made yet
    d.zero_grad()  # one kernel over the arena: makes nothing either
    assert all(p._lazy is not None for p in params)
    first = params[5].data()
    assert params[5]._lazy is None
    assert params[5].data() is first  # the same object every time
    assert params[5].grad() is params[5].grad()
    assert params[6]._lazy is not None  # the others still pending
    for p in params:
        want = _one_by_one(p.name, p.shape, "float32", init.Uniform(0.5))
        np.testing.assert_array_equal(_bits(p.data()), _bits(want))
        assert not p.grad().any()
        assert p.list_ctx() == params[0].list_ctx()


def test_pending_parameters_behave_like_made_ones_for_every_operation() -> None:
    """cast, grad_req='null', zero_grad, set_data and re-init on pending parameters."""
    d = _many()
    d.initialize(init.Normal(1.0), seed=4)
    params = list(d.values())
    values = [np.array(p.data()) for p in _many_initialized(seed=4)]
    params[0].cast("float64")  # pending until cast: converts the made arrays
    assert params[0].data().dtype == np.float64
    np.testing.assert_allclose(params[0].data(), values[0])
    params[1].grad_req = "null"
    with pytest.raises(Exception, match="grad_req='null'"):
        params[1].grad()
    np.testing.assert_array_equal(params[1].data(), values[1])
    params[2].set_data(np.full(params[2].shape, 7.0, np.float32))
    assert (params[2].data() == 7).all()
    for p in params[3:]:
        p.grad()[...] = 1  # makes them; the arena's zero must still reach every gradient
    d.zero_grad()
    assert all(not p.grad().any() for p in params[3:])
    d.initialize(init.Normal(1.0), seed=4, force_reinit=True)  # in place, same values
    for p, want in zip(params[1:], values[1:], strict=True):
        if p.name != params[2].name:
            np.testing.assert_array_equal(p.data(), want)


def _many_initialized(seed: int) -> list[Parameter]:
    d = _many()
    d.initialize(init.Normal(1.0), seed=seed)
    return list(d.values())


def test_a_pending_parameter_can_be_replaced_and_its_old_view_is_released() -> None:
    d = _many()
    d.initialize(init.Uniform(), seed=5)
    p = d["lazy_p0"]
    arena = d._storage.data.arena(p.list_ctx()[0], np.dtype(np.float32))
    live = arena.live_count
    p.shape = (5,)
    p.initialize(init.Uniform(), seed=6, force_reinit=True)  # the per-parameter path
    assert arena.live_count == live  # one view released, one allocated
    assert p._lazy is None


def test_many_new_parameters_are_filled_in_the_background_with_the_same_values() -> None:
    d = _many(5000)  # over the background threshold
    d.initialize(init.Uniform(0.5), seed=11)  # the seed of _one_by_one
    for i in (0, 1, 2500, 4999):
        p = d[f"lazy_p{i}"]
        want = _one_by_one(p.name, p.shape, "float32", init.Uniform(0.5))
        np.testing.assert_array_equal(_bits(p.data()), _bits(want))


def test_a_failed_background_fill_leaves_every_parameter_uninitialized(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from paramarena import kernels

    threads: list[str] = []

    def broken() -> None:
        threads.append(threading.current_thread().name)
        raise MemoryError("injected: no memory for the work items")

    monkeypatch.setattr(kernels, "prepare_random_ranges", lambda *args: broken)
    d = _many(5000)
    with pytest.raises(MemoryError, match="injected"):
        d.initialize(init.Uniform(), seed=1)
    assert threads == ["paramarena-fill"]  # it failed in the background, after the commit
    ctx = d["lazy_p0"].list_ctx
    assert all(p._data is None and p._grad_arrays is None for p in d.values())
    with pytest.raises(Exception, match="has not been initialized"):
        ctx()
    assert d._storage.data.arena(Context("cpu", 0), np.dtype(np.float32)).live_count == 0
    assert d._storage.grad.arena(Context("cpu", 0), np.dtype(np.float32)).live_count == 0
    monkeypatch.undo()
    d.initialize(init.Uniform(0.5), seed=11)  # and it can be initialized afterwards
    want = _one_by_one("lazy_p7", (3, 4), "float32", init.Uniform(0.5))
    np.testing.assert_array_equal(_bits(d["lazy_p7"].data()), _bits(want))


def test_force_reinit_of_pending_parameters_refills_their_runs_without_making_arrays() -> None:
    d = _many()
    d.initialize(init.Uniform(0.5), seed=3)
    params = list(d.values())
    params[4].cast("float64")  # another arena: new arrays
    made = params[5].data()  # made arrays: re-filled in place, the same object
    d.initialize(init.Uniform(0.5), seed=11, force_reinit=True)  # the seed of _one_by_one
    assert [p._lazy is not None for p in params].count(True) == len(params) - 2
    assert params[5].data() is made
    arena = d._storage.data.arena(Context("cpu", 0), np.dtype(np.float32))
    assert arena.live_count == len(params) - 1  # all but params[4], in place
    for p in params:
        dtype = "float64" if p is params[4] else "float32"
        want = _one_by_one(p.name, p.shape, dtype, init.Uniform(0.5))
        np.testing.assert_array_equal(_bits(p.data()), _bits(want))
        assert not p.grad().any()
        assert p.init_key == 11


@pytest.mark.parametrize("suffix", [".zarr", ".npz", ".params"])
def test_saving_pending_parameters_makes_no_arrays_and_round_trips(
    tmp_path: Any, suffix: str
) -> None:
    d = _many()
    d.initialize(init.Normal(1.0), seed=8)
    d.save(tmp_path / f"m{suffix}")
    assert all(p._lazy is not None for p in d.values())  # read from the runs, nothing made
    back = _many()
    back.load(tmp_path / f"m{suffix}")
    for p in d.values():
        np.testing.assert_array_equal(back[p.name].data(), p.data())


@pytest.mark.parametrize("count", [40, 600, 5000])  # hashlib keys, compiled keys, background
def test_a_bad_seed_is_refused_before_any_parameter_is_initialized(count: int) -> None:
    from paramarena.errors import ParameterValueError

    d = _many(count)
    for seed in (-1, 2**64):
        with pytest.raises(ParameterValueError, match="seed must be an int"):
            d.initialize(init.Uniform(), seed=seed)
        assert all(p._data is None and p._lazy is None for p in d.values())
        assert d._storage.data.arena(Context("cpu", 0), np.dtype(np.float32)).live_count == 0
    d.initialize(init.Uniform(0.5), seed=11)  # and a good seed then initializes them all
    want = _one_by_one("lazy_p7", (3, 4), "float32", init.Uniform(0.5))
    np.testing.assert_array_equal(_bits(d["lazy_p7"].data()), _bits(want))
