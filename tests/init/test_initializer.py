"""Initializer base behaviour: InitDesc, dispatch, create(), register/alias, dumps, verbosity.

Values of the individual initializers are in ``test_initializer_values.py``; ``Mixed`` and
``Load`` in ``tests/init/test_initializer_compose.py``.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import paramarena.init as init
import paramarena.init.base as base
from paramarena.errors import (
    InitializerError,
    ParamarenaError,
    ParameterTypeError,
    UnknownNameError,
)
from paramarena.hooks.records import InitializerSpec
from paramarena.hooks.specs import hookimpl


@pytest.fixture
def runtime_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An empty run-time registry for the test (restored afterwards)."""
    table: dict[str, Any] = {}
    monkeypatch.setattr(base, "_RUNTIME_REGISTRY", table)
    return table


def f32(*shape: int) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float32)


# --- InitDesc ------------------------------------------------------------------------------------


def test_initdesc_is_a_str_with_attrs_global_init_and_seed() -> None:
    desc = init.InitDesc("fc_weight")
    assert isinstance(desc, str)
    assert desc == "fc_weight"
    assert desc.attrs == {}
    assert desc.global_init is None
    assert desc.seed is None
    d2 = init.InitDesc("w", {"__init__": "one"}, init.Zero(), seed=7)
    assert d2.attrs == {"__init__": "one"}
    assert d2.global_init == init.Zero()
    assert d2.seed == 7


# --- dispatch ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fc_bias", 0.0),
        ("bn_gamma", 1.0),
        ("bn_beta", 0.0),
        ("q_min", 0.0),
        ("q_max", 1.0),
        ("fc_bias_quantize", 0.0),
    ],
)
def test_suffix_dispatch_fixed_values(name: str, expected: float) -> None:
    arr = f32(3)
    init.Uniform()(init.InitDesc(name), arr)
    np.testing.assert_array_equal(arr, np.full(3, expected, np.float32))


def test_suffix_dispatch_weight_uses_init_weight() -> None:
    arr = f32(50)
    init.Uniform(0.5)(init.InitDesc("fc_weight", seed=1), arr)
    assert np.all(np.abs(arr) <= 0.5)
    assert len(np.unique(arr)) > 40


def test_suffix_dispatch_quantized_weight_is_one_int8_value() -> None:
    arr = np.zeros((4, 5), dtype=np.int8)
    init.Uniform()(init.InitDesc("fc_weight_quantize", seed=3), arr)
    assert len(np.unique(arr)) == 1
    assert -127 <= int(arr[0, 0]) < 127


def test_suffix_dispatch_unknown_name_is_an_error() -> None:
    with pytest.raises(
        InitializerError, match="Unknown initialization pattern for bn_running_mean"
    ):
        init.Uniform()(init.InitDesc("bn_running_mean"), f32(3))


def test_init_attr_wins_over_the_suffix_and_sets_global_init() -> None:
    glob = init.Zero()
    for given in (init.One(), "one", "ONES", '["one", {}]'):
        arr = f32(2)
        desc = init.InitDesc("fc_bias", {"__init__": given})
        glob(desc, arr)
        np.testing.assert_array_equal(arr, [1.0, 1.0])
        assert desc.global_init is glob


def test_init_attr_random_initializer_on_a_bias_gives_random_values() -> None:
    # MXNet/Gluon: __init__ always selects _init_weight, whatever the name (spec h.2).
    arr = f32(20)
    init.Zero()(init.InitDesc("fc_bias", {"__init__": init.Uniform()}, seed=0), arr)
    assert np.all(arr != 0)


def test_init_attr_with_mixed_is_rejected() -> None:
    mixed = init.Mixed([".*"], [init.One()])
    with pytest.raises(InitializerError, match="Mixed and Load"):
        init.Uniform()(init.InitDesc("w", {"__init__": mixed}), f32(2))


def test_base_initializer_weight_is_not_implemented() -> None:
    with pytest.raises(NotImplementedError, match="must override _init_weight"):
        init.Initializer()(init.InitDesc("fc_weight"), f32(2))
    # but the fixed suffix rules work on the base class
    arr = f32(2)
    init.Initializer()(init.InitDesc("b_gamma"), arr)
    np.testing.assert_array_equal(arr, [1.0, 1.0])


def test_call_with_a_non_numpy_array_is_a_type_error() -> None:
    with pytest.raises(ParameterTypeError, match="numpy arrays in place; got list for w"):
        init.One()(init.InitDesc("w"), [1.0, 2.0])  # type: ignore[arg-type]


# --- legacy init(str, arr) ----------------------------------------------------------------------


def legacy(initializer: init.Initializer, name: Any, arr: Any) -> None:
    with pytest.warns(DeprecationWarning, match="deprecated") as record:
        initializer(name, arr)
    assert all("\033" not in str(w.message) for w in record)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fc_bias", 0.0),
        ("bn_gamma", 1.0),
        ("bn_beta", 0.0),
        ("bn_moving_mean", 0.0),
        ("bn_moving_var", 1.0),
        ("bn_moving_inv_var", 0.0),
        ("bn_moving_avg", 0.0),
        ("q_min", 0.0),
        ("q_max", 1.0),
        ("stn_loc_weight", 0.0),
    ],
)
def test_legacy_rules(name: str, expected: float) -> None:
    arr = f32(6)
    legacy(init.Uniform(), name, arr)
    np.testing.assert_array_equal(arr, np.full(6, expected, np.float32))


