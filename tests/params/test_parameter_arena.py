"""Parameters of a ParameterDict live in its arenas: one buffer per (context, dtype).

Checks the views, the single zero kernel of ``zero_grad``, and that every operation that
replaces an array (re-initialization, cast, reset_ctx, grad_req) keeps old references valid and
never lets them alias a live parameter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from paramarena import kernels
from paramarena.devices.context import cpu
from paramarena.hooks.manager import get_device_spec
from paramarena.params.parameter import Parameter
from paramarena.params.parameter_dict import ParameterDict


def _dict(n: int = 5, shape: tuple[int, ...] = (4,), **kwargs: Any) -> ParameterDict:
    d = ParameterDict("net_")
    for i in range(n):
        d.get(f"p{i}", shape=shape, **kwargs)
    return d


def _segments(d: ParameterDict, kind: str) -> list[np.ndarray]:
    return [s for a in d._storage.arenas(kind).arenas() for s in a.segments()]


def _all_arrays(d: ParameterDict) -> list[np.ndarray]:
    out = []
    for p in d.values():
        out += p.list_data()
        if p._grad is not None:
            out += p.list_grad()
    return out


@pytest.fixture
def count_zero_kernels(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the number of ranges of every ``kernels.zero_ranges`` call."""
    calls: list[int] = []
    original = kernels.zero_ranges

    def counting(buffer: Any, starts: Any, stops: Any) -> None:
        calls.append(int(starts.size))
        original(buffer, starts, stops)

    monkeypatch.setattr(kernels, "zero_ranges", counting)
    return calls


def test_initialize_puts_data_and_grads_in_one_segment_each() -> None:
    d = _dict(50, shape=(3, 5))
    d.initialize("ones")
    (data_seg,) = _segments(d, "data")
    (grad_seg,) = _segments(d, "grad")
    for p in d.values():
        assert np.shares_memory(p.data(), data_seg)
        assert np.shares_memory(p.grad(), grad_seg)
        assert p.data().flags.c_contiguous
        assert p.data().flags.writeable
        np.testing.assert_array_equal(p.data(), np.ones((3, 5), np.float32))
        np.testing.assert_array_equal(p.grad(), np.zeros((3, 5), np.float32))
    arrays = _all_arrays(d)
    for i, a in enumerate(arrays):  # no two arrays overlap
        a[...] = i
    assert [float(a.flat[0]) for a in arrays] == [float(i) for i in range(len(arrays))]


