"""``ParameterDict.load`` of many parameters: the one-pass checks and destinations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from paramarena import errors
from paramarena.params.parameter_dict import ParameterDict

DTYPES = ("float32", "float16", "float64")


def _dict(n: int, prefix: str = "net_", dtypes: tuple[str, ...] = DTYPES) -> ParameterDict:
    d = ParameterDict(prefix)
    for i in range(n):
        shape = (i % 3 + 1, 2) if i % 2 else (i % 5 + 1,)
        d.get(f"w{i}", shape=shape, dtype=dtypes[i % len(dtypes)])
    return d


def _same(got: ParameterDict, want: ParameterDict) -> None:
    assert list(got.keys()) == list(want.keys())
    for (name, p), q in zip(got.items(), want.values(), strict=True):
        assert p.data().dtype == q.data().dtype, name
        np.testing.assert_array_equal(p.data(), q.data())
        assert p.grad().shape == p.shape
        assert p.init_key == q.init_key


def test_mixed_dtypes_load_into_a_fresh_dict_and_in_place(tmp_path: Path) -> None:
    src = _dict(300)
    src.initialize(seed=3)
    path = tmp_path / "m.zarr"
    src.save(path)
    fresh = _dict(300)
    report = fresh.load(path)
    assert len(report.loaded) == 300
    _same(fresh, src)
    again = _dict(300)
    again.initialize(seed=4)
    again.load(path)
    _same(again, src)


def test_restore_prefix_rename_and_extras(tmp_path: Path) -> None:
    src = _dict(40, prefix="")
    src.initialize(seed=5)
    path = tmp_path / "p.zarr"
    src.save(path)
    d = _dict(40)
    d.load(path, restore_prefix="net_")
    for i in range(40):
        np.testing.assert_array_equal(d[f"net_w{i}"].data(), src[f"w{i}"].data())
    renamed = _dict(40)
    renamed.load(path, rename=lambda n: "net_" + n)
    np.testing.assert_array_equal(renamed["net_w7"].data(), src["w7"].data())
    fewer = _dict(39)
    with pytest.raises(errors.UnexpectedParameterError, match="w39"):
        fewer.load(path, restore_prefix="net_")
    report = fewer.load(path, restore_prefix="net_", ignore_extra=True)
    assert report.skipped == ("net_w39",)


def test_a_dtype_mismatch_raises_before_any_parameter_changes(tmp_path: Path) -> None:
    src = _dict(20)
    src.initialize(seed=1)
    path = tmp_path / "d.zarr"
    src.save(path)
    d = _dict(20, dtypes=("float32",))  # every third parameter differs
    with pytest.raises(errors.DTypeMismatchError, match="net_w1'"):
        d.load(path)
    assert all(p._data is None for p in d.values())
    d.load(path, cast_dtype=True)
    assert d["net_w1"].data().dtype == np.float32
    np.testing.assert_allclose(d["net_w1"].data(), src["net_w1"].data(), rtol=1e-3)


def test_loaded_parameters_get_their_gradients_on_first_access(tmp_path: Path) -> None:
    want = _dict(60)
    want.initialize(seed=5)
    want.save(tmp_path / "m.zarr")
    got = _dict(60)
    got.load(tmp_path / "m.zarr")
    params = list(got.values())
    # data and gradients pending: each parameter holds its rows, no view yet
    assert all(p._lazy is not None and None not in p._lazy for p in params)
    assert all(p._data_list is None for p in params)
    got.zero_grad()  # the arena's kernel: makes nothing
    assert all(p._lazy is not None for p in params)
    first = params[7]
    grad = first.grad()
    assert first._lazy is None
    data = first._data_list
    assert data is not None
    assert first.data() is data[0]  # made once, then kept
    assert first.grad() is grad
    assert not grad.any()
    assert grad.dtype == first.data().dtype
    grad[...] = 3
    got.zero_grad()
    assert not grad.any()
    _same(got, want)
    got.initialize(seed=5, force_reinit=True)  # in place, gradients still zero
    for p, q in zip(got.values(), want.values(), strict=True):
        np.testing.assert_array_equal(p.data(), q.data())
        assert not p.grad().any()
    got.save(tmp_path / "again.zarr")
    back = _dict(60)
    back.load(tmp_path / "again.zarr")
    _same(back, want)
