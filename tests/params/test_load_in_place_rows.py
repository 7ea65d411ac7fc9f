"""``ParameterDict.load`` into initialized parameters, gathered where they are (``inplace_rows``).

When every parameter is initialized in its dict's arena (a pending row or a live view) with
the stored shape and dtype on one CPU context, the checkpoint is checked first and then
gathered straight into the parameters' memory. The values must be those of the general path
(and of a fresh load), the gradients, arrays and hooks as the general path leaves them, and
any damage must raise before a single parameter changes. Anything unusual takes the general
path.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import pytest

from paramarena import errors
from paramarena.params import inplace_rows
from paramarena.params.parameter_dict import ParameterDict
from paramarena.storage.columns import inspect_columns

N = 3000


def _dict(n: int = N, seed: int | None = 1, split: bool = False) -> ParameterDict:
    """Small parameters of two shapes, some float16; ``split``: two initializes (segments)."""
    d = ParameterDict("net_")
    for i in range(n if not split else n // 2):
        _declare(d, i)
    if seed is None:
        return d
    d.initialize(seed=seed)
    if split:
        # fill the float32 segment: the second initialize takes a new one
        from paramarena.devices.context import Context

        arena = d._storage.data.arena(Context("cpu", 0), np.dtype(np.float32))
        seg = arena._segments[-1]
        if seg.capacity > seg.used:
            arena.allocate((seg.capacity - seg.used,))
        for i in range(n // 2, n):
            _declare(d, i)
        with warnings.catch_warnings():  # the first half is initialized already
            warnings.simplefilter("ignore", UserWarning)
            d.initialize(seed=seed + 100)
    return d


def _declare(d: ParameterDict, i: int) -> None:
    shape = (16,) if i % 2 else (4, 4)
    d.get(f"w{i}", shape=shape, dtype="float16" if i % 7 == 0 else "float32")


def _chunk_files(path: Path) -> list[Path]:
    return sorted(path.glob("v*/packed_float32/c/*"), key=lambda f: int(f.name))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "c.zarr"
    _dict(seed=5).save(path, chunk_bytes=16 << 10)
    assert len(_chunk_files(path)) > 5
    return path


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the loads that took the in-place gather."""
    calls = {"n": 0}
    real = inplace_rows.load_in_place

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return real(*args, **kwargs)

    from paramarena.params import dict_loading

    monkeypatch.setattr(dict_loading, "load_in_place", counted)
    return calls