def test_zero_grad_of_many_tiny_params_is_one_kernel_call(
    count_zero_kernels: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _dict(1000)
    d.get("frozen", shape=(4,), grad_req="null")
    d.get("acc", shape=(4,), grad_req="add")
    d.initialize("ones")
    for p in d.values():
        if p.grad_req != "null":
            p.grad()[...] = 3.0
    backend_calls: list[int] = []
    backend = get_device_spec("cpu").backend
    monkeypatch.setattr(backend, "zero", lambda arrays: backend_calls.append(len(arrays)))
    count_zero_kernels.clear()
    d.zero_grad()
    assert count_zero_kernels == [1]  # one kernel, one contiguous range
    assert backend_calls == []
    assert all(not p.grad().any() for p in d.values() if p.grad_req != "null")
    np.testing.assert_array_equal(d["net_frozen"].data(), np.ones(4, np.float32))


def test_force_reinit_fills_in_place_when_nothing_changes(
    count_zero_kernels: list[int],
) -> None:
    d = _dict(10)
    d.initialize("ones")
    old_data = d["net_p0"].data()
    old_grad = d["net_p0"].grad()
    old_grad[...] = 9.0
    capacity = sum(a.capacity for a in d._storage.data.arenas())
    d.initialize("zeros", force_reinit=True)
    new = d["net_p0"]
    # same shape, dtype and context: the same memory is re-filled (no second copy)
    assert new.data() is old_data
    assert new.grad() is old_grad
    np.testing.assert_array_equal(old_data, np.zeros(4, np.float32))
    assert not old_grad.any()  # re-initialization zeroes the gradients
    assert sum(a.capacity for a in d._storage.data.arenas()) == capacity
    for _ in range(5):  # repeated re-initialization allocates nothing
        d.initialize("ones", force_reinit=True)
    assert sum(a.capacity for a in d._storage.data.arenas()) == capacity
    np.testing.assert_array_equal(old_data, np.ones(4, np.float32))


def test_force_reinit_on_other_contexts_detaches_old_views_and_frees_the_old_segment(
    count_zero_kernels: list[int],
) -> None:
    d = _dict(10)
    d.initialize("ones")
    old_data = d["net_p0"].data()
    old_grad = d["net_p0"].grad()
    old_grad[...] = 9.0
    d.initialize("zeros", ctx=[cpu(0), cpu(0)], force_reinit=True)
    d.initialize("zeros", ctx=cpu(0), force_reinit=True)
    new = d["net_p0"]
    assert not np.shares_memory(old_data, new.data())
    assert not np.shares_memory(old_grad, new.grad())
    np.testing.assert_array_equal(old_data, np.ones(4, np.float32))  # still readable
    new.grad()[...] = 5.0
    d.zero_grad()
    assert (old_grad == 9.0).all()  # a detached buffer is no longer zeroed
    assert not new.grad().any()
    assert len(_segments(d, "data")) == 1  # the emptied segments were dropped
    assert len(_segments(d, "grad")) == 1


def test_cast_moves_to_the_arena_of_the_new_dtype() -> None:
    d = _dict(3)
    d.initialize("ones")
    old = d["net_p1"].data()
    d["net_p1"].cast("float16")
    p = d["net_p1"]
    assert p.data().dtype == np.float16
    assert p.grad().dtype == np.float16
    f16 = d._storage.data.arena(cpu(0), np.float16)
    assert f16.owns(p.data())
    assert not d._storage.data.arena(cpu(0), np.float32).owns(old)
    np.testing.assert_array_equal(p.data(), np.ones(4, np.float16))
    p.grad()[...] = 2
    d.zero_grad()
    assert not p.grad().any()


def test_cast_keeps_values_bit_exact_for_bfloat16() -> None:
    import ml_dtypes

    d = _dict(1, shape=(1000,))
    d.initialize("normal", seed=3)
    before = d["net_p0"].data().copy()
    d["net_p0"].cast("bfloat16")
    got = d["net_p0"].data()
    np.testing.assert_array_equal(
        got.view(np.uint16), before.astype(ml_dtypes.bfloat16).view(np.uint16)
    )


def test_grad_req_switches_release_and_reallocate_views() -> None:
    d = _dict(2)
    d.initialize("ones")
    p = d["net_p0"]
    old = p.grad()
    p.grad_req = "null"
    assert not d._storage.grad.owns(cpu(0), old)
    p.grad_req = "add"
    assert d._storage.grad.owns(cpu(0), p.grad())
    assert not np.shares_memory(old, p.grad())
    p.grad()[...] = 1
    d.zero_grad()
    assert not p.grad().any()


def test_reset_ctx_reissues_views_per_context() -> None:
    d = _dict(2)
    d.initialize("ones", ctx=[cpu(0), cpu(1)])
    p = d["net_p0"]
    p.data(cpu(1))[...] = 3.0  # average of 1 and 3
    old = p.list_data()
    d.reset_ctx(cpu(2))
    assert p.list_ctx() == [cpu(2)]
    np.testing.assert_array_equal(p.data(), np.full(4, 2.0, np.float32))
    assert d._storage.data.owns(cpu(2), p.data())
    assert not any(d._storage.data.owns(cpu(0), a) for a in old)
    p.grad()[...] = 1
    d.zero_grad()
    assert not p.grad().any()


def test_shared_parameters_are_zeroed_by_every_dict_that_holds_them() -> None:
    owner = _dict(2)
    owner.initialize("ones")
    user = ParameterDict("net_", shared=owner)
    w = user.get("p0")
    assert w is owner["net_p0"]
    w.grad()[...] = 4.0
    user.zero_grad()
    assert not w.grad().any()
    owner["net_p1"].grad()[...] = 4.0
    user.zero_grad()  # user does not hold net_p1: untouched
    assert (owner["net_p1"].grad() == 4.0).all()
    owner.zero_grad()
    assert not owner["net_p1"].grad().any()


def test_standalone_parameter_owns_its_arrays() -> None:
    p = Parameter("w", shape=(3,))
    p.initialize("ones")
    assert p._storage is None
    assert p.data().base is None or p.data().base.size == 3
    p.grad()[...] = 1
    p.zero_grad()
    assert not p.grad().any()


def test_deferred_parameters_get_arena_views_when_completed() -> None:
    d = ParameterDict()
    p = d.get("w", shape=(0, 3), allow_deferred_init=True)
    d.initialize("ones")
    p.shape = (2, 3)
    p._finish_deferred_init()
    assert d._storage.data.owns(cpu(0), p.data())
    assert d._storage.grad.owns(cpu(0), p.grad())


def test_load_into_a_dict_uses_its_arenas(tmp_path: Any) -> None:
    src = _dict(3)
    src.initialize("normal", seed=1)
    src.save(tmp_path / "a.params")
    dst = _dict(3)
    dst.load(tmp_path / "a.params")
    for name in src:
        np.testing.assert_array_equal(dst[name].data(), src[name].data())
        assert dst._storage.data.owns(cpu(0), dst[name].data())


def test_saving_a_dict_does_not_copy_it(tmp_path: Any) -> None:
    import tracemalloc

    d = _dict(8, shape=(1_250_000,))  # 40 MB of float32
    d.initialize("ones")
    d.save(tmp_path / "warm.zarr")
    tracemalloc.start()
    try:
        d.save(tmp_path / "m.zarr")
        d.save(tmp_path / "m.params")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # a copy of the dict would be 40 MB
    for name in ("m.zarr", "m.params"):
        loaded = _dict(8, shape=(1_250_000,))
        loaded.load(tmp_path / name)
        assert all((p.data() == 1).all() for p in loaded.values())


def test_failed_initializer_leaves_nothing_allocated() -> None:
    from paramarena import errors
    from paramarena.init import Xavier

    d = ParameterDict()
    d.get("w", shape=(3, 4))
    d.get("b", shape=(3,))  # Xavier refuses 1-D parameters (MXNet semantics)
    with pytest.raises(errors.InitializerError, match="at least 2D"):
        d.initialize(Xavier())
    assert d["b"]._data is None
    assert d["w"]._data is None  # all or nothing: no parameter of the call is initialized
    arena = d._storage.data.arena(cpu(0), np.float32)
    assert arena.live_count == 0  # every view of the failed call was handed back


def test_initializer_fills_the_first_copy_in_place_and_copies_the_rest() -> None:
    d = _dict(2, shape=(64,))
    d.initialize("normal", ctx=[cpu(0), cpu(1)], seed=4)
    p = d["net_p0"]
    a, b = p.list_data()
    np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(a, b)
    assert d._storage.data.owns(cpu(0), a)
    assert d._storage.data.owns(cpu(1), b)
    solo = Parameter("net_p0", shape=(64,))
    solo.initialize("normal", seed=4)
    np.testing.assert_array_equal(solo.data(), a)  # same values as the standalone path


def test_zarr_load_reads_straight_into_the_arena(tmp_path: Any) -> None:
    import tracemalloc

    src = _dict(8, shape=(1_250_000,))  # 40 MB
    src.initialize("normal", seed=2)
    src.save(tmp_path / "m.zarr")
    dst = _dict(8, shape=(1_250_000,))
    tracemalloc.start()
    try:
        dst.load(tmp_path / "m.zarr")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the data and gradient arenas (40 MB each, one segment each), and no packed buffer or
    # second copy on top: the bytes went straight into the parameters' views
    assert peak < 2 * 40_000_000 + 5_000_000
    (segment,) = _segments(dst, "data")
    assert len(_segments(dst, "grad")) == 1
    for name in src:
        assert np.shares_memory(dst[name].data(), segment)
        np.testing.assert_array_equal(dst[name].data(), src[name].data())
        assert dst[name].grad().shape == (1_250_000,)


def test_failed_loads_hand_the_destination_views_back(tmp_path: Any) -> None:
    import json

    from paramarena import errors

    src = _dict(3, shape=(6,))
    src.initialize("ones")
    src.save(tmp_path / "m.zarr")
    wrong = ParameterDict("net_")
    for i in range(3):
        wrong.get(f"p{i}", shape=(7,))
    with pytest.raises(errors.ShapeMismatchError):
        wrong.load(tmp_path / "m.zarr")
    assert sum(a.live_count for a in wrong._storage.data.arenas()) == 0
    version = json.loads((tmp_path / "m.zarr" / "COMMIT").read_text())["version"]
    (tmp_path / "m.zarr" / version / "packed_float32" / "c" / "0").unlink()
    dst = _dict(3, shape=(6,))
    with pytest.raises(errors.CorruptCheckpointError, match="missing"):
        dst.load(tmp_path / "m.zarr")
    assert sum(a.live_count for a in dst._storage.data.arenas()) == 0
    assert all(p._data is None for p in dst.values())


def test_load_with_saved_dtype_adopts_views_of_that_dtype(tmp_path: Any) -> None:
    src = _dict(2, shape=(5,), dtype="float16")
    src.initialize("ones")
    src.save(tmp_path / "h.zarr")
    dst = _dict(2, shape=(5,))  # float32 parameters
    dst.load(tmp_path / "h.zarr", cast_dtype=True, dtype_source="saved")
    for p in dst.values():
        assert p.data().dtype == np.float16
        assert dst._storage.data.owns(cpu(0), p.data())
    keep = _dict(2, shape=(5,))
    keep.load(tmp_path / "h.zarr", cast_dtype=True)  # 'current': converted into float32
    assert all(p.data().dtype == np.float32 for p in keep.values())
    np.testing.assert_array_equal(keep["net_p0"].data(), np.ones(5, np.float32))


def test_storage_load_out_fills_given_arrays_for_every_backend(tmp_path: Any) -> None:
    from paramarena import errors, storage

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.int64)}
    for name in ("x.zarr", "x.params", "x.npz"):
        storage.save(tmp_path / name, arrays)
        out = {"a": np.zeros((2, 3), np.float32)}
        got = storage.load(tmp_path / name, names=["a", "b"], out=out)
        assert isinstance(got, dict)
        assert got["a"] is out["a"]
        np.testing.assert_array_equal(out["a"], arrays["a"])
        np.testing.assert_array_equal(got["b"], arrays["b"])
    with pytest.raises(errors.ShapeMismatchError, match="out\\['a'\\]"):
        storage.load(tmp_path / "x.npz", names=["a"], out={"a": np.zeros(6, np.float32)})
    with pytest.raises(errors.ParameterTypeError, match="out= needs names="):
        storage.load(tmp_path / "x.npz", out={"a": np.zeros((2, 3), np.float32)})