def test_legacy_weight_upsampling_and_stn_loc_bias() -> None:
    arr = f32(10, 10)
    legacy(init.Uniform(0.2), "fc_weight", arr)
    assert np.all(np.abs(arr) <= 0.2)
    assert np.any(arr != 0)
    up = f32(1, 1, 4, 4)
    legacy(init.Uniform(), "upsampling0_weight", up)
    assert up[0, 0, 1, 1] == np.float32(0.5625)
    loc = f32(6)
    legacy(init.Zero(), "stn_loc_bias", loc)
    np.testing.assert_array_equal(loc, [1, 0, 0, 0, 1, 0])
    with pytest.raises(InitializerError, match=r"needs shape \(6,\), got \(5,\)"):
        legacy(init.Zero(), "stn_loc_bias", f32(5))


def test_legacy_errors() -> None:
    with pytest.raises(InitializerError, match="Unknown initialization pattern for fc_weight_q"):
        legacy(init.Uniform(), "fc_weight_quantize", f32(2))
    with pytest.raises(ParameterTypeError, match="name must be string"):
        legacy(init.Uniform(), 3, f32(2))
    with pytest.raises(ParameterTypeError, match=r"arr must be a numpy\.ndarray for w"):
        legacy(init.Uniform(), "w", [0.0])


# --- dumps / equality ---------------------------------------------------------------------------

DUMPS = [
    (init.Zero(), '["zero", {}]'),
    (init.One(), '["one", {}]'),
    (init.Constant(2.5), '["constant", {"value": 2.5}]'),
    (init.Uniform(), '["uniform", {"scale": 0.07}]'),
    (init.Normal(), '["normal", {"sigma": 0.01}]'),
    (init.Orthogonal(), '["orthogonal", {"scale": 1.414, "rand_type": "uniform"}]'),
    (
        init.Xavier(),
        '["xavier", {"rnd_type": "uniform", "factor_type": "avg", "magnitude": 3}]',
    ),
    (init.MSRAPrelu(), '["msraprelu", {"factor_type": "avg", "slope": 0.25}]'),
    (init.Bilinear(), '["bilinear", {}]'),
    (init.LSTMBias(), '["lstmbias", {"forget_bias": 1.0}]'),
]


@pytest.mark.parametrize(("obj", "text"), DUMPS, ids=[t for _, t in DUMPS])
def test_dumps_matches_mxnet_and_round_trips(obj: init.Initializer, text: str) -> None:
    assert obj.dumps() == text
    again = init.create(text)
    assert type(again) is type(obj)
    assert again == obj
    assert again.dumps() == text


def test_dumps_round_trip_with_non_default_arguments() -> None:
    for obj in (
        init.Xavier("gaussian", "in", 2),
        init.Orthogonal(0.5, "normal"),
        init.MSRAPrelu("out", 0.1),
        init.Constant(np.array([[1, 2], [3, 4]], dtype=np.float32)),
        init.LSTMBias(2.5),
    ):
        again = init.create(obj.dumps())
        assert again == obj
        assert again.dumps() == obj.dumps()


def test_equality_and_unhashable() -> None:
    assert init.Uniform(0.1) == init.Uniform(0.1)
    assert init.Uniform(0.1) != init.Uniform(0.2)
    assert init.Zero() != init.One()
    assert init.Uniform() != "uniform"
    with pytest.raises(TypeError, match="unhashable"):
        hash(init.One())


def test_repr_shows_the_arguments() -> None:
    assert repr(init.Uniform(0.5)) == "Uniform(scale=0.5)"
    assert repr(init.Zero()) == "Zero()"


# --- create --------------------------------------------------------------------------------------


def test_create_forms() -> None:
    x = init.Xavier()
    assert init.create(x) is x
    assert init.create("XaViEr") == init.Xavier()
    assert init.create("zeros") == init.Zero()
    assert init.create("ones") == init.One()
    assert init.create("uniform", 0.5) == init.Uniform(0.5)
    assert init.create("normal", sigma=2.0) == init.Normal(2.0)
    assert init.create(initializer="normal", sigma=2.0) == init.Normal(2.0)
    assert init.create({"initializer": "xavier", "magnitude": 2}) == init.Xavier(magnitude=2)
    assert init.create('{"initializer": "normal", "sigma": 0.5}') == init.Normal(0.5)
    assert init.create('  ["uniform", {"scale": 1}]') == init.Uniform(1)


def test_create_errors() -> None:
    with pytest.raises(InitializerError, match="already an instance"):
        init.create(init.One(), 1)
    with pytest.raises(InitializerError, match="string type, got int"):
        init.create(3)
    with pytest.raises(InitializerError, match="Mixed and Load"):
        init.create(init.Mixed([".*"], [init.One()]))
    with pytest.raises(InitializerError, match="Invalid initializer JSON"):
        init.create('["uniform", {"scale": ')
    with pytest.raises(InitializerError, match=r"expected \[\"name\", \{kwargs\}\]"):
        init.create('["uniform"]')
    with pytest.raises(InitializerError, match="needs an initializer"):
        init.create()
    with pytest.raises(InitializerError, match="no further arguments"):
        init.create('["one", {}]', 1)


