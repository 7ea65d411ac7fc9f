"""ParameterDict: container protocol, get/get_constant/update, bulk operations (MXNet 1.9.1)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pytest

import paramarena as pa
from paramarena import errors, storage
from paramarena.devices.context import cpu
from paramarena.hooks.manager import get_device_spec
from paramarena.params.parameter import Constant, Parameter
from paramarena.params.parameter_dict import ParameterDict

# --- container protocol ------------------------------------------------------------------------


def test_prefix_read_only() -> None:
    d = ParameterDict("net_")
    assert d.prefix == "net_"
    with pytest.raises(AttributeError):
        d.prefix = "x_"  # type: ignore[misc]
    with pytest.raises(errors.ParameterTypeError):
        ParameterDict(3)  # type: ignore[arg-type]


def test_mapping_protocol_and_order() -> None:
    d = ParameterDict("net_")
    w = d.get("weight", shape=(10, 5))
    b = d.get("bias", shape=(10,))
    assert list(d) == ["net_weight", "net_bias"]
    assert list(d.keys()) == ["net_weight", "net_bias"]
    assert list(d.values()) == [w, b]
    assert list(d.items()) == [("net_weight", w), ("net_bias", b)]
    assert d["net_weight"] is w
    assert "net_weight" in d
    assert "weight" not in d
    assert len(d) == 2
    with pytest.raises(errors.MissingParameterError, match="did you mean 'net_weight'"):
        d["weight"]
    with pytest.raises(KeyError, match="'nothing': no such parameter"):
        d["nothing"]


def test_repr() -> None:
    d = ParameterDict("net_")
    d.get("weight", shape=(10, 5))
    assert repr(d) == (
        "net_ (\n  Parameter net_weight (shape=(10, 5), dtype=<class 'numpy.float32'>)\n)"
    )
    assert str(d) == repr(d)
    assert repr(ParameterDict("e_")) == "e_ (\n\n)"
    e = ParameterDict()
    e.get("a", shape=(1,))
    assert repr(e) == "(\n  Parameter a (shape=(1,), dtype=<class 'numpy.float32'>)\n)"


# --- get ---------------------------------------------------------------------------------------


def test_get_creates_with_kwargs_then_returns_same() -> None:
    d = ParameterDict("net_")
    w = d.get("weight", shape=(10, 0), dtype="float16", lr_mult=2.0, init="zeros")
    assert isinstance(w, Parameter)
    assert w.name == "net_weight"
    assert d.get("weight") is w
    assert d.get("weight", shape=(10, 5)) is w
    assert w.shape == (10, 5)


def test_get_shape_merge_rules() -> None:
    d = ParameterDict()
    w = d.get("w", shape=(10, 5))
    d.get("w", shape=(0, 5))
    assert w.shape == (10, 5)
    d.get("w", shape=(10, -1))
    assert w.shape == (10, 5)
    with pytest.raises(errors.ShapeMismatchError) as ei:
        d.get("w", shape=(10, 6))
    assert str(ei.value) == (
        "Cannot retrieve Parameter 'w' because desired attribute does not match with stored "
        "for attribute 'shape': desired '(10, 6)' vs stored '(10, 5)'."
    )
    assert isinstance(ei.value, ValueError)
    with pytest.raises(errors.ShapeMismatchError, match="attribute 'shape'"):
        d.get("w", shape=(10, 5, 1))
    v = d.get("v", shape=5)
    assert d.get("v", shape=5) is v  # an int shape means a 1-tuple here too
    u = d.get("u")
    d.get("u", shape=(3,))
    assert u.shape == (3,)


def test_get_dtype_compares_as_numpy_dtypes() -> None:
    d = ParameterDict()
    w = d.get("w", dtype=np.float32)
    d.get("w", dtype="float32")
    d.get("w", dtype=np.dtype("float32"))
    with pytest.raises(errors.DTypeMismatchError) as ei:
        d.get("w", dtype="float16")
    assert str(ei.value).endswith("desired 'float16' vs stored '<class 'numpy.float32'>'.")
    assert w.dtype is np.float32


def test_get_other_attributes() -> None:
    d = ParameterDict()
    d.get("w", lr_mult=2.0, grad_req="add")
    d.get("w", lr_mult=2.0, grad_req="add", wd_mult=None, shape=None)
    with pytest.raises(errors.ParameterValueError, match="attribute 'lr_mult'"):
        d.get("w", lr_mult=3.0)
    with pytest.raises(errors.ParameterValueError, match="attribute 'grad_req'"):
        d.get("w", grad_req="write")


def test_get_init_equality() -> None:
    d = ParameterDict()
    w = d.get("w", init=pa.init.One())
    d.get("w", init=pa.init.One())
    u = d.get("u", init=pa.init.Uniform())
    d.get("u", init=pa.init.Uniform(0.07))
    with pytest.raises(errors.ParameterValueError, match="attribute 'init'"):
        d.get("w", init=pa.init.Zero())
    with pytest.raises(errors.ParameterValueError, match="attribute 'init'"):
        d.get("w", init="ones")
    n = d.get("n")
    d.get("n", init="zeros")  # stored None -> set
    assert n.init == "zeros"
    assert w is d["w"]
    assert u is d["u"]


def test_get_unknown_kwarg_raises() -> None:
    d = ParameterDict("p_")
    with pytest.raises(errors.ParameterTypeError, match="'foo'") as ei:
        d.get("w", foo=1)
    assert isinstance(ei.value, TypeError)
    assert "p_w" in str(ei.value)
    d.get("w", shape=(2,))
    with pytest.raises(errors.ParameterTypeError, match="unexpected keyword"):
        d.get("w", shape=(2,), differentiable=True, context=cpu(0))
    assert not hasattr(d["p_w"], "foo")


def test_get_constructor_only_kwargs_are_checked() -> None:
    d = ParameterDict()
    w = d.get("w", stype="default", allow_deferred_init=True)
    d.get("w", stype="default", allow_deferred_init=True, differentiable=True)
    with pytest.raises(errors.ParameterValueError, match="attribute 'stype'"):
        d.get("w", stype="row_sparse")
    with pytest.raises(errors.ParameterValueError, match="attribute 'allow_deferred_init'"):
        d.get("w", allow_deferred_init=False)
    assert w._stype == "default"


def test_shared_lookup_order() -> None:
    shared = ParameterDict("net_")
    w = shared.get("weight", shape=(2,))
    d = ParameterDict("net_", shared=shared)
    assert "net_weight" not in d
    assert d.get("weight") is w
    assert "net_weight" in d  # inserted into own dict
    own = d.get("bias", shape=(1,))
    assert "net_bias" not in shared
    assert d.get("bias") is own
    other = ParameterDict("other_", shared=shared)
    assert other.get("weight") is not w  # sharing needs identical full names


def test_shared_type_checked() -> None:
    with pytest.raises(errors.ParameterTypeError, match="shared must be"):
        ParameterDict("x_", shared=42)  # type: ignore[arg-type]


# --- get_constant ------------------------------------------------------------------------------


def test_get_constant_paths() -> None:
    d = ParameterDict("c_")
    with pytest.raises(errors.MissingParameterError) as ei:
        d.get_constant("k")
    assert str(ei.value) == (
        "No constant named 'c_k'. Please specify value if you want to create a new constant."
    )
    assert isinstance(ei.value, KeyError)
    k = d.get_constant("k", [1.0, 2.0])
    assert isinstance(k, Constant)
    assert d.get_constant("k") is k
    assert d.get_constant("k", [1.0, 2.0]) is k  # list value works (h.7)
    assert d.get_constant("k", np.array([1.0, 2.0], np.float32)) is k
    assert d.get("k") is k
    with pytest.raises(errors.ParameterValueError) as ei2:
        d.get_constant("k", [1.0, 3.0])
    assert str(ei2.value) == "Constant 'c_k' already exists but it's value doesn't match new value"
    with pytest.raises(errors.ParameterValueError):
        d.get_constant("k", [1.0, 2.0, 3.0])
    d.get("w", shape=(2,))
    with pytest.raises(errors.ParameterTypeError) as ei3:
        d.get_constant("w", [1.0])
    assert str(ei3.value) == "Parameter 'c_w' already exists but it is not a constant."
    with pytest.raises(errors.ParameterTypeError):
        d.get_constant("w")


# --- update ------------------------------------------------------------------------------------


def test_update() -> None:
    a = ParameterDict("u_")
    x = a.get("x", shape=(1,))
    b = ParameterDict("v_")
    y = b.get("y", shape=(1,))
    b.update(a)
    assert list(b) == ["v_y", "u_x"]
    assert b.prefix == "v_"
    b.update({"u_x": x, "z": y})  # plain dicts work; same object is fine
    assert b["z"] is y
    c = ParameterDict("u_")
    c.get("x", shape=(1,))
    c.get("new", shape=(1,))
    before = list(b.items())
    with pytest.raises(errors.DuplicateNameError) as ei:
        b.update(c)
    assert str(ei.value) == (
        "Cannot update self with other because they have different Parameters with the same "
        "name 'u_x'"
    )
    assert list(b.items()) == before  # nothing modified


# --- initialize --------------------------------------------------------------------------------


def test_initialize_per_param_init_beats_global() -> None:
    d = ParameterDict("v_")
    w = d.get("weight", shape=(2, 2))
    b = d.get("bias", shape=(2,), init="zeros")
    d.initialize(pa.init.One())
    np.testing.assert_array_equal(w.data(), np.ones((2, 2)))
    np.testing.assert_array_equal(b.data(), np.zeros(2))


def test_initialize_default_and_seed() -> None:
    d1 = ParameterDict("s_")
    d1.get("w", shape=(8,))
    d1.initialize(seed=11)
    d2 = ParameterDict("s_")
    d2.get("w", shape=(8,))
    d2.initialize(seed=11)
    np.testing.assert_array_equal(d1["s_w"].data(), d2["s_w"].data())
    assert np.all(np.abs(d1["s_w"].data()) <= 0.07)


def test_initial_values_do_not_depend_on_order_or_neighbours() -> None:
    big = ParameterDict("o_")
    big.get("a", shape=(3, 3))
    big.get("b", shape=(5,))
    big.initialize(seed=21)
    alone = ParameterDict("o_")
    alone.get("b", shape=(5,))
    alone.initialize(seed=21)
    np.testing.assert_array_equal(big["o_b"].data(), alone["o_b"].data())


def test_initialize_warns_per_param_unless_force() -> None:
    d = ParameterDict()
    d.get("a", shape=(1,))
    d.get("b", shape=(1,))
    d.initialize("zeros")
    with pytest.warns(UserWarning, match="is already initialized") as rec:
        d.initialize("ones")
    assert len(rec) == 2
    assert "Parameter 'a' is already initialized" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d.initialize("ones", force_reinit=True)
    np.testing.assert_array_equal(d["a"].data(), [1.0])


def test_initialize_verbose_logs_without_mutating_init(caplog: pytest.LogCaptureFixture) -> None:
    d = ParameterDict("v_")
    d.get("weight", shape=(4,))
    d.get("bias", shape=(4,), init="zeros")
    init = pa.init.One()
    before = dict(vars(init))
    with caplog.at_level(logging.INFO, logger="paramarena"):
        d.initialize(init, verbose=True)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Initialized v_weight as ") and m.endswith(": 1.0") for m in messages)
    assert "Initialized v_bias as zeros: 0.0" in messages
    assert dict(vars(init)) == before
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="paramarena"):
        d.initialize(init, force_reinit=True)
    assert not [r for r in caplog.records if r.getMessage().startswith("Initialized")]


def test_initialize_deferred_params() -> None:
    d = ParameterDict()
    p = d.get("w", shape=(0, 2), allow_deferred_init=True)
    d.initialize("ones", ctx=[cpu(0), cpu(1)])
    assert d.list_ctx() == [cpu(0), cpu(1)]
    p.shape = (3, 2)
    p._finish_deferred_init()
    assert p.data(cpu(1)).shape == (3, 2)


# --- zero_grad ---------------------------------------------------------------------------------


def test_zero_grad_one_call_per_context_and_int_grads(monkeypatch: pytest.MonkeyPatch) -> None:
    from paramarena import kernels

    d = ParameterDict()
    d.get("f32", shape=(2,), dtype="float32")
    d.get("f16", shape=(3,), dtype="float16")
    d.get("i32", shape=(4,), dtype="int32")
    d.get("nograd", shape=(1,), grad_req="null")
    d.get("uninit", shape=(1,))
    for name in ("f32", "f16", "i32", "nograd"):
        d[name].initialize(init="ones", ctx=[cpu(0), cpu(1)])
    for p in d.values():
        if p._grad is not None:
            for g in p.list_grad():
                g[...] = 7
    backend = get_device_spec("cpu").backend
    calls: list[list[Any]] = []
    kernel_calls: list[Any] = []
    original = backend.zero
    original_ranges = kernels.zero_ranges

    def counting_zero(arrays: Any) -> None:
        calls.append(list(arrays))
        original(arrays)

    def counting_ranges(buffer: Any, starts: Any, stops: Any) -> None:
        kernel_calls.append(buffer.dtype)
        original_ranges(buffer, starts, stops)

    monkeypatch.setattr(backend, "zero", counting_zero)
    monkeypatch.setattr(kernels, "zero_ranges", counting_ranges)
    d.zero_grad()
    assert calls == []  # every gradient lives in the dict's arenas
    assert len(kernel_calls) == 6  # one kernel call per (context, dtype) arena
    assert sorted(map(str, kernel_calls)) == ["float16"] * 2 + ["float32"] * 2 + ["int32"] * 2
    for name in ("f32", "f16", "i32"):
        assert all(np.all(g == 0) for g in d[name].list_grad())
    # a standalone parameter added with update is zeroed through its backend, once per context
    extra = Parameter("extra", shape=(2,))
    extra.initialize(init="ones", ctx=[cpu(0), cpu(1)])
    for g in extra.list_grad():
        g[...] = 7
    d.update({"extra": extra})
    calls.clear()
    d.zero_grad()
    assert [len(c) for c in calls] == [1, 1]
    assert all(np.all(g == 0) for g in extra.list_grad())
    calls.clear()
    ParameterDict().zero_grad()
    assert calls == []


# --- reset_ctx / list_ctx / setattr ------------------------------------------------------------


def test_reset_ctx_and_list_ctx() -> None:
    d = ParameterDict()
    d.get("a", shape=(2,))
    d.get("b", shape=(2,))
    d.initialize("ones", ctx=[cpu(0), cpu(1)])
    assert d.list_ctx() == [cpu(0), cpu(1)]
    d.reset_ctx(cpu(3))
    assert d.list_ctx() == [cpu(3)]
    d.get("c", shape=(2,))
    with pytest.raises(errors.NotInitializedError, match="'c' has not been initialized"):
        d.list_ctx()
    with pytest.raises(errors.ParameterValueError, match="Cannot reset context"):
        d.reset_ctx(cpu(0))


def test_setattr() -> None:
    d = ParameterDict()
    d.get("a", shape=(2,))
    d.get("b", shape=(2,))
    d.initialize("ones")
    d.setattr("grad_req", "null")
    assert all(p._grad is None for p in d.values())
    d.setattr("lr_mult", 0.5)
    assert all(p.lr_mult == 0.5 for p in d.values())
    with pytest.raises(errors.ParameterValueError, match="grad_req must be one of"):
        d.setattr("grad_req", "bogus")
    with pytest.raises(errors.ParameterValueError, match="Cannot set attribute 'foo'"):
        d.setattr("foo", 1)
    d.setattr("dtype", "float64")
    assert d["a"].data().dtype == np.float64


# --- save / load / load_dict -------------------------------------------------------------------

NAMING = (
    " If the stored names differ from the parameters' names, pass restore_prefix=, rename= "
    "or match='order' (see 'Files whose names differ' in paramarena's migration guide)."
)


def _net(prefix: str = "net_", init: bool = True) -> ParameterDict:
    d = ParameterDict(prefix)
    d.get("w", shape=(2, 3))
    d.get("b", shape=(3,), dtype="float64")
    if init:
        d.initialize(seed=5)
    return d


@pytest.mark.parametrize("suffix", [".npz", ".params", ".zarr"])
def test_save_load_round_trip(tmp_path: Any, suffix: str) -> None:
    from paramarena.hooks.manager import storage_specs

    if suffix == ".zarr" and "zarr" not in storage_specs():
        pytest.skip("the zarr storage backend is not registered in this build")
    src = _net()
    src["net_w"].reset_ctx([cpu(0), cpu(1)])
    src["net_w"].data(cpu(1))[...] += 1.0  # saved value is the average of the two copies
    expected_w = (src["net_w"].data(cpu(0)) + src["net_w"].data(cpu(1))) / 2
    path = tmp_path / f"ck{suffix}"
    src.save(str(path))
    dst = _net(init=False)
    report = dst.load(path)
    assert report.loaded == ("net_w", "net_b")
    assert report.missing == ()
    assert report.skipped == ()
    np.testing.assert_allclose(dst["net_w"].data(), expected_w, rtol=1e-6)
    np.testing.assert_array_equal(dst["net_b"].data(), src["net_b"].data())
    assert dst["net_b"].data().dtype == np.float64
    assert dst["net_w"].list_ctx() == [cpu(0)]
    assert np.all(dst["net_w"].grad() == 0)


def test_save_strip_prefix_and_load_restore_prefix(tmp_path: Any) -> None:
    src = _net()
    path = tmp_path / "stripped.npz"
    src.save(path, strip_prefix="net_")
    assert sorted(storage.inspect(path).arrays[i].name for i in range(2)) == ["b", "w"]
    dst = _net(init=False)
    dst.load(path, restore_prefix="net_")
    np.testing.assert_array_equal(dst["net_w"].data(), src["net_w"].data())
    with pytest.raises(errors.ParameterValueError) as ei:
        dst.load(path, restore_prefix="xx_")
    assert str(ei.value) == (
        "restore_prefix is 'xx_' but Parameters name 'net_w' does not start with 'xx_'." + NAMING
    )


def test_save_strip_prefix_error_and_uninitialized(tmp_path: Any) -> None:
    src = _net()
    with pytest.raises(errors.ParameterValueError) as ei:
        src.save(tmp_path / "x.npz", strip_prefix="foo_")
    assert str(ei.value).startswith(
        "Prefix 'foo_' is to be stripped before saving, but Parameter's name 'net_w' does not "
        "start with 'foo_'."
    )
    assert not (tmp_path / "x.npz").exists()
    # uninitialized parameters fail before the prefix check
    with pytest.raises(errors.NotInitializedError):
        _net(init=False).save(tmp_path / "y.npz", strip_prefix="foo_")
    deferred = ParameterDict()
    deferred.get("d", shape=(0,), allow_deferred_init=True)
    deferred.initialize()
    with pytest.raises(errors.DeferredInitializationError):
        deferred.save(tmp_path / "z.npz")


def test_load_missing_and_extra_messages(tmp_path: Any) -> None:
    path = tmp_path / "pd_full.params"
    _net().save(path)
    more = _net(init=False)
    more.get("zz", shape=(1,))
    with pytest.raises(errors.MissingParameterError) as ei:
        more.load(path)
    assert str(ei.value) == (
        f"Parameter 'net_zz' is missing in file: {path}, which contains parameters: "
        "'net_w', 'net_b'. Please make sure source and target networks have the same prefix."
        + NAMING
    )
    assert isinstance(ei.value, KeyError)
    report = more.load(path, allow_missing=True)
    assert report.missing == ("net_zz",)
    assert more["net_zz"]._data is None
    fewer = ParameterDict("net_")
    fewer.get("w", shape=(2, 3))
    with pytest.raises(errors.UnexpectedParameterError) as ei2:
        fewer.load(path)
    assert str(ei2.value) == (
        f"Parameter 'net_b' loaded from file: {path} is not present in ParameterDict, "
        "choices are: 'net_w'. Set ignore_extra to True to ignore. Please make sure source "
        "and target networks have the same prefix." + NAMING
    )
    assert isinstance(ei2.value, KeyError)


def test_load_ignore_extra_reads_only_needed(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ck.npz"
    _net().save(path)
    fewer = ParameterDict("net_")
    fewer.get("w", shape=(2, 3))
    asked: list[Any] = []
    original = storage.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("names"))
        return original(*args, **kwargs)

    monkeypatch.setattr(storage, "load", spy)
    with caplog.at_level(logging.INFO, logger="paramarena"):
        report = fewer.load(path, ignore_extra=True)
    assert asked == [["net_w"]]
    assert report.skipped == ("net_b",)
    assert any("net_b" in r.getMessage() for r in caplog.records)


def test_load_dict_messages_and_brief_list() -> None:
    d = ParameterDict("net_")
    d.get("w", shape=(1,))
    d.get("zz", shape=(1,))
    with pytest.raises(errors.MissingParameterError) as ei:
        d.load_dict({"net_w": np.zeros(1, np.float32)})
    assert str(ei.value) == (
        "Parameter 'net_zz' is missing in param_dict, which contains parameters: 'net_w'. "
        "Please make sure source and target networks have the same prefix." + NAMING
    )
    many = {f"{i}": np.zeros(1, np.float32) for i in range(10)}
    with pytest.raises(errors.MissingParameterError) as ei2:
        d.load_dict(many, filename="f.params")
    assert (
        "in file: f.params, which contains parameters: '0', '1', '2', ..., '6', '7', "
        "'8', '9'. Please" in str(ei2.value)
    )
    e = ParameterDict()
    for i in range(10):
        e.get(f"p{i}", shape=(1,))
    with pytest.raises(errors.UnexpectedParameterError) as ei3:
        e.load_dict({"x": np.zeros(1, np.float32)}, allow_missing=True)
    assert "choices are: 'p0', 'p1', 'p2', ..., 'p6', 'p7', 'p8', 'p9'. Set" in str(ei3.value)


def test_load_dict_restore_prefix_reports_short_name() -> None:
    d = ParameterDict("net_")
    d.get("w", shape=(1,))
    d.get("zz", shape=(1,))
    with pytest.raises(errors.MissingParameterError) as ei:
        d.load_dict({"w": np.zeros(1, np.float32)}, restore_prefix="net_")
    assert str(ei.value).startswith(
        "Parameter 'zz' is missing in param_dict, which contains parameters: 'net_w'."
    )


def test_load_dict_arg_aux_pairs_and_unnamed_list() -> None:
    d = ParameterDict()
    d.get("fc_weight", shape=(2,))
    d.get("bn_moving_mean", shape=(2,))
    src = {"arg:fc_weight": np.ones(2, np.float32), "aux:bn_moving_mean": np.full(2, 3, np.float32)}
    d.load_dict(src)
    np.testing.assert_array_equal(d["bn_moving_mean"].data(), [3, 3])
    d.load_dict(
        [("arg:fc_weight", np.full(2, 4, np.float32)), ("bn_moving_mean", np.zeros(2))],
        cast_dtype=True,
    )
    np.testing.assert_array_equal(d["fc_weight"].data(), [4, 4])
    with pytest.raises(errors.ParameterTypeError, match="unnamed list of 2 arrays") as ei:
        d.load_dict([np.zeros(2), np.zeros(2)])
    assert isinstance(ei.value, TypeError)
    with pytest.raises(errors.ParameterTypeError, match="string names"):
        d.load_dict({1: np.zeros(2)})
    with pytest.raises(errors.ParameterTypeError, match="pairs"):
        d.load_dict(42)
    with pytest.raises(errors.ParameterTypeError, match="pairs"):
        d.load_dict([("a", np.zeros(1), 3)])
    with pytest.raises(errors.MissingParameterError):
        d.load_dict([])


def test_load_dtype_handling() -> None:
    d = ParameterDict("net_")
    w = d.get("w", shape=(2,), dtype="float16")
    saved = {"net_w": np.array([1.5, 2.5], np.float32)}
    with pytest.raises(errors.DTypeMismatchError) as ei:
        d.load_dict(saved)
    assert str(ei.value) == (
        "Failed loading Parameter 'net_w' from saved params: dtype incompatible expected "
        "float16 vs saved <class 'numpy.float32'>. Set cast_dtype=True to cast the dtype of "
        "saved params."
    )
    d.load_dict(saved, cast_dtype=True)
    assert w.data().dtype == np.float16
    assert w.dtype == "float16"
    d.load_dict(saved, cast_dtype=True, dtype_source="saved")
    assert w.dtype is np.float32
    assert w.data().dtype == np.float32
    assert w.grad().dtype == np.float32
    with pytest.raises(errors.ParameterValueError, match="dtype_source"):
        d.load_dict(saved, cast_dtype=True, dtype_source="bogus")
    d.load_dict(saved, dtype_source="bogus")  # ignored without cast_dtype


def test_load_shape_handling() -> None:
    d = ParameterDict("net_")
    d.get("w", shape=(2, 4))
    with pytest.raises(errors.ShapeMismatchError) as ei:
        d.load_dict({"net_w": np.zeros((2, 3), np.float32)})
    assert str(ei.value) == (
        "Failed loading Parameter 'net_w' from saved params: shape incompatible expected "
        "(2, 4) vs saved (2, 3)"
    )
    e = ParameterDict("net_")
    e.get("w", shape=(2, 3))
    with pytest.raises(errors.ShapeMismatchError, match=r"expected \(2, 3\) vs saved \(2, 3, 1\)"):
        e.load_dict({"net_w": np.zeros((2, 3, 1), np.float32)})  # ndim mismatch (h.10)
    f = ParameterDict()
    n = f.get("none")
    u = f.get("unknown", shape=(0, 3))
    f.load_dict({"none": np.zeros((4, 5), np.float32), "unknown": np.ones((2, 3), np.float32)})
    assert n.shape == (4, 5)  # shape None is filled in (h.9)
    assert u.shape == (2, 3)


def test_load_context_rules() -> None:
    value = {"net_w": np.ones(2, np.float32)}
    d = ParameterDict("net_")
    w = d.get("w", shape=(2,))
    d.load_dict(value)
    assert w.list_ctx() == [cpu(0)]
    w.reset_ctx([cpu(1), cpu(2)])
    d.load_dict({"net_w": np.full(2, 3, np.float32)}, ctx=[cpu(2), cpu(1)])  # order irrelevant
    assert all(np.all(x == 3) for x in w.list_data())
    d.load_dict({"net_w": np.full(2, 4, np.float32)})  # ctx None: stays where it is
    assert w.list_ctx() == [cpu(1), cpu(2)]
    with pytest.raises(errors.WrongContextError) as ei:
        d.load_dict(value, ctx=cpu(2))
    assert str(ei.value) == (
        "Failed to load Parameter 'net_w' on [cpu(2)] because it was previous initialized "
        "on [cpu(1), cpu(2)]."
    )
    assert isinstance(ei.value, RuntimeError)
    e = ParameterDict("net_")
    p = e.get("w", shape=(0,), allow_deferred_init=True)
    e.initialize(ctx=cpu(1))
    with pytest.raises(errors.WrongContextError, match="previous initialized on \\[cpu\\(1\\)\\]"):
        e.load_dict(value, ctx=cpu(2))
    e.load_dict(value)
    assert p.list_ctx() == [cpu(1)]
    assert p._deferred_init == ()
    g = ParameterDict("net_")
    q = g.get("w", shape=(2,), grad_req="null")
    g.load_dict(value, ctx=[cpu(0), cpu(3)])
    assert q.list_ctx() == [cpu(0), cpu(3)]
    assert q._grad is None


# --- real MXNet 1.9.1 files --------------------------------------------------------------------

MLP_SHAPES = {
    "dense0_weight": (8, 4),
    "dense0_bias": (8,),
    "batchnorm0_gamma": (8,),
    "batchnorm0_beta": (8,),
    "batchnorm0_running_mean": (8,),
    "batchnorm0_running_var": (8,),
    "dense1_weight": (3, 8),
    "dense1_bias": (3,),
}


def _mlp() -> ParameterDict:
    d = ParameterDict("mlp_")
    for name, shape in MLP_SHAPES.items():
        d.get(name, shape=shape)
    return d


def test_load_real_mxnet_gluon_file(mxnet_fixtures: Any) -> None:
    expected = np.load(mxnet_fixtures / "gluon_paramarena_full.npz", allow_pickle=False)
    d = _mlp()
    report = d.load(mxnet_fixtures / "gluon_paramarena_full.params")
    assert report.loaded == tuple(f"mlp_{n}" for n in MLP_SHAPES)
    for name in MLP_SHAPES:
        np.testing.assert_array_equal(d[f"mlp_{name}"].data(), expected[f"mlp_{name}"])
    stripped = _mlp()
    stripped.load(mxnet_fixtures / "gluon_paramarena_stripped.params", restore_prefix="mlp_")
    for name in MLP_SHAPES:
        np.testing.assert_array_equal(stripped[f"mlp_{name}"].data(), expected[f"mlp_{name}"])


def test_load_real_checkpoint_arg_aux(mxnet_fixtures: Any) -> None:
    expected = np.load(mxnet_fixtures / "checkpoint-0000.npz", allow_pickle=False)
    d = ParameterDict()
    for key in expected.files:
        if key != "__keys__":
            d.get(key[4:], shape=expected[key].shape)
    d.load(mxnet_fixtures / "checkpoint-0000.params")
    np.testing.assert_array_equal(d["bn1_moving_var"].data(), expected["aux:bn1_moving_var"])
    np.testing.assert_array_equal(d["fc1_weight"].data(), expected["arg:fc1_weight"])


def test_load_unnamed_mxnet_file_is_clear_error(mxnet_fixtures: Any) -> None:
    d = ParameterDict()
    d.get("a", shape=(3,))
    path = mxnet_fixtures / "ndarray_list.params"
    with pytest.raises(errors.ParameterTypeError, match="unnamed list of 3 arrays") as ei:
        d.load(path)
    assert str(path) in str(ei.value)


def test_save_then_real_params_round_trip_bytes(tmp_path: Any, mxnet_fixtures: Any) -> None:
    d = _mlp()
    d.load(mxnet_fixtures / "gluon_paramarena_full.params")
    out = tmp_path / "again.params"
    d.save(out)
    assert out.read_bytes() == (mxnet_fixtures / "gluon_paramarena_full.params").read_bytes()
