"""The zarr write path: checksums from pieces, staged and direct pieces, writer threads, the
manifest's text and the order of the flushes before ``COMMIT``."""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import crc32c as crc_impl
import ml_dtypes
import numpy as np
import pytest

from paramarena import storage
from paramarena.distributed.crc import crc32c_combine as reference_combine
from paramarena.storage.zarr import direct
from paramarena.storage.zarr.checkpoint import COMMIT_MARKER, MANIFEST
from paramarena.storage.zarr.crc import crc32c_combine, crc32c_concat, crc32c_slices
from paramarena.storage.zarr.manifest import ManifestEntries, PackedGroup, encode_manifest


def _version_dir(path: Path) -> Path:
    return path / json.loads((path / COMMIT_MARKER).read_text())["version"]


def _manifest(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((_version_dir(path) / MANIFEST).read_text())
    return result


# -- crc32c ---------------------------------------------------------------------------------------


def test_crc32c_combine_is_the_crc_of_the_concatenation() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        a = rng.bytes(int(rng.integers(0, 200)))
        b = rng.bytes(int(rng.choice([0, 1, 3, 4, 1000, int(rng.integers(0, 70_000))])))
        got = crc32c_combine(crc_impl.crc32c(a), crc_impl.crc32c(b), len(b))
        assert got == crc_impl.crc32c(a + b)
    zeros = np.zeros(1 << 24, np.uint8)  # a length past the first powers
    head = rng.bytes(17)
    expected = crc_impl.crc32c(zeros, value=crc_impl.crc32c(head))
    assert crc32c_combine(crc_impl.crc32c(head), crc_impl.crc32c(zeros), zeros.size) == expected


@pytest.mark.parametrize("length", [1 << 33, (1 << 40) + 12345, 3 << 31, 123_456_789_012])
def test_crc32c_combine_of_huge_lengths_agrees_with_the_matrix_reference(length: int) -> None:
    assert crc32c_combine(0x12345678, 0x9ABC, length) == reference_combine(
        0x12345678, 0x9ABC, length
    )


def test_crc32c_concat_and_slices() -> None:
    data = np.random.default_rng(4).bytes(5000)
    bounds = [0, 0, 7, 1000, 1001, 4096, 5000]
    crcs = crc32c_slices(memoryview(data), bounds)
    assert crcs == [crc_impl.crc32c(data[a:b]) for a, b in itertools.pairwise(bounds)]
    lengths = [b - a for a, b in itertools.pairwise(bounds)]
    assert crc32c_concat(zip(crcs, lengths, strict=True)) == crc_impl.crc32c(data)


# -- manifest text --------------------------------------------------------------------------------


def _entries(keys: dict[str, int]) -> ManifestEntries:
    names = ["a", 'q"%s\\', "ü\n\x00x", "d", "e%d"]
    shapes: list[tuple[int, ...]] = [(), (3, 4), (0,), (2,), (1, 1, 1)]
    first = direct.PackedColumns([0, 1, 1], [1, 0, 1], [4, 0, 4], [1, 0xFFFFFFFF, 0])
    second = direct.PackedColumns([0, 12], [12, 2], [24, 4], [5, 6], pending=[1])
    groups = [
        PackedGroup("float32", "packed_float32", [0, 2, 4], first),
        PackedGroup("bfloat16", "packed_bfloat16", [1, 3], second),
    ]
    return ManifestEntries(names, shapes, groups, keys)


@pytest.mark.parametrize(
    "keys",
    [{}, {"a": 1, 'q"%s\\': 2**64 - 1, "ü\n\x00x": 0, "d": 5, "e%d": 7}, {"d": 7}],
    ids=["no keys", "every key", "some keys"],
)
def test_manifest_text_is_json_dumps_of_the_entries(keys: dict[str, int]) -> None:
    entries = _entries(keys)
    entries.prepare()
    entries.groups[1].columns.crcs[1] = 0xCAFE  # known only after the writes
    expected = json.dumps(entries.as_dicts(), separators=(",", ":"))
    assert entries.json() == expected
    header = {"format": "paramarena-zarr", "named": True}
    raw = encode_manifest(header, entries)
    assert (
        raw
        == json.dumps({**header, "parameters": entries.as_dicts()}, separators=(",", ":")).encode()
    )
    assert encode_manifest(header, entries.as_dicts()) == raw  # the path of the sharded save
    assert json.loads(raw)["parameters"][3]["crc32c"] == "0000cafe"


def test_saved_manifest_equals_json_dumps_of_its_entries(tmp_path: Path) -> None:
    arrays = {f"p{i}": np.full((i % 3 + 1, 2), i, np.float32) for i in range(50)}
    arrays["big"] = np.arange(40_000, dtype=np.float64)
    storage.save(tmp_path / "m.zarr", arrays, init_keys={"p3": 99, "big": 2**63})
    raw = (_version_dir(tmp_path / "m.zarr") / MANIFEST).read_bytes()
    document = json.loads(raw)
    assert raw == json.dumps(document, separators=(",", ":")).encode()
    entries = {e["name"]: e for e in document["parameters"]}
    assert entries["p3"]["init_key"] == f"{99:016x}"
    assert entries["big"]["init_key"] == f"{2**63:016x}"
    assert "init_key" not in entries["p4"]


# -- staged and direct pieces -------------------------------------------------------------------


def _mixed(rng: np.random.Generator) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for i in range(40):
        n = int(rng.choice([0, 1, 5, 60, 300, 2000]))
        arrays[f"f{i}"] = rng.standard_normal(n).astype(np.float32)
    arrays["w"] = rng.standard_normal((30, 70)).astype(np.float32)
    arrays["h"] = rng.standard_normal(999).astype(np.float16)
    arrays["bf"] = rng.standard_normal(3000).astype(ml_dtypes.bfloat16)
    arrays["m"] = rng.random(5000) > 0.5
    arrays["c"] = (rng.standard_normal(700) + 1j).astype(np.complex64)
    return arrays


@pytest.mark.parametrize(
    ("small", "stage", "chunk_bytes"),
    [(64, 256, 1000), (1, 1, 777), (4096, 1 << 20, 5000), (1 << 30, 300, 4096)],
    ids=["mixed", "all direct", "mostly staged", "all staged, small buffers"],
)
def test_staged_and_direct_pieces_round_trip_byte_identical_to_zarr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: int, stage: int, chunk_bytes: int
) -> None:
    import zarr

    monkeypatch.setattr(direct, "SMALL_BYTES", small)
    monkeypatch.setattr(direct, "STAGE_BYTES", stage)
    path = tmp_path / "m.zarr"
    arrays = _mixed(np.random.default_rng(5))
    storage.save(path, arrays, chunk_bytes=chunk_bytes)
    got = storage.load(path)
    assert isinstance(got, dict)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype, k
        assert got[k].shape == v.shape, k
        assert got[k].tobytes() == v.tobytes(), k
    assert storage.verify(path).ok
    for e in _manifest(path)["parameters"]:
        raw = np.ascontiguousarray(arrays[e["name"]]).tobytes()
        assert e["crc32c"] == f"{crc_impl.crc32c(raw):08x}", e["name"]
    version = _version_dir(path)
    for array_dir in version.glob("packed_*"):
        ours = {p.name: p.read_bytes() for p in (array_dir / "c").iterdir()}
        for data in ours.values():
            assert int.from_bytes(data[-4:], "little") == crc_impl.crc32c(data[:-4])
        group = zarr.open_group(version, mode="r+")
        packed = np.asarray(group[array_dir.name][:])
        for p in (array_dir / "c").iterdir():
            p.unlink()
        group[array_dir.name][:] = packed  # zarr writes every chunk again
        assert {p.name: p.read_bytes() for p in (array_dir / "c").iterdir()} == ours