def test_create_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        init.create("nonexistent")
    err = info.value
    assert isinstance(err, KeyError)
    assert isinstance(err, ParamarenaError)
    message = str(err)
    assert "'nonexistent'" in message
    for name in ("'xavier'", "'zeros'", "'lstmbias'", "'msraprelu'"):
        assert name in message
    assert "register" in message


def test_registered_names_contains_the_mxnet_builtins() -> None:
    expected = {
        "bilinear",
        "constant",
        "fusedrnn",
        "lstmbias",
        "msraprelu",
        "normal",
        "one",
        "ones",
        "orthogonal",
        "uniform",
        "xavier",
        "zero",
        "zeros",
    }
    assert expected <= set(init.registered_names())


# --- register / alias / plugins -------------------------------------------------------------------


class Half(init.Initializer):
    """Test initializer: fills with 0.5 times ``factor``."""

    def __init__(self, factor: float = 1.0) -> None:
        super().__init__(factor=factor)
        self.factor = factor

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        arr[...] = 0.5 * self.factor


def test_register_makes_a_class_creatable_and_round_trips(
    runtime_registry: dict[str, Any],
) -> None:
    assert init.register(Half) is Half
    assert runtime_registry == {"half": Half}
    obj = init.create("HALF", factor=4.0)
    arr = f32(2)
    obj(init.InitDesc("w", {"__init__": obj}), arr)
    np.testing.assert_array_equal(arr, [2.0, 2.0])
    assert obj.dumps() == '["half", {"factor": 4.0}]'
    assert init.create(obj.dumps()) == obj
    assert "half" in init.registered_names()


def test_register_again_warns_and_overrides(runtime_registry: dict[str, Any]) -> None:
    init.register(Half)

    class Other(Half):
        pass

    with pytest.warns(UserWarning, match="registered with name half is overriding existing"):
        init.register(Other, "half")
    assert type(init.create("half")) is Other


def test_register_over_a_builtin_name_warns_and_wins(runtime_registry: dict[str, Any]) -> None:
    class Uniform(Half):
        pass

    with pytest.warns(UserWarning, match="overriding existing initializer .*init.classes"):
        init.register(Uniform)
    assert type(init.create("uniform")) is Uniform


def test_register_rejects_non_initializers(runtime_registry: dict[str, Any]) -> None:
    with pytest.raises(InitializerError, match="Can only register subclasses"):
        init.register(dict)  # type: ignore[type-var]
    assert runtime_registry == {}


def test_alias_registers_every_name(runtime_registry: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decorated = init.alias("halfish", "HalfToo")(Half)
    assert decorated is Half
    assert set(runtime_registry) == {"halfish", "halftoo"}
    assert type(init.create("halftoo")) is Half


class _InitPlugin:
    @hookimpl
    def paramarena_initializers(self) -> Iterator[InitializerSpec]:
        yield InitializerSpec("halfplugin", Half, ("halfp",))


def test_plugin_hook_provides_names(fresh_plugin_manager: None) -> None:
    from paramarena.hooks.manager import get_plugin_manager, invalidate_caches

    with pytest.raises(UnknownNameError):
        init.create("halfp")
    get_plugin_manager().register(_InitPlugin(), name="halfplugin-test")
    invalidate_caches()
    assert type(init.create("HalfPlugin")) is Half
    assert init.create("halfp", 3.0) == Half(3.0)
    assert {"halfplugin", "halfp"} <= set(init.registered_names())


# --- verbosity -----------------------------------------------------------------------------------


def test_set_verbosity_logs_in_mxnet_format(caplog: pytest.LogCaptureFixture) -> None:
    glob = init.Uniform()
    assert glob.set_verbosity(True) is glob
    with caplog.at_level(logging.INFO, logger="paramarena.init"):
        glob(init.InitDesc("v_bias", {"__init__": "ones"}), f32(4))
        glob(init.InitDesc("v_gamma"), f32(4))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["Initialized v_bias as ones: 1.0", "Initialized v_gamma as gamma: 1.0"]


def test_set_verbosity_custom_print_func_and_off(caplog: pytest.LogCaptureFixture) -> None:
    glob = init.One().set_verbosity(True, print_func=lambda a: f"sum={a.sum():g}")
    with caplog.at_level(logging.INFO, logger="paramarena.init"):
        glob(init.InitDesc("a_weight"), f32(3))
        glob.set_verbosity(False)
        glob(init.InitDesc("b_weight"), f32(3))
    assert [r.getMessage() for r in caplog.records] == ["Initialized a_weight as weight: sum=3"]


def test_uniform_json_kwargs_are_plain_json() -> None:
    name, kwargs = json.loads(init.Constant(np.float32(1.5)).dumps())
    assert name == "constant"
    assert kwargs == {"value": 1.5}
