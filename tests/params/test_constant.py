"""Constant: value handling, grad_req, repr, initialization (MXNet 1.9.1 + documented changes)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import paramarena as pa
from paramarena import errors
from paramarena.devices.context import cpu
from paramarena.params.parameter import Constant, Parameter


def test_python_value_becomes_float32() -> None:
    c = Constant("const", [[1, 2], [3, 4]])
    assert isinstance(c, Parameter)
    assert c.value.dtype == np.float32
    assert c.shape == (2, 2)
    assert c.dtype is np.float32
    assert repr(c) == "Constant const (shape=(2, 2), dtype=<class 'numpy.float32'>)"


def test_numpy_value_keeps_dtype() -> None:
    c = Constant("k", np.arange(3, dtype=np.int32))
    assert c.dtype is np.int32
    c.initialize()
    assert c.data().dtype == np.int32
    np.testing.assert_array_equal(c.data(), [0, 1, 2])


def test_grad_req_always_null_and_setter_warns() -> None:
    c = Constant("const", [1.0])
    assert c.grad_req == "null"
    assert c.lr_mult == 1.0
    assert c._differentiable is True
    with pytest.warns(UserWarning, match="does not support grad_req") as rec:
        c.grad_req = "write"
    assert str(rec[0].message) == (
        'Constant parameter "const" does not support grad_req other than "null", '
        'and new value "write" is ignored.'
    )
    with pytest.warns(UserWarning, match='new value "bogus" is ignored'):
        c.grad_req = "bogus"  # no validation, only a warning
    assert c.grad_req == "null"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c.grad_req = "null"


def test_must_be_initialized() -> None:
    c = Constant("c", [1.0, 2.0])
    with pytest.raises(errors.NotInitializedError, match="has not been initialized"):
        c.data()


def test_initialize_uses_value_and_no_grad() -> None:
    c = Constant("c", [1.0, 2.0])
    c.initialize(ctx=[cpu(0), cpu(1)])
    for d in c.list_data():
        np.testing.assert_array_equal(d, [1.0, 2.0])
    assert c._grad is None
    with pytest.raises(errors.NotInitializedError, match="because grad_req='null'"):
        c.grad()


def test_global_init_does_not_override_value() -> None:
    c = Constant("c", [5.0])
    c.initialize(default_init=pa.init.Zero())
    np.testing.assert_array_equal(c.data(), [5.0])
    pdict = pa.ParameterDict()
    pdict.get_constant("k", [7.0])
    pdict.initialize(pa.init.One())
    np.testing.assert_array_equal(pdict["k"].data(), [7.0])


def test_explicit_init_ignored_with_warning() -> None:
    # MXNet overrides the value here (spec h.11); paramarena keeps it and warns.
    c = Constant("c", [5.0])
    with pytest.warns(UserWarning, match="is always initialized with its value"):
        c.initialize(init=pa.init.Zero())
    np.testing.assert_array_equal(c.data(), [5.0])


def test_scalar_constant_initializes() -> None:
    c = Constant("k", 3.0)
    assert c.shape == ()
    c.initialize()
    assert c.data().shape == ()
    assert float(c.data()) == 3.0


def test_set_data_changes_data_not_value() -> None:
    c = Constant("c", [1.0, 2.0])
    c.initialize()
    c.set_data(np.array([3.0, 4.0]))
    np.testing.assert_array_equal(c.data(), [3.0, 4.0])
    np.testing.assert_array_equal(c.value, [1.0, 2.0])


def test_init_is_an_initializer_not_registry_entry() -> None:
    c = Constant("c", [1.0])
    assert isinstance(c.init, pa.init.Initializer)
