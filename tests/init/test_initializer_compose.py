"""``Mixed`` (initializer by name pattern) and ``Load`` (values from a dict or checkpoint)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

import paramarena.init as init
from paramarena import storage
from paramarena.errors import InitializerError, ParameterTypeError


def f32(*shape: int) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float32)


# --- Mixed --------------------------------------------------------------------------------------


def test_mixed_first_matching_pattern_wins() -> None:
    mixed = init.Mixed(["fc1_", ".*weight$", ".*"], [init.One(), init.Constant(3.0), init.Zero()])
    fc1, fc2, bias = f32(2), f32(2), f32(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # InitDesc names take no deprecated path
        mixed(init.InitDesc("fc1_weight"), fc1)
        mixed(init.InitDesc("fc2_weight"), fc2)
        mixed(init.InitDesc("fc2_bias"), bias)
    np.testing.assert_array_equal(fc1, [1, 1])
    np.testing.assert_array_equal(fc2, [3, 3])
    np.testing.assert_array_equal(bias, [0, 0])
    # re.match anchors at the start: 'weight' alone does not match 'fc_weight'
    with pytest.raises(InitializerError, match="did not match any pattern"):
        init.Mixed(["weight"], [init.One()])(init.InitDesc("fc_weight"), f32(1))


def test_mixed_accepts_names_and_json() -> None:
    mixed = init.Mixed(["a", "b"], ["ones", '["constant", {"value": 2}]'])
    a, b = f32(1), f32(1)
    mixed(init.InitDesc("a_weight", {"__init__": "ones"}), a)
    mixed(init.InitDesc("b_weight", {"__init__": '["constant", {"value": 2}]'}), b)
    assert (a[0], b[0]) == (1, 2)


def test_mixed_with_plain_str_takes_the_legacy_path() -> None:
    mixed = init.Mixed([".*"], [init.One()])
    arr = f32(2)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        mixed("fc_bias", arr)
    np.testing.assert_array_equal(arr, [0, 0])  # legacy rule: bias -> 0


def test_mixed_errors() -> None:
    mixed = init.Mixed(["fc"], [init.One()])
    with pytest.raises(InitializerError) as info:
        mixed(init.InitDesc("conv_weight"), f32(2))
    message = str(info.value)
    assert "Parameter name conv_weight did not match any pattern" in message
    assert '".*" pattern at the end' in message
    assert "%s" not in message
    with pytest.raises(InitializerError, match="2 patterns and 1 initializers"):
        init.Mixed(["a", "b"], [init.One()])
    with pytest.raises(InitializerError, match="Expected an initializer"):
        init.Mixed(["a"], [3])


# --- Load ---------------------------------------------------------------------------------------


def test_load_from_dict_strips_arg_aux_and_falls_back() -> None:
    saved = {
        "arg:fc_weight": np.arange(6, dtype=np.float64).reshape(2, 3),
        "aux:bn_moving_var": np.ones(3, dtype=np.float32),
    }
    loader = init.Load(saved, default_init=init.Constant(7.0))
    assert set(loader.param) == {"fc_weight", "bn_moving_var"}
    w = f32(2, 3)
    loader(init.InitDesc("fc_weight"), w)
    np.testing.assert_array_equal(w, np.arange(6).reshape(2, 3))
    other = f32(2)
    loader(init.InitDesc("fc_bias", {"__init__": init.Constant(7.0)}), other)
    np.testing.assert_array_equal(other, [7, 7])


def test_load_errors() -> None:
    loader = init.Load({"fc_weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(InitializerError) as info:
        loader(init.InitDesc("fc_weight"), f32(3, 2))
    assert str(info.value) == (
        "Parameter fc_weight cannot be initialized from loading. Shape mismatch, "
        "target (3, 2) vs loaded (2, 2)"
    )
    with pytest.raises(InitializerError, match=r"Cannot Initialize b\. Not found in loaded param"):
        loader(init.InitDesc("b"), f32(2))
    with pytest.raises(InitializerError, match=r"dict of name -> array .* got list"):
        init.Load([np.zeros(2)])
    with pytest.raises(ParameterTypeError, match="got list for fc_weight"):
        loader(init.InitDesc("fc_weight"), [0.0])  # type: ignore[arg-type]


def test_load_verbose_logs(caplog: pytest.LogCaptureFixture) -> None:
    loader = init.Load({"w": np.ones(2)}, default_init=init.Zero(), verbose=True)
    with caplog.at_level(logging.INFO, logger="paramarena.init"):
        loader(init.InitDesc("w"), f32(2))
        loader(init.InitDesc("b", {"__init__": "zero"}), f32(2))
    assert [r.getMessage() for r in caplog.records] == [
        "Initialized w by loading",
        "Initialized b by default",
    ]


def test_load_from_a_real_mxnet_checkpoint(mxnet_fixtures: Path) -> None:
    loader = init.Load(str(mxnet_fixtures / "checkpoint-0000.params"))
    with np.load(mxnet_fixtures / "checkpoint-0000.npz", allow_pickle=False) as ref:
        names = [str(k) for k in ref.files if k != "__keys__"]
        assert names
        for stored in names:
            name = stored.split(":", 1)[1]
            expected = ref[stored]
            arr = np.empty(expected.shape, dtype=expected.dtype)
            loader(init.InitDesc(name), arr)
            np.testing.assert_array_equal(arr, expected)


def test_load_from_an_npz_path(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.npz"
    storage.save(path, {"net_weight": np.full((2, 2), 5, np.float32)})
    loader = init.Load(path)
    arr = f32(2, 2)
    loader(init.InitDesc("net_weight"), arr)
    np.testing.assert_array_equal(arr, np.full((2, 2), 5))


def test_load_refuses_unnamed_files(mxnet_fixtures: Path) -> None:
    with pytest.raises(InitializerError, match="got list"):
        init.Load(mxnet_fixtures / "ndarray_list.params")
