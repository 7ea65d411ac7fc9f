"""Direct chunk I/O of local zarr checkpoints: what zarr reads, partial reads, damage, cleanup."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import CorruptCheckpointError
from paramarena.storage.zarr import local as zl
from paramarena.storage.zarr.checkpoint import COMMIT_MARKER, MANIFEST


def _version_dir(path: Path) -> Path:
    return path / json.loads((path / COMMIT_MARKER).read_text())["version"]


def _wait_for_cleanup() -> None:
    for t in threading.enumerate():
        if t.name == "paramarena-zarr-cleanup":
            t.join()


def _arrays(n: int = 30) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {f"p{i}": rng.standard_normal((i % 7) + 1 + 13 * i).astype(np.float32) for i in range(n)}


def test_directly_written_chunks_are_what_zarr_reads(tmp_path: Path) -> None:
    import zarr

    path = tmp_path / "m.zarr"
    arrays = _arrays()
    storage.save(path, arrays, chunk_bytes=1000)  # many chunks, a padded last one
    group = zarr.open_group(_version_dir(path), mode="r")
    packed = np.asarray(group["packed_float32"][:])
    np.testing.assert_array_equal(packed, np.concatenate([a.ravel() for a in arrays.values()]))
    chunks = sorted((_version_dir(path) / "packed_float32" / "c").iterdir())
    assert len(chunks) == -(-packed.size // group["packed_float32"].chunks[0])


def test_chunk_files_are_byte_identical_to_what_zarr_writes(tmp_path: Path) -> None:
    import zarr

    path = tmp_path / "m.zarr"
    arrays = _arrays()
    storage.save(path, arrays, chunk_bytes=1000)
    chunk_dir = _version_dir(path) / "packed_float32" / "c"
    ours = {p.name: p.read_bytes() for p in chunk_dir.iterdir()}
    group = zarr.open_group(_version_dir(path), mode="r+")
    packed = np.asarray(group["packed_float32"][:])
    for p in chunk_dir.iterdir():
        p.unlink()
    group["packed_float32"][:] = packed  # zarr writes every chunk again
    theirs = {p.name: p.read_bytes() for p in chunk_dir.iterdir()}
    assert theirs == ours
    got = storage.load(path)
    assert isinstance(got, dict)
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)


def test_partial_reads_across_chunk_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "m.zarr"
    arrays = _arrays()
    storage.save(path, arrays, chunk_bytes=256)
    names = ["p29", "p3", "p17", "p0"]
    got = storage.load(path, names=names)
    assert isinstance(got, dict)
    assert list(got) == names
    for k in names:
        np.testing.assert_array_equal(got[k], arrays[k])
        assert got[k].flags.writeable
        assert got[k].flags.owndata or got[k].base is not None


def test_more_pieces_than_iov_max_in_one_chunk(tmp_path: Path) -> None:
    path = tmp_path / "tiny.zarr"
    arrays = {f"t{i}": np.full(3, i, np.float32) for i in range(2 * zl._IOV_MAX + 5)}
    storage.save(path, arrays)
    got = storage.load(path)
    assert isinstance(got, dict)
    assert all(np.array_equal(got[k], v) for k, v in arrays.items())


def test_truncated_chunk_names_the_parameter_and_chunk(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    arrays = {"a": np.arange(100, dtype=np.float32), "b": np.arange(100, 200, dtype=np.float32)}
    storage.save(path, arrays, chunk_bytes=400)
    chunk1 = _version_dir(path) / "packed_float32" / "c" / "1"
    chunk1.write_bytes(chunk1.read_bytes()[:50])
    with pytest.raises(CorruptCheckpointError, match=r"'b'.*chunk 1.*truncated"):
        storage.load(path)
    with pytest.raises(CorruptCheckpointError, match=r"'b'.*chunk 1"):
        storage.load(path, names=["b"])
    np.testing.assert_array_equal(storage.load(path, names=["a"])["a"], arrays["a"])
    report = storage.verify(path)
    assert [name for name, _ in report.problems] == ["b"]


def test_flipped_checksum_trailer_fails_the_whole_chunk(tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    storage.save(path, {"w": np.arange(100, dtype=np.float32)})
    chunk = _version_dir(path) / "packed_float32" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[-1] ^= 0x01
    chunk.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match=r"'w'.*crc32c checksum of the chunk"):
        storage.load(path)


def test_partial_read_of_damaged_data_is_caught_by_the_parameter_checksum(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.zarr"
    arrays = {"a": np.arange(50, dtype=np.float32), "b": np.ones(50, np.float32)}
    storage.save(path, arrays)
    chunk = _version_dir(path) / "packed_float32" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[4 * 60] ^= 0x40  # inside 'b'
    chunk.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match=r"'b'.*crc32c checksum mismatch"):
        storage.load(path, names=["b"])
    np.testing.assert_array_equal(storage.load(path, names=["a"])["a"], arrays["a"])


def test_compressed_local_checkpoints_go_through_zarr(tmp_path: Path) -> None:
    path = tmp_path / "z.zarr"
    arrays = _arrays()
    storage.save(path, arrays, compression="zstd")
    assert zl.raw_layout(str(_version_dir(path) / "packed_float32"), np.dtype(np.float32)) is None
    got = storage.load(path, names=["p5"])
    assert isinstance(got, dict)
    np.testing.assert_array_equal(got["p5"], arrays["p5"])


def test_superseded_versions_are_removed_after_commit(tmp_path: Path) -> None:
    path = tmp_path / "v.zarr"
    for i in range(3):
        storage.save(path, {"w": np.full(10, i, np.float32)})
    _wait_for_cleanup()
    versions = [p.name for p in path.iterdir() if p.name.startswith("v")]
    assert versions == [_version_dir(path).name]
    assert (_version_dir(path) / MANIFEST).exists()
    np.testing.assert_array_equal(storage.load(path)["w"], np.full(10, 2, np.float32))


def test_raw_layout_rejects_unexpected_metadata(tmp_path: Path) -> None:
    path = tmp_path / "m.zarr"
    storage.save(path, {"w": np.arange(4, dtype=np.float32)})
    meta_path = _version_dir(path) / "packed_float32" / "zarr.json"
    directory = str(meta_path.parent)
    assert zl.raw_layout(directory, np.dtype(np.float32)) is not None
    assert zl.raw_layout(directory, np.dtype(np.float64)) is None  # dtype disagrees
    meta = json.loads(meta_path.read_text())
    meta["chunk_key_encoding"] = {"name": "v2", "configuration": {"separator": "."}}
    meta_path.write_text(json.dumps(meta))
    assert zl.raw_layout(directory, np.dtype(np.float32)) is None
    meta["chunk_key_encoding"] = {"name": "default"}
    meta["data_type"] = "no-such-type"
    meta_path.write_text(json.dumps(meta))
    assert zl.raw_layout(directory, np.dtype(np.float32)) is None
    meta_path.write_text("{not json")
    assert zl.raw_layout(directory, np.dtype(np.float32)) is None


def test_remote_chunks_are_byte_identical_to_local_ones(tmp_path: Path) -> None:
    import fsspec

    arrays = _arrays()
    storage.save(tmp_path / "m.zarr", arrays, chunk_bytes=700)
    storage.save("memory://same/m.zarr", arrays, chunk_bytes=700, concurrency=2)
    fs = fsspec.filesystem("memory")
    version = json.loads(fs.cat_file("/same/m.zarr/COMMIT"))["version"]
    local_dir = _version_dir(tmp_path / "m.zarr") / "packed_float32" / "c"
    remote = {
        p.rsplit("/", 1)[-1]: fs.cat_file(p)
        for p in fs.ls(f"/same/m.zarr/{version}/packed_float32/c", detail=False)
    }
    assert remote == {p.name: p.read_bytes() for p in local_dir.iterdir()}
    assert len(remote) > 2


@pytest.mark.parametrize(
    "dtype",
    ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
     "uint32", "uint64", "complex64", "complex128"],
)  # fmt: skip
def test_metadata_documents_equal_what_zarr_writes(tmp_path: Path, dtype: str) -> None:
    import zarr
    from zarr.codecs import Crc32cCodec

    group = zarr.open_group(tmp_path / "ref", mode="w", zarr_format=3)
    group.create_array("a", shape=(10,), chunks=(4,), dtype=dtype, compressors=[Crc32cCodec()],
                       config={"write_empty_chunks": True}, fill_value=0)  # fmt: skip
    theirs = json.loads((tmp_path / "ref" / "a" / "zarr.json").read_text())
    assert zl.array_metadata(10, 4, np.dtype(dtype)) == theirs
    assert json.loads((tmp_path / "ref" / "zarr.json").read_text()) == zl.GROUP_METADATA


def test_uncompressed_saves_do_not_import_zarr(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from paramarena import storage\n"
        f"p = {str(tmp_path / 'm.zarr')!r}\n"
        "storage.save(p, {'w': np.arange(10, dtype=np.float32)})\n"
        "got = storage.load(p)\n"
        "assert storage.verify(p).ok\n"
        "print('zarr' in sys.modules, float(got['w'].sum()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "45.0"]


def test_advance_drops_transferred_bytes_across_buffers() -> None:
    bufs = [memoryview(b"abc"), memoryview(b"de"), memoryview(b"fghi")]
    assert [bytes(b) for b in zl._advance(bufs, 0)] == [b"abc", b"de", b"fghi"]
    assert [bytes(b) for b in zl._advance(bufs, 4)] == [b"e", b"fghi"]
    assert [bytes(b) for b in zl._advance(bufs, 5)] == [b"fghi"]
    assert zl._advance(bufs, 9) == []