def _general(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every load to the general (per-view) path."""
    from paramarena.params import dict_loading

    monkeypatch.setattr(dict_loading, "in_place_targets", lambda *a, **k: None)


def _touch(d: ParameterDict, how: str) -> None:
    """Make some parameters' arrays: none, all, or a mix (data only, gradients too)."""
    for i, p in enumerate(d.values()):
        if how in ("made", "settled") or (how == "mixed" and i % 3 == 0):
            p.data()
        elif how == "mixed" and i % 3 == 1:
            p.grad()[...] = 2.5  # gradients made and set: a load leaves them
    if how == "settled":  # the views entered in their segments' books
        for arena in d._storage.data.arenas():
            for seg in arena._segments:
                assert seg.by_id


def _arena_bytes(d: ParameterDict) -> list[bytes]:
    """Every data segment's bytes (what a pending row holds, without making a view)."""
    return [
        bytes(memoryview(buf).cast("B"))
        for arena in d._storage.data.arenas()
        for buf in arena.segments()
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["pending", "made", "settled", "mixed"])
@pytest.mark.parametrize("split", [False, True])
def test_values_are_a_fresh_loads_and_arrays_and_gradients_stay(
    saved: Path, spy: dict[str, int], how: str, split: bool
) -> None:
    fresh = _dict(seed=None)
    fresh.load(saved)
    d = _dict(split=split)
    _touch(d, how)
    pending = [n for n, p in d.items() if p._lazy is not None and p._lazy[0] is not None]
    views = {n: p._data_list[0] for n, p in d.items() if p._data_list is not None}
    assert spy["n"] == 0
    d.load(saved)
    assert spy["n"] == 1
    # pending rows stay pending, made views stay the very arrays
    assert [n for n, p in d.items() if p._lazy is not None and p._lazy[0] is not None] == pending
    if how in ("made", "settled"):
        assert not pending
    elif not split:  # (a second initialize makes the first one's views)
        assert len(pending) == (len(d) if how == "pending" else len(d) // 3)
    for i, (name, p) in enumerate(d.items()):
        if name in views:
            assert p.data() is views[name]
        np.testing.assert_array_equal(p.data(), fresh[name].data())
        assert p.data().dtype == fresh[name].data().dtype
        assert p.init_key == fresh[name].init_key
        expected = 2.5 if how == "mixed" and i % 3 == 1 else 0.0
        assert (p.grad() == expected).all()


def test_several_segments_and_dtypes_give_several_buffers(saved: Path) -> None:
    d = _dict(split=True)
    targets = {n: n for n in d}
    places = inplace_rows.in_place_targets(d, targets, inspect_columns(saved), None, saved, {})
    assert places is not None
    float32 = [t for t in places if t.buffer.dtype == np.float32]
    assert len(float32) >= 2  # the two initializes' segments
    assert sum(len(t.names) for t in places) == len(d)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["pending", "mixed"])
def test_same_values_gradients_and_hooks_as_the_general_path(
    saved: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    initialized_calls: list[tuple[str, Any]],
) -> None:
    d = _dict()
    _touch(d, how)
    initialized_calls.clear()
    d.load(saved)
    fired = [name for name, _ in initialized_calls]
    _general(monkeypatch)
    ref = _dict()
    _touch(ref, how)
    initialized_calls.clear()
    ref.load(saved)
    assert fired == [name for name, _ in initialized_calls]
    for name, p in d.items():
        q = ref[name]
        np.testing.assert_array_equal(p.data(), q.data())
        np.testing.assert_array_equal(p.grad(), q.grad())
        assert p.init_key == q.init_key


def _flip(victim: Path) -> None:
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    victim.write_bytes(bytes(raw))


def _behind_valid_crc(victim: Path) -> None:
    raw = bytearray(victim.read_bytes())
    raw[40] ^= 0x01
    raw[-4:] = crc32c.crc32c(bytes(raw[:-4])).to_bytes(4, "little")
    victim.write_bytes(bytes(raw))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["pending", "mixed"])
@pytest.mark.parametrize("which", [0, 3, -1])
def test_a_corrupt_chunk_changes_no_parameter_and_names_the_file(
    saved: Path, spy: dict[str, int], how: str, which: int
) -> None:
    d = _dict(split=True)
    _touch(d, how)
    before = _arena_bytes(d)
    grads = {n: p._grad_list[0].copy() for n, p in d.items() if p._grad_list is not None}
    victim = _chunk_files(saved)[which]
    _flip(victim)
    with pytest.raises(errors.CorruptCheckpointError, match="crc32c") as caught:
        d.load(saved)
    assert spy["n"] == 1  # the in-place gather refused it
    assert f"c/{victim.name})" in str(caught.value)  # names the chunk file
    assert _arena_bytes(d) == before  # not one byte of any parameter changed
    for name, g in grads.items():
        np.testing.assert_array_equal(d[name].grad(), g)


@pytest.mark.timeout(120)
def test_a_parameter_damaged_behind_a_valid_chunk_crc_changes_no_parameter(
    saved: Path, spy: dict[str, int]
) -> None:
    d = _dict()
    _touch(d, "mixed")
    before = _arena_bytes(d)
    _behind_valid_crc(_chunk_files(saved)[2])
    with pytest.raises(errors.CorruptCheckpointError, match="crc32c checksum mismatch") as caught:
        d.load(saved)
    assert str(saved) in str(caught.value)
    assert "'net_w" in str(caught.value)
    assert spy["n"] == 1
    assert _arena_bytes(d) == before


@pytest.mark.timeout(120)
def test_a_missing_chunk_changes_no_parameter(saved: Path, spy: dict[str, int]) -> None:
    d = _dict()
    before = _arena_bytes(d)
    victim = _chunk_files(saved)[1]
    victim.unlink()
    with pytest.raises(errors.CorruptCheckpointError, match=f"c/{victim.name}"):
        d.load(saved)
    assert spy["n"] == 1
    assert _arena_bytes(d) == before