def test_remote_chunks_of_direct_pieces_equal_local_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fsspec

    monkeypatch.setattr(direct, "SMALL_BYTES", 100)
    arrays = _mixed(np.random.default_rng(6))
    storage.save(tmp_path / "m.zarr", arrays, chunk_bytes=900)
    storage.save("memory://direct/m.zarr", arrays, chunk_bytes=900, concurrency=3)
    got = storage.load("memory://direct/m.zarr")
    assert isinstance(got, dict)
    assert all(got[k].tobytes() == v.tobytes() for k, v in arrays.items())
    fs = fsspec.filesystem("memory")
    version = json.loads(fs.cat_file("/direct/m.zarr/COMMIT"))["version"]
    local = _version_dir(tmp_path / "m.zarr") / "packed_float32" / "c"
    remote = {
        p.rsplit("/", 1)[-1]: fs.cat_file(p)
        for p in fs.ls(f"/direct/m.zarr/{version}/packed_float32/c", detail=False)
    }
    assert remote == {p.name: p.read_bytes() for p in local.iterdir()}


@pytest.mark.parametrize("small", [8, 1 << 20], ids=["direct", "staged"])
def test_big_endian_and_non_contiguous_arrays_are_saved_as_their_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: int
) -> None:
    monkeypatch.setattr(direct, "SMALL_BYTES", small)
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    arrays = {
        "be": np.arange(10, dtype=">f4"),
        "be_int": np.arange(-5, 5, dtype=">i8").reshape(2, 5),
        "t": base.T,
        "strided": base[:, ::2],
        "le": np.arange(3, dtype=np.float32),
    }
    for suffix, options in ((".zarr", {}), ("_z.zarr", {"compression": "zstd"})):
        path = tmp_path / f"m{suffix}"
        storage.save(path, arrays, **options)
        got = storage.load(path)
        assert isinstance(got, dict)
        for k, v in arrays.items():
            np.testing.assert_array_equal(got[k], v)
            assert got[k].dtype == v.dtype.newbyteorder("=")
        assert storage.verify(path).ok


