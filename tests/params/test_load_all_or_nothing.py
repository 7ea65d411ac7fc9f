"""``ParameterDict.load`` is all or nothing, and loads initialized dicts in place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramarena import errors
from paramarena.params.parameter_dict import ParameterDict

SHAPES = [(64, 32), (17,), (8, 8, 3, 3), (1000,), (5, 7)]


def _dict(shapes: list[tuple[int, ...]] = SHAPES) -> ParameterDict:
    d = ParameterDict("net_")
    for i, shape in enumerate(shapes):
        d.get(f"p{i}_weight", shape=shape)
    return d


def _snapshot(d: ParameterDict) -> dict[str, tuple[Any, np.ndarray]]:
    """Each parameter's array object and a bit copy of its values."""
    return {n: (p.data(), p.data().copy()) for n, p in d.items()}


def _unchanged(d: ParameterDict, before: dict[str, tuple[Any, np.ndarray]]) -> None:
    for name, (array, values) in before.items():
        assert d[name].data() is array, name
        np.testing.assert_array_equal(d[name].data().view(np.uint32), values.view(np.uint32))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    src = _dict()
    src.initialize(seed=1)
    path = tmp_path / "ckpt.zarr"
    src.save(path, chunk_bytes=4096)  # many chunks: damage lands after the first parameters
    return path


def _chunk_files(path: Path) -> list[Path]:
    files = sorted(path.glob("v*/packed_float32/c/*"), key=lambda f: int(f.name))
    assert len(files) > 3
    return files


@pytest.mark.timeout(60)
def test_load_into_an_initialized_dict_reads_in_place(saved: Path) -> None:
    d = _dict()
    d.initialize(seed=2)
    before = {n: p.data() for n, p in d.items()}
    d.load(saved)
    ref = _dict()
    ref.load(saved)
    for name, p in d.items():
        assert p.data() is before[name]  # no second copy of the model
        np.testing.assert_array_equal(p.data(), ref[name].data())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_chunk_leaves_every_parameter_as_it_was(saved: Path, damage: str) -> None:
    victim = _chunk_files(saved)[-2]
    if damage == "flip":
        raw = bytearray(victim.read_bytes())
        raw[10] ^= 0x40
        victim.write_bytes(bytes(raw))
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:100])
    else:
        victim.unlink()
    d = _dict()
    d.initialize(seed=2)
    before = _snapshot(d)
    with pytest.raises(errors.CorruptCheckpointError):
        d.load(saved)
    _unchanged(d, before)


@pytest.mark.timeout(60)
def test_io_error_while_reading_leaves_every_parameter_as_it_was(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paramarena.storage.zarr import local

    calls = {"n": 0}
    real = os.readv

    def flaky(fd: int, buffers: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(5, "Input/output error")
        return real(fd, buffers)

    monkeypatch.setattr(local.os, "readv", flaky)
    d = _dict()
    d.initialize(seed=2)
    before = _snapshot(d)
    with pytest.raises(OSError, match="Input/output error"):
        d.load(saved)
    _unchanged(d, before)


@pytest.mark.timeout(60)
def test_shape_mismatch_in_a_later_parameter_changes_nothing(tmp_path: Path) -> None:
    other = _dict([*SHAPES[:-1], (7, 5)])
    other.initialize(seed=1)
    path = tmp_path / "other.zarr"
    other.save(path)
    d = _dict()
    d.initialize(seed=2)
    before = _snapshot(d)
    with pytest.raises(errors.ShapeMismatchError, match="net_p4_weight"):
        d.load(path)
    _unchanged(d, before)


@pytest.mark.timeout(60)
def test_dtype_mismatch_and_missing_array_change_nothing(tmp_path: Path) -> None:
    other = _dict()
    other["net_p3_weight"].cast("float64")
    other.initialize(seed=1)
    path = tmp_path / "f64.zarr"
    other.save(path)
    d = _dict()
    d.initialize(seed=2)
    before = _snapshot(d)
    with pytest.raises(errors.DTypeMismatchError):
        d.load(path)
    _unchanged(d, before)
    short = _dict(SHAPES[:3])
    short.initialize(seed=1)
    short_path = tmp_path / "short.zarr"
    short.save(short_path)
    with pytest.raises(errors.MissingParameterError):
        d.load(short_path)
    _unchanged(d, before)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("suffix", [".npz", ".params"])
def test_corrupt_file_of_other_formats_changes_nothing(tmp_path: Path, suffix: str) -> None:
    src = _dict()
    src.initialize(seed=1)
    path = tmp_path / f"ckpt{suffix}"
    src.save(path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 :] = bytes(len(raw) - len(raw) // 2)  # zero the second half
    path.write_bytes(bytes(raw))
    d = _dict()
    d.initialize(seed=2)
    before = _snapshot(d)
    with pytest.raises(errors.ParamarenaError):
        d.load(path)
    for name, (_, values) in before.items():
        np.testing.assert_array_equal(d[name].data(), values)


@pytest.mark.timeout(60)
def test_partly_initialized_dict_keeps_its_values_on_error(saved: Path) -> None:
    victim = _chunk_files(saved)[-1]
    victim.unlink()
    d = _dict()
    d["net_p1_weight"].initialize(seed=3)
    value = d["net_p1_weight"].data().copy()
    with pytest.raises(errors.CorruptCheckpointError):
        d.load(saved)
    np.testing.assert_array_equal(d["net_p1_weight"].data(), value)
    assert all(d[n]._data is None for n in d if n != "net_p1_weight")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", [0, -1])
def test_a_chunk_file_changed_between_check_and_read_leaves_every_parameter(
    saved: Path, which: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check pass passes, then a chunk file is replaced (same bytes, a new file): the
    read must notice before writing anything."""
    import shutil

    from paramarena.storage.zarr import checkpass

    victim = _chunk_files(saved)[which]
    real = checkpass.changed
    calls = {"n": 0}

    def replace_then_restat(*args: Any, **kwargs: Any) -> Any:
        # after the check pass, before the stat of every checked file (either in-place path)
        calls["n"] += 1
        twin = victim.with_name("twin")
        shutil.copyfile(victim, twin)
        os.replace(twin, victim)
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpass, "changed", replace_then_restat)
    d = _dict()
    d.initialize(seed=2)
    before = _snapshot(d)
    with pytest.raises(errors.CorruptCheckpointError, match="changed between the check and"):
        d.load(saved)
    assert calls["n"] == 1  # one check pass, inside the load of that version
    _unchanged(d, before)
    monkeypatch.setattr(checkpass, "changed", real)
    d.load(saved)  # the replaced file holds the same bytes: a new load reads it
    ref = _dict()
    ref.load(saved)
    for name, p in d.items():
        np.testing.assert_array_equal(p.data(), ref[name].data())
