"""Parameter: construction, properties, initialization, accessors, data changes (MXNet 1.9.1)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

import paramarena as pa
from paramarena import errors
from paramarena.devices.context import cpu, cpu_pinned, cpu_shared
from paramarena.params.parameter import Parameter

# --- constructor -------------------------------------------------------------------------------


def test_defaults_and_repr() -> None:
    p = Parameter("weight")
    assert p.name == "weight"
    assert p.shape is None
    assert p.dtype is np.float32
    assert p.grad_req == "write"
    assert p.lr_mult == 1.0
    assert p.wd_mult == 1.0
    assert p.init is None
    assert repr(p) == "Parameter weight (shape=None, dtype=<class 'numpy.float32'>)"
    assert repr(Parameter("w", shape=(2, 3), dtype="float16")) == (
        "Parameter w (shape=(2, 3), dtype=float16)"
    )


def test_shape_int_becomes_tuple_and_list_kept() -> None:
    assert Parameter("w", shape=5).shape == (5,)
    assert Parameter("w", shape=[2, 3]).shape == [2, 3]
    p = Parameter("w", shape=(np.int64(2), 3))
    assert repr(p) == "Parameter w (shape=(2, 3), dtype=<class 'numpy.float32'>)"
    assert Parameter("w", shape=np.int32(4)).shape == (4,)


def test_dtype_stored_as_given() -> None:
    assert Parameter("w", dtype="float16").dtype == "float16"
    dt = np.dtype("float64")
    assert Parameter("w", dtype=dt).dtype is dt


def test_no_public_private_attrs() -> None:
    p = Parameter("w", allow_deferred_init=True, differentiable=False, stype="row_sparse")
    for attr in ("stype", "grad_stype", "allow_deferred_init", "differentiable"):
        assert not hasattr(p, attr)
    assert p._stype == "row_sparse"
    assert p._allow_deferred_init is True


def test_name_required() -> None:
    with pytest.raises(TypeError):
        Parameter()  # type: ignore[call-arg]


def test_bad_grad_req_raised_before_stype() -> None:
    with pytest.raises(errors.ParameterValueError, match="grad_req must be one of") as ei:
        Parameter("w", grad_req="foo", stype="bar")
    assert isinstance(ei.value, ValueError)
    assert "but got 'foo'" in str(ei.value)


@pytest.mark.parametrize("attr", ["stype", "grad_stype"])
def test_bad_stype(attr: str) -> None:
    with pytest.raises(ValueError, match=f"{attr} for Parameter 'w' must be one of") as ei:
        Parameter("w", **{attr: "foo"})
    assert isinstance(ei.value, errors.ParamarenaError)
    assert "'default', 'row_sparse', or 'csr', but got 'foo'" in str(ei.value)


def test_grad_stype_checked_before_stype() -> None:
    with pytest.raises(ValueError, match=r"^grad_stype"):
        Parameter("w", stype="x", grad_stype="y")


@pytest.mark.parametrize("shape", ["abc", (2, "x"), 2.5, (True,)])
def test_bad_shape_type(shape: object) -> None:
    with pytest.raises(errors.ParameterTypeError, match="shape must be"):
        Parameter("w", shape=shape)  # type: ignore[arg-type]


def test_bad_dtype() -> None:
    with pytest.raises(errors.ParameterTypeError, match="not a valid numpy dtype"):
        Parameter("w", dtype="not_a_dtype")
    with pytest.raises(TypeError):
        Parameter("w", dtype="not_a_dtype")


def test_non_str_name() -> None:
    with pytest.raises(errors.ParameterTypeError):
        Parameter(3)  # type: ignore[arg-type]


# --- shape / grad_req / dtype properties -------------------------------------------------------


def test_shape_setter() -> None:
    p = Parameter("w")
    p.shape = (2, 3)
    assert p.shape == (2, 3)
    p = Parameter("w", shape=(0, 3))
    p.shape = (4, 3)
    assert p.shape == (4, 3)
    p = Parameter("w", shape=(0, 3))
    with pytest.raises(errors.ShapeMismatchError) as ei:
        p.shape = (4, 4)
    assert str(ei.value) == "Expected shape (4, 4) is incompatible with given shape (0, 3)."
    assert isinstance(ei.value, ValueError)
    with pytest.raises(ValueError, match="incompatible"):
        p.shape = (4, 3, 1)
    with pytest.raises(errors.ShapeMismatchError, match="Expected shape None is incompatible"):
        p.shape = None


def test_grad_req_setter_before_init_only_stores() -> None:
    p = Parameter("w", shape=(2,))
    p.grad_req = "add"
    assert p.grad_req == "add"
    assert p._grad is None
    with pytest.raises(errors.ParameterValueError, match="but got 'bogus'"):
        p.grad_req = "bogus"


def test_non_differentiable_forces_null() -> None:
    p = Parameter("w", shape=(2,), differentiable=False)
    assert p.grad_req == "null"
    p.grad_req = "write"
    assert p.grad_req == "null"


def test_grad_req_switching_reallocates_and_frees() -> None:
    p = Parameter("w", shape=(3,))
    p.initialize(init=pa.init.One(), ctx=[cpu(0), cpu(1)])
    p.grad(cpu(0))[...] = 5
    old = p.grad(cpu(0))
    p.grad_req = "add"  # write -> add re-allocates fresh zero buffers
    assert p.grad(cpu(0)) is not old
    assert np.all(p.grad(cpu(0)) == 0)
    data_before = p.data(cpu(0))
    p.grad_req = "null"
    assert p._grad is None
    assert p.data(cpu(0)) is data_before
    with pytest.raises(errors.NotInitializedError, match="because grad_req='null'"):
        p.grad()
    p.grad_req = "write"
    assert len(p.list_grad()) == 2
    assert all(np.all(g == 0) for g in p.list_grad())
    g = p.grad(cpu(1))
    p.grad_req = "write"  # unchanged: no-op
    assert p.grad(cpu(1)) is g


def test_lr_wd_mult_init_plain_attributes() -> None:
    p = Parameter("w", lr_mult=2.0, wd_mult=0.5, init="zeros")
    assert (p.lr_mult, p.wd_mult, p.init) == (2.0, 0.5, "zeros")
    p.lr_mult = 3.0
    assert p.lr_mult == 3.0


# --- initialize --------------------------------------------------------------------------------


def test_initialize_default_uniform_and_seed_determinism() -> None:
    a = Parameter("w", shape=(4, 5))
    b = Parameter("w", shape=(4, 5))
    a.initialize(seed=7)
    b.initialize(seed=7)
    assert a.data().dtype == np.float32
    np.testing.assert_array_equal(a.data(), b.data())
    assert np.all(np.abs(a.data()) <= 0.07)
    assert np.any(a.data() != 0)
    c = Parameter("w", shape=(4, 5))
    c.initialize(seed=8)
    assert not np.array_equal(a.data(), c.data())


def test_initialize_precedence() -> None:
    # init argument > self.init > default_init
    p = Parameter("bias", shape=(3,), init=pa.init.One())
    p.initialize(default_init=pa.init.Zero())
    np.testing.assert_array_equal(p.data(), np.ones(3))
    p.initialize(init=pa.init.Constant(2.0), default_init=pa.init.Zero(), force_reinit=True)
    np.testing.assert_array_equal(p.data(), np.full(3, 2.0))
    q = Parameter("q_bias", shape=(3,))
    q.initialize(default_init="zeros")
    np.testing.assert_array_equal(q.data(), np.zeros(3))


def test_global_init_applies_whatever_the_name() -> None:
    # Gluon never uses suffix dispatch: a bias gets the global initializer's values.
    p = Parameter("fc_bias", shape=(50,))
    p.initialize(default_init=pa.init.Uniform(), seed=3)
    assert np.any(p.data() != 0)
    g = Parameter("bn_gamma", shape=(8,))
    with pytest.raises(ValueError, match="Xavier initializer cannot be applied to vector"):
        g.initialize(default_init=pa.init.Xavier())


def test_initialize_twice_warns_and_keeps_data() -> None:
    p = Parameter("w", shape=(2,))
    p.initialize(init="ones")
    arr = p.data()
    with pytest.warns(UserWarning, match="Parameter 'w' is already initialized, ignoring"):
        p.initialize(init="zeros")
    assert p.data() is arr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p.initialize(init="zeros", force_reinit=True)
    np.testing.assert_array_equal(p.data(), np.zeros(2))


def test_force_reinit_uses_current_context_not_old() -> None:
    p = Parameter("w", shape=(2,))
    p.initialize(init="ones", ctx=[cpu(1), cpu(2)])
    p.initialize(init="ones", force_reinit=True)
    assert p.list_ctx() == [cpu(0)]


def test_initialize_invalid_shape() -> None:
    for shape, shown in (((0, 3), "(0, 3)"), (None, "None")):
        with pytest.raises(errors.ParameterValueError) as ei:
            Parameter("w", shape=shape).initialize()
        assert str(ei.value) == (
            f"Cannot initialize Parameter 'w' because it has invalid shape: {shown}."
        )


def test_negative_dim_rejected() -> None:
    with pytest.raises(errors.ShapeMismatchError, match="cannot be less than 0, while received -1"):
        Parameter("w", shape=(-1, 3)).initialize()


def test_scalar_parameter_initializes() -> None:
    p = Parameter("s", shape=())
    p.initialize(init=pa.init.Constant(4.0))
    assert p.data().shape == ()
    assert float(p.data()) == 4.0


def test_integer_and_bfloat16_dtypes() -> None:
    p = Parameter("i", shape=(2, 2), dtype="int32")
    p.initialize(init="ones")
    assert p.data().dtype == np.int32
    assert p.grad().dtype == np.int32
    b = Parameter("b", shape=(3,), dtype="bfloat16")
    b.initialize(init="ones")
    assert b.data().dtype.name == "bfloat16"
    np.testing.assert_array_equal(b.data().astype(np.float32), np.ones(3, np.float32))


def test_initialize_ctx_forms() -> None:
    p = Parameter("w", shape=(2,))
    p.initialize(init="ones", ctx=cpu(3))
    assert p.list_ctx() == [cpu(3)]
    p.initialize(init="ones", ctx=(cpu(1), cpu(0)), force_reinit=True)
    assert p.list_ctx() == [cpu(1), cpu(0)]
    with pytest.raises(errors.ParameterTypeError, match="must contain Contexts"):
        p.initialize(ctx=["cpu"], force_reinit=True)  # type: ignore[list-item]
    with pytest.raises(errors.ParameterTypeError, match="must be a Context or a list"):
        p.initialize(ctx="cpu", force_reinit=True)  # type: ignore[arg-type]
    with pytest.raises(errors.ParameterValueError, match="empty"):
        p.initialize(ctx=[], force_reinit=True)


def test_current_context_used() -> None:
    p = Parameter("w", shape=(2,))
    with cpu(5):
        p.initialize(init="ones")
    assert p.list_ctx() == [cpu(5)]


def test_verbose_logging(caplog: pytest.LogCaptureFixture) -> None:
    p = Parameter("v_weight", shape=(4,))
    with caplog.at_level(logging.INFO, logger="paramarena"):
        p.initialize(init=pa.init.One(), verbose=True)
    assert any(
        r.getMessage().startswith("Initialized v_weight as ") and r.getMessage().endswith(": 1.0")
        for r in caplog.records
    )


def test_unknown_device_type_leaves_uninitialized() -> None:
    p = Parameter("w", shape=(2,))
    bad = pa.Context("gpu", 0)
    try:
        p.initialize(init="ones", ctx=[cpu(0), bad])
    except errors.ParamarenaError:
        assert p._data is None
        assert p._deferred_init == ()
    else:  # a GPU backend is installed and working here
        assert p.list_ctx() == [cpu(0), bad]


def test_initialized_hook_fires(fresh_plugin_manager: None) -> None:
    from paramarena.hooks.manager import get_plugin_manager
    from paramarena.hooks.specs import hookimpl

    seen: list[tuple[str, list[pa.Context]]] = []

    class Plugin:
        @hookimpl
        def paramarena_parameter_initialized(
            self, parameter: Parameter, ctx: list[pa.Context]
        ) -> None:
            seen.append((parameter.name, ctx))

    get_plugin_manager().register(Plugin(), name="h1-test-hook")
    p = Parameter("hooked", shape=(2,))
    p.initialize(init="zeros", ctx=[cpu(0), cpu(1)])
    assert seen == [("hooked", [cpu(0), cpu(1)])]
    p.reset_ctx(cpu(2))
    assert seen[-1] == ("hooked", [cpu(2)])


# --- deferred initialization -------------------------------------------------------------------


def test_deferred_initialization_flow() -> None:
    p = Parameter("w", shape=(0, 3), allow_deferred_init=True)
    p.initialize(init="ones", ctx=[cpu(0), cpu(1)])
    assert p._data is None
    assert p._deferred_init != ()
    assert p.list_ctx() == [cpu(0), cpu(1)]
    for call in (p.data, p.grad, p.list_data, p.list_grad):
        with pytest.raises(errors.DeferredInitializationError, match="initialization was deferred"):
            call()
    with pytest.raises(RuntimeError):
        p.data()
    p.shape = (2, 3)
    p._finish_deferred_init()
    np.testing.assert_array_equal(p.data(cpu(1)), np.ones((2, 3)))
    assert p._deferred_init == ()
    p._finish_deferred_init()  # no-op


def test_deferred_with_shape_none() -> None:
    p = Parameter("w", allow_deferred_init=True)
    p.initialize(init="zeros")
    p.shape = (2,)
    p._finish_deferred_init()
    assert p.data().shape == (2,)


def test_failed_finish_clears_deferred_state() -> None:
    p = Parameter("w", shape=(0, 2), allow_deferred_init=True)
    p.initialize()
    with pytest.raises(errors.ParameterValueError) as ei:
        p._finish_deferred_init()
    assert "invalid shape: (0, 2). Set its full shape" in str(ei.value)
    assert p._deferred_init == ()
    with pytest.raises(errors.NotInitializedError, match="has not been initialized"):
        p.data()


def test_set_data_while_deferred() -> None:
    p = Parameter("w", shape=(0, 2), allow_deferred_init=True)
    p.initialize(init="zeros")
    value = np.arange(6, dtype=np.float32).reshape(3, 2)
    p.set_data(value)
    assert p.shape == (3, 2)
    p._finish_deferred_init()
    np.testing.assert_array_equal(p.data(), value)


def test_reset_ctx_while_deferred() -> None:
    p = Parameter("w", shape=(0,), allow_deferred_init=True)
    p.initialize(init="zeros", ctx=cpu(0))
    p.reset_ctx([cpu(1), cpu(2)])
    assert p.list_ctx() == [cpu(1), cpu(2)]


# --- accessors ---------------------------------------------------------------------------------


def test_uninitialized_messages() -> None:
    p = Parameter("w", shape=(2,))
    with pytest.raises(errors.NotInitializedError) as ei:
        p.data()
    assert str(ei.value) == (
        "Parameter 'w' has not been initialized. Call initialize() on it or on its "
        "ParameterDict, or load values into it (ParameterDict.load / load_dict), first."
    )
    assert "Block" not in str(ei.value)
    assert "Trainer" not in str(ei.value)
    assert isinstance(ei.value, RuntimeError)
    with pytest.raises(errors.NotInitializedError, match="has not been initialized"):
        p.grad()
    with pytest.raises(errors.NotInitializedError) as ei2:
        p.list_ctx()
    assert str(ei2.value) == "Parameter 'w' has not been initialized"
    p.zero_grad()  # no-op


def test_one_copy_per_context_independent() -> None:
    p = Parameter("w", shape=(2,))
    p.initialize(init="ones", ctx=[cpu(0), cpu(1)])
    a, b = p.list_data()
    assert a is not b
    np.testing.assert_array_equal(a, b)
    a[...] = 7
    assert np.all(b == 1)
    assert p.data(cpu(0)) is a
    assert p.data(cpu(1)) is b


def test_data_ctx_none_rules() -> None:
    p = Parameter("w", shape=(2,))
    p.initialize(init="ones", ctx=cpu(3))
    assert p.data() is p.list_data()[0]  # single copy: current context ignored
    q = Parameter("q", shape=(2,))
    q.initialize(init="ones", ctx=[cpu(1), cpu(0)])
    assert q.data() is q.list_data()[1]  # several copies: current context cpu(0)
    with cpu(1):
        assert q.data() is q.list_data()[0]


def test_wrong_context_message() -> None:
    p = Parameter("weight", shape=(2,))
    p.initialize(init="ones", ctx=cpu(0))
    with pytest.raises(errors.WrongContextError) as ei:
        p.data(cpu(1))
    assert str(ei.value) == (
        "Parameter 'weight' was not initialized on context cpu(1). "
        "It was only initialized on [cpu(0)]."
    )
    assert isinstance(ei.value, RuntimeError)
    with pytest.raises(errors.WrongContextError):
        p.grad(cpu(7))
    with pytest.raises(errors.ParameterTypeError):
        p.data("cpu(0)")  # type: ignore[arg-type]


def test_pinned_and_shared_alias_cpu() -> None:
    p = Parameter("w", shape=(2,))
    p.initialize(init="ones", ctx=[cpu(2), cpu(0)])
    assert p._ctx_map == [[], [1, None, 0]]
    assert p.data(cpu_pinned(0)) is p.data(cpu(0))
    assert p.data(cpu_shared(2)) is p.data(cpu(2))


def test_duplicate_contexts_last_wins() -> None:
    p = Parameter("w", shape=(2,))
    p.initialize(init="ones", ctx=[cpu(0), cpu(0)])
    assert len(p.list_data()) == 2
    assert p.data(cpu(0)) is p.list_data()[1]


def test_zero_grad_parameter() -> None:
    p = Parameter("w", shape=(3,), dtype="int32")
    p.initialize(init="ones", ctx=[cpu(0), cpu(1)])
    for g in p.list_grad():
        g[...] = 9
    p.zero_grad()
    assert all(np.all(g == 0) for g in p.list_grad())
    assert all(g.dtype == np.int32 for g in p.list_grad())


# --- set_data, reset_ctx, cast, _reduce --------------------------------------------------------


def test_set_data_broadcasts_and_converts() -> None:
    p = Parameter("w", shape=(3,))
    p.initialize(init="zeros", ctx=[cpu(0), cpu(1)])
    p.set_data(np.array([1, 2, 3], dtype=np.int64))
    for d in p.list_data():
        assert d.dtype == np.float32
        np.testing.assert_array_equal(d, [1, 2, 3])


def test_set_data_errors() -> None:
    p = Parameter("w", shape=(3,))
    with pytest.raises(errors.NotInitializedError, match="Parameter 'w' has not been initialized"):
        p.set_data(np.zeros(3))
    p.initialize(init="zeros")
    with pytest.raises(errors.ShapeMismatchError) as ei:
        p.set_data(np.zeros(2))
    assert str(ei.value) == (
        "Cannot set data of Parameter 'w': expected shape (3,) (0 = any size), given shape (2,)."
    )
    with pytest.raises(errors.ParameterTypeError, match="expects an array"):
        p.set_data(1.5)


def test_reset_ctx_averages_copies() -> None:
    p = Parameter("w", shape=(2,))
    p.initialize(init="zeros", ctx=[cpu(0), cpu(1)])
    p.data(cpu(0))[...] = 3
    p.data(cpu(1))[...] = 5
    p.grad(cpu(0))[...] = 1
    p.reset_ctx([cpu(2), cpu(3)])
    assert p.list_ctx() == [cpu(2), cpu(3)]
    for d in p.list_data():
        np.testing.assert_array_equal(d, [4, 4])
    assert all(np.all(g == 0) for g in p.list_grad())
    p.reset_ctx(None)
    assert p.list_ctx() == [cpu(0)]


def test_reset_ctx_uninitialized() -> None:
    with pytest.raises(errors.ParameterValueError) as ei:
        Parameter("w").reset_ctx(cpu(0))
    assert str(ei.value) == (
        "Cannot reset context for Parameter 'w' because it has not been initialized."
    )


def test_cast() -> None:
    p = Parameter("w", shape=(2,))
    p.cast("float16")
    assert p.dtype == "float16"
    p.initialize(init="ones", ctx=[cpu(0), cpu(1)])
    assert all(d.dtype == np.float16 for d in p.list_data())
    p.dtype = np.float64
    assert p.dtype is np.float64
    assert all(d.dtype == np.float64 for d in p.list_data())
    assert all(g.dtype == np.float64 for g in p.list_grad())
    q = Parameter("q", shape=(2,), grad_req="null")
    q.initialize(init="ones")
    q.cast("int8")
    assert q.data().dtype == np.int8
    with pytest.raises(errors.ParameterTypeError):
        q.cast("nope")


def test_reduce_returns_host_copy() -> None:
    p = Parameter("w", shape=(2,))
    p.initialize(init="ones")
    r = p._reduce()
    assert r is not p.data()
    np.testing.assert_array_equal(r, [1, 1])
    with pytest.raises(errors.NotInitializedError):
        Parameter("u", shape=(2,))._reduce()


# --- sparse ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "shown"),
    [({"stype": "row_sparse"}, "stype='row_sparse'"), ({"grad_stype": "csr"}, "grad_stype='csr'")],
)
def test_sparse_not_supported(kw: dict[str, str], shown: str) -> None:
    p = Parameter("w", shape=(2, 2), **kw)
    with pytest.raises(errors.ParameterValueError, match="sparse storage") as ei:
        p.initialize(init="zeros")
    assert shown in str(ei.value)
    with pytest.raises(errors.ParameterValueError, match="sparse storage"):
        p._load_init(np.zeros((2, 2), np.float32), None)


def test_sparse_data_message() -> None:
    p = Parameter("weight", shape=(2, 2), stype="row_sparse")
    with pytest.raises(RuntimeError, match="storage type is row_sparse"):
        p.data()
    with pytest.raises(errors.ParamarenaError, match="via list_data"):
        p.list_data()