# -- durability -----------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_every_file_and_directory_is_flushed_before_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct, "SMALL_BYTES", 256)
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real_replace(src, dst, *args, **kwargs)
        events.append(("replace", os.fspath(dst)))

    path = tmp_path / "m.zarr"
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    storage.save(path, _mixed(np.random.default_rng(7)), chunk_bytes=2000)
    monkeypatch.undo()
    commit_at = events.index(("replace", str(path / COMMIT_MARKER)))
    flushed = {p for kind, p in events[:commit_at] if kind == "fsync"}
    version = _version_dir(path)
    everything = {str(p) for p in version.rglob("*")} | {str(version), str(path)}
    assert everything - flushed == set()
    chunk_files = [p for p in version.rglob("c/*")]
    assert len(chunk_files) > 4
    # each chunk file is flushed once (by its writer thread), not again by a walk of the tree
    fsyncs = [p for kind, p in events if kind == "fsync"]
    assert all(fsyncs.count(str(p)) == 1 for p in chunk_files)


# -- writer threads -------------------------------------------------------------------------------


def test_writer_threads_bound_the_staged_bytes_in_flight() -> None:
    writers = direct.ChunkFileWriters(writers=2, staged_limit=100)
    release = threading.Event()
    started: list[int] = []

    def job(i: int) -> int:
        started.append(i)
        release.wait(10)
        return i

    try:
        writers.run(job, 0, staged=60)
        submitted = threading.Event()

        def second() -> None:
            writers.run(job, 1, staged=60)  # 120 > 100: waits for the first to end
            submitted.set()

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.2)
        assert not submitted.is_set()
        release.set()
        t.join(10)
        assert submitted.is_set()
        writers.finish()
    finally:
        release.set()
        writers.stop()
    assert sorted(started) == [0, 1]


def test_writer_threads_bound_the_chunks_in_flight() -> None:
    writers = direct.ChunkFileWriters(writers=1, staged_limit=1 << 30)
    running = 0
    most = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.01)
        with lock:
            running -= 1

    futures = [writers.run(job) for _ in range(6)]
    assert len(writers._pending) <= 2  # 2 * writers
    writers.finish()
    assert most == 1
    assert all(f.done() for f in futures)


