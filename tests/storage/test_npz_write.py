"""The npz writer that writes the zip container itself (storage/npz_write.py)."""

from __future__ import annotations

import io
import itertools
import os
import struct
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from paramarena import storage
from paramarena.storage import fileio, npz_write
from paramarena.storage.npz import COMMENT_PREFIX

pytestmark = pytest.mark.timeout(60)


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    base = rng.standard_normal((6, 5, 4)).astype(np.float32)
    return {
        "f4": base,
        "f2": rng.standard_normal(33).astype(np.float16),
        "f8_fortran": np.asfortranarray(rng.standard_normal((7, 3))),
        "strided": base[::2, 1:, ::3],  # neither C- nor Fortran-contiguous
        "big_endian": np.arange(10, dtype=">f4"),
        "i1": np.arange(-5, 5, dtype=np.int8),
        "u8": np.array([0, 2**64 - 1], dtype=np.uint64),
        "c16": np.array([1 + 2j, -3.5j]),
        "bool": np.array([[True, False], [False, True]]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), np.int32),
        "when": np.array(["2026-12-06", "1970-01-01"], dtype="datetime64[D]"),
        "bytes": np.array([b"ab", b"c"]),
        "ünïcode/näme": np.arange(3, dtype=np.int16),
    }


def same_array(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("threaded", [False, True])
def test_written_archive_loads_in_numpy_with_exact_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threaded: bool
) -> None:
    if threaded:
        monkeypatch.setattr(npz_write, "_THREAD_MIN_BYTES", 0)
        monkeypatch.setattr(npz_write, "_WRITEBACK_STEP", 1)  # start writeback after each entry
    want = arrays()
    path = tmp_path / "a.npz"
    storage.save(path, want)
    with np.load(path, allow_pickle=False) as npz:
        assert npz.files == list(want)
        for name, arr in want.items():
            same_array(npz[name], arr)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None  # every entry's CRC-32 and local header check out
        assert zf.comment.startswith(COMMENT_PREFIX)
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    got = storage.load(path)
    assert isinstance(got, dict)
    for name, arr in want.items():
        same_array(got[name], arr)
    assert storage.verify(path).ok


@pytest.mark.parametrize("small_entry", [0, 64, 1 << 20])
@pytest.mark.parametrize("threaded", [False, True])
def test_bytes_identical_to_zipfile_and_numpy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threaded: bool, small_entry: int
) -> None:
    """The direct writer writes exactly what zipfile (force_zip64) + np.lib.format write.

    ``small_entry``: entries up to that many data bytes go as one joined buffer, the others
    as header + the array's memory (0: all the latter; 1 MiB: all joined).
    """
    monkeypatch.setattr(npz_write, "_SMALL_ENTRY", small_entry)
    if threaded:
        monkeypatch.setattr(npz_write, "_THREAD_MIN_BYTES", 0)
    data = arrays()
    data["bf16"] = np.array([1.0, -2.5], dtype=ml_dtypes.bfloat16)
    # same dtype and shape: one .npy header, its CRC-32 computed once and reused
    data["same_a"] = np.arange(40, dtype=np.float32)
    data["same_b"] = np.arange(40, 80, dtype=np.float32)
    data["same_empty"] = np.zeros((0, 3), np.int32)
    direct = io.BytesIO()
    writer = npz_write.StoredZipWriter(direct, 0)
    for name, arr in data.items():
        arr = arr.view(np.uint16) if arr.dtype == ml_dtypes.bfloat16 else arr
        writer.add(name + ".npy", *npz_write.npy_parts(arr))
    writer.finish(b"paramarena:{}")
    reference = io.BytesIO()
    stored = [(n, a.view(np.uint16) if a.dtype == ml_dtypes.bfloat16 else a)
              for n, a in data.items()]  # fmt: skip
    with npz_write.write_with_zipfile(reference, stored, zipfile.ZIP_STORED, lambda n: None) as zf:
        zf.comment = b"paramarena:{}"
    assert direct.getvalue() == reference.getvalue()
    # and the same through a real file with pwritev
    path = tmp_path / "b.npz"
    with open(path, "wb") as fh:
        writer = npz_write.StoredZipWriter(fh, 1 << 30)
        for name, arr in stored:
            writer.add(name + ".npy", *npz_write.npy_parts(arr))
        writer.finish(b"paramarena:{}")
    assert path.read_bytes() == reference.getvalue()


