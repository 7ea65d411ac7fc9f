"""Issue 12.2: loading ``Block.save_parameters`` files (structural names) into a ParameterDict.

``tests/fixtures/mxnet/crafted/save_parameters_structural.params`` holds the arrays of
``gluon_paramarena_full.params`` (written by MXNet 1.9.1) under the structural names
``Block.save_parameters`` gives a ``HybridSequential`` of Dense, BatchNorm, Dense (``0.weight``
...). It was written with paramarena's byte-identical ``.params`` writer: real MXNet is not
available here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import paramarena as pa
from paramarena.errors import (
    DTypeMismatchError,
    MissingParameterError,
    ParameterValueError,
    ShapeMismatchError,
    UnexpectedParameterError,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
STRUCTURAL = FIXTURES / "crafted" / "save_parameters_structural.params"
FULL = FIXTURES / "gluon_paramarena_full.params"
LAYERS = {"0": "dense0", "1": "batchnorm0", "2": "dense1"}


def _mlp(order: list[str] | None = None) -> pa.ParameterDict:
    shapes = {
        "dense0_weight": (8, 4),
        "dense0_bias": (8,),
        "batchnorm0_gamma": (8,),
        "batchnorm0_beta": (8,),
        "batchnorm0_running_mean": (8,),
        "batchnorm0_running_var": (8,),
        "dense1_weight": (3, 8),
        "dense1_bias": (3,),
    }
    params = pa.ParameterDict("mlp_")
    for name in order or list(shapes):
        params.get(name, shape=shapes[name])
    return params


def _expected() -> dict[str, np.ndarray]:
    loaded = pa.storage.load(FULL)
    assert isinstance(loaded, dict)
    return loaded


def _check_values(params: pa.ParameterDict) -> None:
    for name, value in _expected().items():
        np.testing.assert_array_equal(params[name].data(), value)


def _structural_to_prefixed(stored: str) -> str:
    layer, attr = stored.split(".", 1)
    return f"mlp_{LAYERS[layer]}_{attr}"


def test_fixture_has_structural_names() -> None:
    info = pa.storage.inspect(STRUCTURAL)
    assert [a.name for a in info.arrays][:3] == ["0.weight", "0.bias", "1.gamma"]


def test_plain_load_fails_on_structural_names() -> None:
    with pytest.raises(MissingParameterError):
        _mlp().load(STRUCTURAL)


def test_rename_callable() -> None:
    params = _mlp()
    report = params.load(STRUCTURAL, rename=_structural_to_prefixed)
    assert len(report.loaded) == 8
    _check_values(params)


def test_rename_mapping_with_restore_prefix() -> None:
    names = [a.name for a in pa.storage.inspect(STRUCTURAL).arrays]
    mapping = {n: _structural_to_prefixed(n)[len("mlp_") :] for n in names}
    params = _mlp()
    params.load(STRUCTURAL, rename=mapping, restore_prefix="mlp_")
    _check_values(params)


def test_rename_collision_is_refused() -> None:
    with pytest.raises(ParameterValueError, match="both"):
        _mlp().load(STRUCTURAL, rename=lambda n: "mlp_x")


def test_match_order() -> None:
    params = _mlp()
    report = params.load(STRUCTURAL, match="order")
    assert report.loaded == tuple(params.keys())
    _check_values(params)


def test_match_order_names_the_first_shape_mismatch() -> None:
    order = [
        "dense0_weight",
        "dense0_bias",
        "batchnorm0_gamma",
        "batchnorm0_beta",
        "batchnorm0_running_mean",
        "batchnorm0_running_var",
        "dense1_bias",  # swapped with dense1_weight
        "dense1_weight",
    ]
    with pytest.raises(ShapeMismatchError, match=r"#6 '2\.weight'.*'mlp_dense1_bias'"):
        _mlp(order).load(STRUCTURAL, match="order")


def test_match_order_checks_dtypes() -> None:
    params = _mlp()
    params["mlp_dense0_bias"].cast("float16")
    with pytest.raises(DTypeMismatchError, match=r"'0\.bias'.*'mlp_dense0_bias'"):
        params.load(STRUCTURAL, match="order")
    params.load(STRUCTURAL, match="order", cast_dtype=True)
    assert params["mlp_dense0_bias"].data().dtype == np.float16


def test_match_order_counts() -> None:
    short = pa.ParameterDict("mlp_")
    short.get("dense0_weight", shape=(8, 4))
    with pytest.raises(UnexpectedParameterError, match=r"'0\.bias'"):
        short.load(STRUCTURAL, match="order")
    report = short.load(STRUCTURAL, match="order", ignore_extra=True)
    assert report.skipped[0] == "0.bias"
    longer = _mlp()
    longer.get("extra", shape=(2,))
    with pytest.raises(MissingParameterError, match="'mlp_extra'"):
        longer.load(STRUCTURAL, match="order")
    assert longer.load(STRUCTURAL, match="order", allow_missing=True).missing == ("mlp_extra",)


def test_load_dict_rename_and_order() -> None:
    stored = pa.storage.load(STRUCTURAL)
    assert isinstance(stored, dict)
    a = _mlp()
    a.load_dict(stored, rename=_structural_to_prefixed)
    _check_values(a)
    b = _mlp()
    b.load_dict(stored, match="order")
    _check_values(b)
    with pytest.raises(ParameterValueError, match="match must be"):
        b.load_dict(stored, match="position")
