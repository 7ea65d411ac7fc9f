"""``storage.columns.load_packed``: many small parameters read into one flat buffer by offsets.

A whole packed array of small parameters (local, uncompressed) is streamed chunk file by chunk
file through a staging window and gathered into its destinations by runs of equal sizes
(``storage.zarr.gather``). Every byte must still be checked twice (the chunk's crc32c and the
parameter's), parameters crossing window and chunk boundaries must arrive whole, and any
damage must raise naming the chunk and the parameters.
"""

from __future__ import annotations

import math
from pathlib import Path

import crc32c
import numpy as np
import pytest

from paramarena import errors, storage
from paramarena.storage.columns import PackedTarget, load_packed
from paramarena.storage.zarr import gather, packed_read

#: sizes that repeat (gathered by runs), an empty one, odd ones, and some larger than the
#: window and the chunk used below (cut into pieces)
SIZES = [7, 7, 16, 0, 7, 3, 16, 700, 7, 1, 16, 2500, 5, 5, 5, 7] * 9


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    shapes = [(n,) if i % 3 else ((n // 4, 4) if n % 4 == 0 and n else (n,)) for i, n in
              enumerate(SIZES)]  # fmt: skip
    return {f"p{i}": rng.random(s, dtype=np.float32) for i, s in enumerate(shapes)}


def _chunk_files(path: Path) -> list[Path]:
    return sorted(path.glob("v*/packed_float32/c/*"), key=lambda f: int(f.name))


@pytest.fixture
def saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, np.ndarray]]:
    monkeypatch.setattr(gather, "GATHER_WINDOW", 1000)  # windows that cut parameters
    arrays = _arrays()
    path = tmp_path / "ck.zarr"
    storage.save(path, arrays, chunk_bytes=4096)
    assert len(_chunk_files(path)) > 5
    return path, arrays


