"""The threaded check pass and ``load(check_first=True)``: check all, then read the same files.

``storage.check`` reads each chunk file once, on several threads, and derives each chunk's and
each parameter's crc32c from the crc32c of the pieces; ``load(out=..., check_first=True)``
checks, then reads the very files it checked (same inode, size, times), checking again. Every
damage must be found by the check pass, before any ``out`` array is written, whatever the
number of threads and whether a chunk's crc32c is derived or computed over its bytes.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import pytest

from paramarena import errors, storage
from paramarena.storage.zarr import checkpass, reader, scatter


def _arrays(sizes: list[int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {f"w{i}": rng.random(n, dtype=np.float32) for i, n in enumerate(sizes)}


#: few large parameters (chunk crc32c derived from the pieces) and many small ones per chunk
#: (more than COMBINE_PIECES: chunk crc32c computed over the bytes); the last chunk is padded
LAYOUTS = {
    "large": [3000, 1, 2500, 0, 4100, 777],
    "small": [7] * 600 + [5],
}


def _chunk_files(path: Path) -> list[Path]:
    return sorted(path.glob("v*/packed_float32/c/*"), key=lambda f: int(f.name))


@pytest.fixture(params=sorted(LAYOUTS))
def saved(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = _arrays(LAYOUTS[request.param])
    path = tmp_path / "ck.zarr"
    storage.save(path, arrays, chunk_bytes=4096)
    assert len(_chunk_files(path)) > 3
    return path, arrays


def _damage(victim: Path, how: str) -> None:
    raw = bytearray(victim.read_bytes())
    if how == "flip":
        raw[len(raw) // 2] ^= 0x10
    elif how == "trailer":
        raw[-1] ^= 0x01
    elif how == "padding":  # last chunk: a byte after its valid data, before the crc32c
        raw[-5] ^= 0x01
    elif how == "truncate":
        raw = raw[:100]
    if how == "delete":
        victim.unlink()
    else:
        victim.write_bytes(bytes(raw))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("how", ["flip", "trailer", "padding", "truncate", "delete"])
def test_check_pass_finds_every_damage_with_any_number_of_threads(
    saved: tuple[Path, dict[str, np.ndarray]],
    how: str,
    threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, arrays = saved
    monkeypatch.setattr(checkpass, "CHECK_THREADS", threads)
    storage.check(path)  # intact
    victim = _chunk_files(path)[-1 if how == "padding" else 1]
    _damage(victim, how)
    with pytest.raises(errors.CorruptCheckpointError, match=f"chunk {victim.name} "):
        storage.check(path)
    names = list(arrays)
    out = {n: np.full_like(a, 9.0) for n, a in arrays.items() if a.size}
    with pytest.raises(errors.CorruptCheckpointError, match=f"chunk {victim.name} "):
        storage.load(path, names=names, out=out, check_first=True)
    for n, a in out.items():
        assert (a == 9.0).all(), n  # found before anything was read into out=


def _fix_chunk_crc(chunk: Path) -> None:
    raw = bytearray(chunk.read_bytes())
    raw[-4:] = crc32c.crc32c(bytes(raw[:-4])).to_bytes(4, "little")
    chunk.write_bytes(bytes(raw))


@pytest.mark.timeout(60)
def test_a_parameter_damaged_behind_a_valid_chunk_crc_fails_the_check_pass(
    saved: tuple[Path, dict[str, np.ndarray]],
) -> None:
    path, arrays = saved
    victim = _chunk_files(path)[2]
    raw = bytearray(victim.read_bytes())
    raw[40] ^= 0x01
    victim.write_bytes(bytes(raw))
    _fix_chunk_crc(victim)
    with pytest.raises(errors.CorruptCheckpointError, match="crc32c checksum mismatch"):
        storage.check(path)
    out = {n: np.full_like(a, 9.0) for n, a in arrays.items() if a.size}
    with pytest.raises(errors.CorruptCheckpointError, match="crc32c checksum mismatch"):
        storage.load(path, names=list(arrays), out=out, check_first=True)
    for a in out.values():
        assert (a == 9.0).all()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("threads", [1, 3])
def test_check_first_load_reads_in_place_what_a_plain_load_reads(
    saved: tuple[Path, dict[str, np.ndarray]], threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, arrays = saved
    monkeypatch.setattr(checkpass, "CHECK_THREADS", threads)
    monkeypatch.setattr(scatter, "READ_THREADS", threads)
    names = list(arrays)[1::2]
    out = {n: np.zeros_like(arrays[n]) for n in names}
    got = storage.load(path, names=names, out=out, check_first=True)
    for n in names:
        assert got[n] is out[n]
        np.testing.assert_array_equal(out[n], arrays[n])
    storage.check(path, names=names)


def _replace_with_a_copy(chunk: Path) -> None:
    """The same bytes in a new file (another inode) renamed over the chunk."""
    twin = chunk.with_name(chunk.name + ".twin")
    shutil.copyfile(chunk, twin)
    os.replace(twin, chunk)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("change", ["replaced", "removed", "appended"])
def test_a_chunk_file_changed_between_the_passes_is_detected_before_writing(
    saved: tuple[Path, dict[str, np.ndarray]], change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, arrays = saved
    victim = _chunk_files(path)[2]
    real = reader.check

    def check_then_change(*args: Any, **kwargs: Any) -> Any:
        problems = real(*args, **kwargs)
        if change == "replaced":
            _replace_with_a_copy(victim)
        elif change == "removed":
            victim.unlink()
        else:
            with open(victim, "ab") as f:
                f.write(b"\0")
        return problems

    monkeypatch.setattr(reader, "check", check_then_change)
    out = {n: np.full_like(a, 9.0) for n, a in arrays.items() if a.size}
    with pytest.raises(
        errors.CorruptCheckpointError, match="changed between the check and the read"
    ):
        storage.load(path, names=list(out), out=out, check_first=True)
    for a in out.values():
        assert (a == 9.0).all()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("threads", [1, 2])
def test_a_chunk_file_replaced_during_the_read_pass_is_not_read(
    saved: tuple[Path, dict[str, np.ndarray]], threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, arrays = saved
    monkeypatch.setattr(scatter, "READ_THREADS", threads)
    victim = _chunk_files(path)[-1]
    real = checkpass.changed

    def changed_then_replace(seen: Any) -> list[str]:
        gone = real(seen)
        _replace_with_a_copy(victim)  # after the last look: the read pass must notice
        return gone

    monkeypatch.setattr(checkpass, "changed", changed_then_replace)
    out = {n: np.full_like(a, 9.0) for n, a in arrays.items() if a.size}
    with pytest.raises(errors.CorruptCheckpointError, match="changed since it was checked"):
        storage.load(path, names=list(out), out=out, check_first=True)


def test_identity_tells_a_rewritten_file_from_the_original(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"abc")
    before = scatter.identity(os.stat(f))
    assert scatter.identity(os.stat(f)) == before
    assert checkpass.changed({str(f): before}) == []
    _replace_with_a_copy(f)
    assert checkpass.changed({str(f): before}) == [str(f)]
    assert checkpass.changed({str(tmp_path / "absent"): before}) == [str(tmp_path / "absent")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("window", [7, 64, 1000])
@pytest.mark.parametrize("disjoint", [True, False])
def test_each_piece_gets_its_crc32c_across_window_boundaries(
    tmp_path: Path, window: int, disjoint: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_chunk's per-window feeding against crc32c of each piece's bytes: pieces inside a
    window, across several windows, empty, and (``disjoint=False``) overlapping."""
    monkeypatch.setattr(checkpass, "CHECK_WINDOW", window)
    rng = np.random.default_rng(window)
    cb = 3000
    data = rng.integers(0, 256, cb, dtype=np.uint8).tobytes()
    chunk = tmp_path / "0"
    chunk.write_bytes(data + crc32c.crc32c(data).to_bytes(4, "little"))
    cuts = sorted({0, cb, *rng.integers(0, cb, 60).tolist()})
    spans = list(itertools.pairwise(cuts))
    if not disjoint:
        spans += [(100, 2500), (5, 9), (2999, 3000), (1200, 1201)]
        spans.sort()
    starts, ends = [a for a, _ in spans], [b for _, b in spans]
    got = []
    for whole in [True, False] if disjoint else [False]:
        pieces = checkpass.Pieces(starts, ends, disjoint)
        why, crcs, ident = checkpass.check_chunk(str(chunk), cb, cb, pieces, max(ends), whole)
        assert why is None
        assert ident is not None
        got.append(crcs)
    for crcs in got:
        assert crcs == [crc32c.crc32c(data[a:b]) for a, b in spans]
    raw = bytearray(chunk.read_bytes())
    raw[1500] ^= 1
    chunk.write_bytes(bytes(raw))
    if disjoint:  # the chunk's own crc32c, derived from the pieces' (<= 64 of them) or not
        pieces = checkpass.Pieces(starts, ends, True)
        why, _, _ = checkpass.check_chunk(str(chunk), cb, cb, pieces, cb, True)
        assert why == "crc32c checksum of the chunk failed"