def test_metadata_entry_when_the_comment_is_too_small(tmp_path: Path) -> None:
    names = [f"layer{i:05d}_" + "x" * 40 for i in range(1500)]
    want = {n: np.array([i], dtype=ml_dtypes.bfloat16) for i, n in enumerate(names)}
    path = tmp_path / "m.npz"
    storage.save(path, want)
    with zipfile.ZipFile(path) as zf:
        assert zf.comment == b""
        assert "__paramarena__.npy" in zf.namelist()
        assert zf.testzip() is None
    got = storage.load(path)
    assert isinstance(got, dict)
    assert list(got) == names
    same_array(got[names[7]], want[names[7]])


def test_structured_dtypes_go_through_numpy(tmp_path: Path) -> None:
    rec = np.array([(1, 2.0)], dtype=[("ä", "<i4"), ("b", "<f8")])  # header version 3.0
    with pytest.raises(TypeError, match="structured"):
        npz_write.npy_parts(rec)
    path = tmp_path / "s.npz"
    storage.save(path, {"rec": rec, "plain": np.ones(2)})
    with np.load(path, allow_pickle=False) as npz:
        same_array(npz["rec"], rec)
        same_array(npz["plain"], np.ones(2))


def test_zip64_records_of_entries_past_4_gib(tmp_path: Path) -> None:
    """Entries of 5 GiB at offsets past 4 GiB, in a sparse file: zipfile reads the zip64 fields."""
    when = (0, 33)
    size = 5 << 30
    entries = [(b"a.npy", 0), (b"b.npy", 30 + 5 + 20 + size)]
    crcs = [0x12345678, 0x9ABCDEF0]
    path = tmp_path / "sparse.npz"
    with open(path, "wb") as fh:
        for (name, offset), crc in zip(entries, crcs, strict=True):
            fh.seek(offset)
            fh.write(npz_write.local_header(name, 0, crc, size, when))
        cd_offset = entries[1][1] + 30 + 5 + 20 + size
        directory = b"".join(
            npz_write.central_record(name, 0, crc, size, offset, when)
            for (name, offset), crc in zip(entries, crcs, strict=True)
        )
        fh.seek(cd_offset)
        fh.write(directory + npz_write.end_records(2, cd_offset, len(directory), b"hi"))
    assert os.stat(path).st_blocks * 512 < 1 << 20  # sparse: nothing like 10 GiB on disk
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert zf.comment == b"hi"
    assert [i.filename for i in infos] == ["a.npy", "b.npy"]
    assert [i.file_size for i in infos] == [size, size]
    assert [i.compress_size for i in infos] == [size, size]
    assert [i.header_offset for i in infos] == [0, entries[1][1]]
    assert [i.CRC for i in infos] == crcs
    # the local header's zip64 extra field carries both sizes
    with open(path, "rb") as fh:
        fh.seek(entries[1][1])
        local = fh.read(30 + 5 + 20)
    assert struct.unpack("<LL", local[18:26]) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert struct.unpack("<HHQQ", local[35:]) == (1, 16, size, size)


def test_zip64_end_records_for_many_entries() -> None:
    buffer = io.BytesIO()
    writer = npz_write.StoredZipWriter(buffer, 0)
    header, data = npz_write.npy_parts(np.zeros(0, np.uint8))
    for i in range(70_000):
        writer.add(f"{i}.npy", header, data)
    writer.finish(b"")
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as zf:
        assert len(zf.infolist()) == 70_000
        assert zf.infolist()[-1].filename == "69999.npy"


def test_start_writeback_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "w"
    with open(path, "wb") as fh:
        fh.write(b"x" * 10_000)
        fh.flush()
        fileio.start_writeback(fh.fileno(), 0, 10_000)
        fileio.start_writeback(fh.fileno(), 0, 0)
    assert path.read_bytes() == b"x" * 10_000