@pytest.mark.timeout(120)
def test_a_chunk_file_changed_after_the_check_is_refused_before_writing(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import shutil

    from paramarena.storage.zarr import checkpass

    victim = _chunk_files(saved)[2]
    real = checkpass.changed

    def replace_then_restat(*args: Any, **kwargs: Any) -> Any:
        twin = victim.with_name("twin")
        shutil.copyfile(victim, twin)
        os.replace(twin, victim)  # same bytes, another file, after the check
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpass, "changed", replace_then_restat)
    d = _dict()
    before = _arena_bytes(d)
    with pytest.raises(errors.CorruptCheckpointError, match="changed between the check and"):
        d.load(saved)
    assert _arena_bytes(d) == before


@pytest.mark.timeout(120)
def test_parameters_that_need_the_general_path_take_it(
    saved: Path, tmp_path: Path, spy: dict[str, int]
) -> None:
    fresh = _dict(seed=None)
    fresh.load(saved)

    def check(d: ParameterDict) -> None:
        for name, p in d.items():
            np.testing.assert_array_equal(
                p.data(), fresh[name].data().astype(p.data().dtype, copy=False)
            )

    # half the parameters not initialized: the general path (views for the new, in place the
    # rest)
    partial = ParameterDict("net_")
    for i in range(N):
        _declare(partial, i)
    for i, p in enumerate(partial.values()):
        if i % 2:
            p.initialize(seed=i)
    partial.load(saved)
    assert spy["n"] == 0
    check(partial)
    # another dtype, cast: the general path
    cast = ParameterDict("net_")
    for i in range(N):
        shape = (16,) if i % 2 else (4, 4)
        cast.get(f"w{i}", shape=shape, dtype="float64")
    cast.initialize(seed=2)
    cast.load(saved, cast_dtype=True)
    assert spy["n"] == 0
    check(cast)
    # another format: the general path
    npz = tmp_path / "c.npz"
    fresh.save(npz)
    other = _dict()
    other.load(npz)
    assert spy["n"] == 0
    check(other)
    # a context that differs: the general path raises as before
    from paramarena.devices.context import Context

    ctx_dict = _dict()
    with pytest.raises(errors.WrongContextError):
        ctx_dict.load(saved, ctx=Context("cpu", 1))
    assert spy["n"] == 0


@pytest.mark.timeout(60)
def test_one_parameter_under_two_names_takes_the_general_path(
    tmp_path: Path, spy: dict[str, int]
) -> None:
    src = _dict(n=40, seed=5)
    src.get("alias", shape=(4, 4), dtype="float16")
    src["net_alias"].initialize(seed=1)
    src["net_alias"].set_data(src["net_w0"].data())  # the same values under both names
    path = tmp_path / "c.zarr"
    src.save(path)
    d = _dict(n=40)
    d._params["net_alias"] = d["net_w0"]  # the one parameter's places would overlap
    names = list(d.keys())
    targets = dict(zip(names, names, strict=True))
    assert (
        inplace_rows.in_place_targets(d, targets, inspect_columns(path), None, str(path), {})
        is None
    )
    d.load(path)
    assert spy["n"] == 0
    for name, p in d.items():
        np.testing.assert_array_equal(p.data(), src[name].data())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["pending", "made"])
def test_larger_parameters_cut_by_chunks_arrive_whole(
    tmp_path: Path, spy: dict[str, int], how: str
) -> None:
    """Parameters of several KiB (read of checked files straight into their places, no
    window), cut by chunk boundaries, with a few small ones between them."""

    def build(seed: int | None) -> ParameterDict:
        d = ParameterDict("net_")
        for i in range(300):
            d.get(f"w{i}", shape=(3,) if i % 10 == 0 else (1500 + i % 7,))
        if seed is not None:
            d.initialize(seed=seed)
        return d

    path = tmp_path / "big.zarr"
    build(4).save(path, chunk_bytes=50_000)  # not a multiple of any parameter's size
    fresh = build(None)
    fresh.load(path)
    d = build(8)
    _touch(d, how)
    d.load(path)
    assert spy["n"] == 1
    for name, p in d.items():
        np.testing.assert_array_equal(p.data(), fresh[name].data())