def _target(arrays: dict[str, np.ndarray], seed: int = 0) -> PackedTarget:
    """Destinations in a shuffled order, 16-element aligned, with gaps between them."""
    names = list(arrays)
    shapes = [arrays[n].shape for n in names]
    order = np.random.default_rng(seed).permutation(len(names))
    offsets = np.full(len(names), -1, np.int64)
    at = 0
    for i in order.tolist():
        offsets[i] = at
        at += -(-math.prod(shapes[i]) // 16) * 16 + 16
    return PackedTarget(np.full(at, -1.0, np.float32), names, shapes, offsets)


def _views(t: PackedTarget) -> dict[str, np.ndarray]:
    return {n: t.view(i) for i, n in enumerate(t.names)}


@pytest.mark.timeout(60)
def test_every_parameter_arrives_whole_and_the_gaps_stay_untouched(
    saved: tuple[Path, dict[str, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, arrays = saved
    used = []
    real = packed_read.read_gathered
    monkeypatch.setattr(packed_read, "read_gathered", lambda *a: used.append(1) or real(*a))
    t = _target(arrays)
    assert load_packed(path, [t]) == {}
    assert used  # streamed, not read parameter by parameter
    written = np.zeros(t.buffer.size, bool)
    for name, view in _views(t).items():
        np.testing.assert_array_equal(view, arrays[name])
        if view.size:
            start = int(t.offsets[t.names.index(name)])
            written[start : start + view.size] = True
    assert (t.buffer[~written] == -1.0).all()


@pytest.mark.timeout(60)
def test_a_subset_and_other_formats_take_the_general_path(
    saved: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    path, arrays = saved
    some = {n: a for i, (n, a) in enumerate(arrays.items()) if i % 5 == 1}
    t = _target(some, seed=2)
    assert load_packed(path, [t]) == {}
    for name, view in _views(t).items():
        np.testing.assert_array_equal(view, arrays[name])
    npz = tmp_path / "ck.npz"
    storage.save(npz, arrays)
    t = _target(arrays, seed=3)
    assert load_packed(npz, [t]) == {}
    for name, view in _views(t).items():
        np.testing.assert_array_equal(view, arrays[name])


def test_arrays_stored_with_another_shape_come_back_apart(
    saved: tuple[Path, dict[str, np.ndarray]],
) -> None:
    path, arrays = saved
    t = _target(arrays)
    shapes = list(t.shapes)
    shapes[1] = (1, *shapes[1])  # the same size, another shape: not read into the buffer
    t = PackedTarget(t.buffer, t.names, shapes, t.offsets)
    other = load_packed(path, [t])
    assert list(other) == ["p1"]
    np.testing.assert_array_equal(other["p1"], arrays["p1"])
    assert (t.view(1) == -1.0).all()
    np.testing.assert_array_equal(t.view(2), arrays["p2"])


@pytest.mark.parametrize("where", ["overlap", "outside", "negative"])
def test_destinations_outside_the_buffer_or_overlapping_are_refused_before_reading(
    saved: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, where: str
) -> None:
    path, arrays = saved
    npz = tmp_path / "ck.npz"
    storage.save(npz, arrays)
    t = _target(arrays)
    offsets = t.offsets.copy()
    if where == "overlap":
        offsets[5] = offsets[4] + 1  # two parameters in one place
    elif where == "outside":
        offsets[7] = t.buffer.size - 2  # runs past the end
    else:
        offsets[2] = -16
    bad = PackedTarget(t.buffer, t.names, t.shapes, offsets)
    for source in (path, npz):
        with pytest.raises(errors.ParameterValueError, match="load_packed: "):
            load_packed(source, [bad])
        assert (t.buffer == -1.0).all()


def _damage(victim: Path, how: str) -> None:
    raw = bytearray(victim.read_bytes())
    if how == "flip":
        raw[len(raw) // 2] ^= 0x10
    elif how == "trailer":
        raw[-1] ^= 0x01
    elif how == "padding":
        raw[-5] ^= 0x01
    elif how == "truncate":
        raw = raw[:100]
    elif how == "longer":
        raw += b"\0"
    if how == "delete":
        victim.unlink()
    else:
        victim.write_bytes(bytes(raw))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["flip", "trailer", "padding", "truncate", "longer", "delete"])
def test_a_damaged_chunk_raises_naming_the_chunk_and_its_parameters(
    saved: tuple[Path, dict[str, np.ndarray]], how: str
) -> None:
    path, arrays = saved
    victim = _chunk_files(path)[-1 if how == "padding" else 2]
    _damage(victim, how)
    with pytest.raises(errors.CorruptCheckpointError, match=f"chunk {victim.name} ") as caught:
        load_packed(path, [_target(arrays)])
    message = str(caught.value)
    version = victim.parent.parent.parent.name
    assert f"(file {version}/packed_float32/c/{victim.name})" in message
    assert "'p" in message  # names parameters held by the chunk


@pytest.mark.timeout(60)
def test_a_parameter_damaged_behind_a_valid_chunk_crc_raises(
    saved: tuple[Path, dict[str, np.ndarray]],
) -> None:
    path, arrays = saved
    victim = _chunk_files(path)[1]
    raw = bytearray(victim.read_bytes())
    raw[40] ^= 0x01
    raw[-4:] = crc32c.crc32c(bytes(raw[:-4])).to_bytes(4, "little")
    victim.write_bytes(bytes(raw))
    with pytest.raises(errors.CorruptCheckpointError, match="crc32c checksum mismatch"):
        load_packed(path, [_target(arrays)])


@pytest.mark.timeout(120)
def test_a_damaged_chunk_of_many_small_parameters_fails_a_fresh_dict_load(
    tmp_path: Path,
) -> None:
    import paramarena as pa

    def build() -> pa.ParameterDict:
        d = pa.ParameterDict("net_")
        for i in range(20000):
            d.get(f"w{i}", shape=(16,) if i % 2 else (4, 4))
        return d

    src = build()
    src.initialize(seed=3)
    path = tmp_path / "many.zarr"
    src.save(path, chunk_bytes=256 << 10)
    victim = sorted(path.glob("v*/packed_float32/c/*"), key=lambda f: int(f.name))[1]
    raw = bytearray(victim.read_bytes())
    raw[12345] ^= 0x40
    victim.write_bytes(bytes(raw))
    fresh = build()
    with pytest.raises(errors.CorruptCheckpointError, match=f"chunk {victim.name} ") as caught:
        fresh.load(path)
    assert "more" in str(caught.value)  # thousands of parameters: the message stays short
    assert len(str(caught.value)) < 4000
    assert all(p._data is None for p in fresh.values())  # all or nothing
    ok = tmp_path / "ok.zarr"
    src.save(ok)
    fresh.load(ok)  # the dict is still usable, and loads
    for name, p in src.items():
        np.testing.assert_array_equal(fresh[name].data(), p.data())


@pytest.mark.parametrize("dtype", ["bfloat16", "bool", "int8", "float64", "complex64"])
def test_every_dtype_is_gathered_bit_for_bit(tmp_path: Path, dtype: str) -> None:
    from paramarena.storage.zarr.reader import logical_dtype

    np_dtype = logical_dtype(dtype)
    rng = np.random.default_rng(5)
    arrays = {
        f"a{i}": rng.integers(0, 2 if dtype == "bool" else 100, n).astype(np_dtype)
        for i, n in enumerate(SIZES[:48])
    }
    other = {f"f{i}": rng.random(n, dtype=np.float32) for i, n in enumerate(SIZES[:20])}
    path = tmp_path / "d.zarr"
    storage.save(path, {**arrays, **other}, chunk_bytes=512)
    mine, theirs = _target(arrays), _target(other, seed=1)
    mine = PackedTarget(np.zeros(mine.buffer.size, np_dtype), mine.names, mine.shapes, mine.offsets)
    assert load_packed(path, [mine, theirs]) == {}
    for name, view in {**_views(mine), **_views(theirs)}.items():
        want = arrays.get(name, other.get(name))
        assert view.dtype == want.dtype
        assert view.tobytes() == want.tobytes()