def test_without_pwritev_the_file_object_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Platforms without ``os.pwritev`` (Windows) write through the file object: same bytes."""
    want = arrays()
    first = tmp_path / "a.npz"
    storage.save(first, want)
    monkeypatch.delattr(npz_write.os, "pwritev")
    second = tmp_path / "b.npz"
    storage.save(second, want)
    assert second.read_bytes() == first.read_bytes()
    with np.load(second, allow_pickle=False) as npz:
        for name, arr in want.items():
            same_array(npz[name], arr)


def test_error_on_the_calling_thread_drops_the_queued_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save failing between entries (writer thread busy) leaves the old file and no temp."""
    from paramarena.storage import npz as npz_backend

    monkeypatch.setattr(npz_write, "_THREAD_MIN_BYTES", 0)
    monkeypatch.setattr(npz_write, "_BATCH_BYTES", 1)  # every entry its own write
    path = tmp_path / "c.npz"
    storage.save(path, {"old": np.ones(3)})
    before = path.read_bytes()
    calls: list[str] = []
    real = npz_write.npy_parts

    def failing(
        arr: np.ndarray, headers: dict[tuple[object, ...], bytes] | None = None
    ) -> tuple[bytes, np.ndarray]:
        calls.append(str(arr.dtype))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(arr, headers)

    monkeypatch.setattr(npz_backend, "npy_parts", failing)
    with pytest.raises(KeyboardInterrupt):
        storage.save(path, {f"a{i}": np.full(1000, i) for i in range(6)})
    assert len(calls) == 3
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def test_writeback_starts_with_the_first_write_in_doubling_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first write is made on the calling thread; writeback starts right after it, then in
    steps that double up to _WRITEBACK_STEP, and the started ranges cover the file in order."""
    import threading

    monkeypatch.setattr(npz_write, "_THREAD_MIN_BYTES", 0)
    monkeypatch.setattr(npz_write, "_FIRST_BATCH_BYTES", 4096)
    monkeypatch.setattr(npz_write, "_BATCH_BYTES", 16384)
    monkeypatch.setattr(npz_write, "_WRITEBACK_STEP", 65536)
    started: list[tuple[int, int]] = []
    writers: list[int] = []
    real_pwrite = npz_write._pwrite_all

    def pwrite(fd: int, buffers: list[memoryview], offset: int) -> int:
        writers.append(threading.get_ident())
        return real_pwrite(fd, buffers, offset)

    monkeypatch.setattr(npz_write, "_pwrite_all", pwrite)
    monkeypatch.setattr(npz_write, "start_writeback", lambda fd, o, n: started.append((o, n)))
    want = {f"w{i}": np.full(1000, i, np.float32) for i in range(100)}
    path = tmp_path / "w.npz"
    storage.save(path, want)
    assert writers[0] == threading.get_ident()  # the first write: no wait for the thread
    assert writers[1:]
    assert threading.get_ident() not in writers[1:]  # the others: on the writer thread
    assert started[0][0] == 0
    assert 4096 <= started[0][1] < 16384
    for (o1, n1), (o2, n2) in itertools.pairwise(started):
        assert o2 == o1 + n1  # contiguous, in order
        assert n2 >= min(2 * n1, 65536)
    assert max(n for _, n in started) < 2 * 65536
    assert started[-1][0] + started[-1][1] <= path.stat().st_size
    got = storage.load(path)
    assert isinstance(got, dict)
    for name, arr in want.items():
        same_array(got[name], arr)


@pytest.mark.parametrize("works", [True, False])
def test_save_preallocates_the_data_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, works: bool
) -> None:
    """A threaded save allocates the arrays' data bytes up front (a lower bound of the archive):
    the archive is byte for byte the one written without it, also when the allocation fails."""
    want = arrays()
    plain = tmp_path / "plain.npz"
    storage.save(plain, want)  # small: no writer thread, no preallocation
    monkeypatch.setattr(npz_write, "_THREAD_MIN_BYTES", 0)
    calls: list[int] = []

    def allocate(fd: int, nbytes: int) -> bool:
        calls.append(nbytes)
        return fileio.preallocate(fd, nbytes) if works else False

    monkeypatch.setattr(npz_write, "preallocate", allocate)
    path = tmp_path / "pre.npz"
    storage.save(path, want)
    data_bytes = sum(np.ascontiguousarray(a).nbytes for a in want.values())
    assert calls == [data_bytes]
    assert path.read_bytes() == plain.read_bytes()


def test_preallocate_allocates_and_sizes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p"
    with open(path, "wb") as fh:
        assert fileio.preallocate(fh.fileno(), 0) is False
        done = fileio.preallocate(fh.fileno(), 1 << 20)
        if fileio._fallocate_call() is None:  # not Linux: nothing happens
            assert done is False
            return
        if not done:  # pragma: no cover - a filesystem without fallocate
            pytest.skip("the filesystem of tmp_path refuses fallocate")
        size = os.fstat(fh.fileno())
    assert size.st_size == 1 << 20
    assert size.st_blocks * 512 >= 1 << 20  # allocated, not a hole
    assert path.read_bytes() == bytes(1 << 20)  # reads as zeros