def test_a_failed_chunk_write_stops_the_others_and_raises(tmp_path: Path) -> None:
    writers = direct.ChunkFileWriters(writers=2)
    pieces = [memoryview(b"abcd")]
    writers.submit(str(tmp_path / "ok"), pieces, 0, 0)
    writers.submit(str(tmp_path / "missing" / "x"), pieces, 0, 0)  # no such directory
    with pytest.raises(FileNotFoundError):
        writers.finish()
    assert (tmp_path / "ok").read_bytes() == b"abcd" + crc_impl.crc32c(b"abcd").to_bytes(
        4, "little"
    )


def test_chunk_crc_pads_with_zeros() -> None:
    pieces = [memoryview(b"ab"), memoryview(b"cdef")]
    crcs, crc = direct.chunk_crc(pieces, 3)
    assert crcs == [crc_impl.crc32c(b"ab"), crc_impl.crc32c(b"cdef")]
    assert crc == crc_impl.crc32c(b"abcdef\0\0\0")


def test_a_save_loads_the_crc32c_extension_without_its_package(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import sys, numpy as np\n"
        "from paramarena import storage\n"
        f"storage.save({str(tmp_path / 'm.zarr')!r}, {{'w': np.arange(9.0)}})\n"
        "print('crc32c' in sys.modules)\n"
        "import crc32c\n"  # the package still imports, sharing the extension module
        "print(crc32c.crc32c(b'abc') == 910901175)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    assert storage.verify(tmp_path / "m.zarr").ok


@pytest.mark.parametrize(("small", "early"), [(1 << 20, True), (64, False)])
def test_the_manifest_is_written_beside_the_chunks_when_every_crc_is_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: int, early: bool
) -> None:
    from paramarena.storage.zarr import writer
    from paramarena.storage.zarr.commit import commit_version
    from paramarena.storage.zarr.location import Location

    monkeypatch.setattr(direct, "SMALL_BYTES", small)
    path = tmp_path / "m.zarr"
    loc = Location(str(path), None)
    arrays = _mixed(np.random.default_rng(8))
    settings = writer.save_settings(str(path), {"chunk_bytes": 3000})
    items, named = writer.save_items(str(path), arrays)
    version, claim = writer.claim_new_version(loc)
    with claim:
        entries = writer.write_version(loc, version, items, settings, False, named)
        assert (entries.manifest_raw is not None) is early  # only staged pieces: all known
        raw = writer.write_manifest(loc, version, entries, named, settings)
        assert (path / version / MANIFEST).read_bytes() == raw
        if early:
            assert raw == entries.manifest_raw
        commit_version(loc, version, raw)
    got = storage.load(path)
    assert isinstance(got, dict)
    assert all(got[k].tobytes() == v.tobytes() for k, v in arrays.items())
    assert storage.verify(path).ok


@pytest.mark.parametrize("starter", ["linux", "none"])
def test_writeback_batches_split_pieces_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, starter: str
) -> None:
    started: list[tuple[int, int]] = []
    if starter == "none":  # no sync_file_range (not Linux): plain writes
        monkeypatch.setattr(direct, "_START_WRITEBACK", [None])
    else:
        monkeypatch.setattr(direct, "_START_WRITEBACK", [lambda fd, o, n: started.append((o, n))])
    monkeypatch.setattr(direct, "WRITEBACK_BYTES", 7)
    data = [b"abc", b"defghijklmno", b"", b"p", b"qrstuvwxyz0123"]
    pieces = [memoryview(d) for d in data]
    path = tmp_path / "chunk"
    crcs = direct._write_chunk_file(str(path), pieces, 5)
    body = b"".join(data) + bytes(5)
    assert path.read_bytes() == body + crc_impl.crc32c(body).to_bytes(4, "little")
    assert crcs == [crc_impl.crc32c(d) for d in data]
    if starter == "linux":  # every 7 bytes, in order, then the rest
        assert started == [(o, min(7, len(body) - o)) for o in range(0, len(body), 7)]
