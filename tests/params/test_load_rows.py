"""``ParameterDict.load`` into new parameters: arena rows read by offsets (``packed_load``).

Every parameter gets its run and row (data and gradients made on first access), whatever its
declared shape (unknown, partly unknown), its ``grad_req`` and its dtype; a failure leaves
every parameter as it was; arrays the checkpoint stores differently than planned (a save in
between) take the general path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramarena import errors, storage
from paramarena.params import packed_load
from paramarena.params.parameter_dict import ParameterDict


def _src(n: int = 90) -> ParameterDict:
    d = ParameterDict("net_")
    for i in range(n):
        shape = (i % 4 + 1, 3) if i % 2 else (i % 7 + 2,)
        d.get(f"w{i}", shape=shape, dtype="float16" if i % 5 == 0 else "float32")
    d.initialize(seed=9)
    return d


def _declared(src: ParameterDict, how: str) -> ParameterDict:
    d = ParameterDict("net_")
    for i, (name, p) in enumerate(src.items()):
        shape: Any = p.shape
        if how == "unknown":
            shape = None
        elif how == "partial":
            shape = (0, *p.shape[1:])
        grad_req = "null" if how == "some-null" and i % 3 == 0 else "write"
        if how == "all-null":
            grad_req = "null"
        d.get(name[len("net_") :], shape=shape, dtype=p.dtype, grad_req=grad_req)
    return d


@pytest.mark.parametrize("how", ["known", "unknown", "partial", "some-null", "all-null"])
def test_new_parameters_take_their_rows(tmp_path: Path, how: str) -> None:
    src = _src()
    path = tmp_path / "c.zarr"
    src.save(path)
    d = _declared(src, how)
    d.load(path)
    for name, p in d.items():
        q = src[name]
        assert p.shape == q.shape
        np.testing.assert_array_equal(p.data(), q.data())
        assert p.data().dtype == q.data().dtype
        assert p.init_key == q.init_key
        if p.grad_req == "null":
            with pytest.raises(errors.ParamarenaError):
                p.grad()
        else:
            assert p.grad().shape == q.shape
            assert not p.grad().any()
    d.zero_grad()
    d.save(tmp_path / "again.zarr")
    back = _declared(src, "known")
    back.load(tmp_path / "again.zarr")
    for name, p in back.items():
        np.testing.assert_array_equal(p.data(), src[name].data())


def test_a_failed_read_leaves_every_parameter_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _src()
    path = tmp_path / "c.zarr"
    src.save(path)
    d = _declared(src, "known")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise errors.CorruptCheckpointError("damaged on purpose")

    monkeypatch.setattr(storage.columns, "load_packed", broken)
    with pytest.raises(errors.CorruptCheckpointError, match="on purpose"):
        d.load(path)
    assert all(p._data is None and p._lazy is None for p in d.values())
    monkeypatch.undo()
    d.load(path)
    for name, p in d.items():
        np.testing.assert_array_equal(p.data(), src[name].data())


def test_arrays_stored_otherwise_than_planned_take_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _src()
    path = tmp_path / "c.zarr"
    src.save(path)
    real = storage.columns.load_packed
    odd = "net_w3"

    def changed(filename: Any, targets: Any, **options: Any) -> Any:
        real(filename, targets, **options)
        return {odd: src[odd].data().copy()}  # as if stored with another layout

    monkeypatch.setattr(storage.columns, "load_packed", changed)
    calls = []
    monkeypatch.setattr(packed_load, "_adopt_rows", lambda *a: calls.append(a) or _ADOPT(*a))
    d = _declared(src, "known")
    d.load(path)
    assert calls
    for name, p in d.items():
        np.testing.assert_array_equal(p.data(), src[name].data())
        assert not p.grad().any()


_ADOPT = packed_load._adopt_rows


def test_parameters_with_arrays_take_the_general_path(tmp_path: Path) -> None:
    src = _src()
    path = tmp_path / "c.zarr"
    src.save(path)
    d = _declared(src, "known")
    d["net_w4"].initialize(seed=1)  # one initialized: loaded in place, the rest adopted
    d.load(path)
    for name, p in d.items():
        np.testing.assert_array_equal(p.data(), src[name].data())
    mismatched = ParameterDict("net_")
    for name, p in src.items():
        mismatched.get(name[4:], shape=(99,) if name == "net_w6" else p.shape, dtype=p.dtype)
    with pytest.raises(errors.ShapeMismatchError, match="net_w6"):
        mismatched.load(path)
    assert all(p._data is None and p._lazy is None for p in mismatched.values())


def test_the_initialized_hook_fires_once_per_loaded_parameter(
    tmp_path: Path, initialized_calls: list[tuple[str, Any]]
) -> None:
    src = _src(12)
    path = tmp_path / "c.zarr"
    src.save(path)
    initialized_calls.clear()  # (the source's own initialization)
    _declared(src, "known").load(path)
    seen = initialized_calls
    assert sorted(n for n, _ in seen) == sorted(src.keys())
    assert all(len(ctx) == 1 for _, ctx in seen)


def test_cast_to_the_saved_dtype_gives_the_parameters_that_dtype(tmp_path: Path) -> None:
    src = _src(12)
    path = tmp_path / "c.zarr"
    src.save(path)
    d = ParameterDict("net_")
    for i, (name, p) in enumerate(src.items()):  # some without gradients: views made now
        d.get(name[4:], shape=p.shape, dtype="float64", grad_req="null" if i == 3 else "write")
    mixed = ParameterDict("net_")
    for name, p in src.items():
        mixed.get(name[4:], shape=p.shape, dtype="float64")
    mixed["net_w5"].initialize(seed=2)  # one initialized: the general path for all
    d.load(path, cast_dtype=True, dtype_source="saved")
    mixed.load(path, cast_dtype=True, dtype_source="saved")
    for name, p in [*d.items(), *mixed.items()]:
        want = src[name].data()
        assert np.dtype(p.dtype) == want.dtype
        assert p.data().dtype == want.dtype
        if p.grad_req != "null":
            assert p.grad().dtype == want.dtype
        np.testing.assert_array_equal(p.data(), want)
    kept = ParameterDict("net_")
    for name, p in src.items():
        kept.get(name[4:], shape=p.shape, dtype="float64")
    kept.load(path, cast_dtype=True)  # dtype_source="current": converted, general path
    for name, p in kept.items():
        assert p.data().dtype == np.float64
        np.testing.assert_array_equal(p.data(), src[name].data().astype(np.float64))
