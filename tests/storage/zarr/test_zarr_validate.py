"""zarr checkpoints: every document validated before use, sizes checked against what is stored."""

from __future__ import annotations

import json
import os
import shutil
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import CorruptCheckpointError, StorageError
from paramarena.storage.zarr import validate


def _arrays() -> dict[str, np.ndarray]:
    return {"w": np.arange(12, dtype=np.float32).reshape(2, 6), "b": np.ones(6, np.float32)}


def _saved(tmp_path: Path, **options: Any) -> Path:
    path = tmp_path / "m.zarr"
    storage.save(path, _arrays(), chunk_bytes=16, **options)
    return path


def _version(path: Path) -> Path:
    return path / json.loads((path / "COMMIT").read_text())["version"]


def _edit_manifest(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit the committed manifest and re-sign it in COMMIT, so only validation can object."""
    target = _version(path) / "manifest.json"
    doc = json.loads(target.read_text())
    edit(doc)
    raw = json.dumps(doc).encode()
    target.write_bytes(raw)
    commit = json.loads((path / "COMMIT").read_text())
    commit["manifest_crc32c"] = f"{crc32c.crc32c(raw):08x}"
    (path / "COMMIT").write_text(json.dumps(commit))


def _first(doc: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = doc["parameters"][0]
    return entry


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: _first(d).pop("name"), r"field 'name' is missing"),
        (lambda d: _first(d).update(shape=[-1, 6]), r"field 'shape'"),
        (lambda d: _first(d).update(shape=[0, 2**62], size=0, nbytes=0), r"too large"),
        (lambda d: _first(d).update(shape="2x6"), r"field 'shape'"),
        (lambda d: _first(d).update(size=10**12), r"field 'size'"),
        (lambda d: _first(d).update(offset=-3), r"field 'offset'"),
        (lambda d: _first(d).update(dtype="object"), r"unsupported dtype"),
        (lambda d: _first(d).update(array="../x"), r"plain name"),
        (lambda d: _first(d).update(array="/etc"), r"plain name"),
        (lambda d: d.update(parameters={"w": 1}), r"'parameters' must be a list"),
        (lambda d: d.update(named="yes"), r"'named'"),
        (lambda d: d["parameters"].append(dict(_first(d))), r"appears twice"),
        (lambda d: d.pop("format"), r"field 'format' is missing"),
    ],
)
def test_malformed_manifest_is_a_corrupt_checkpoint_naming_the_field(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = _saved(tmp_path)
    _edit_manifest(path, edit)
    for call in (storage.load, storage.inspect):
        with pytest.raises(CorruptCheckpointError, match=message) as caught:
            call(path)
        assert "manifest.json" in str(caught.value)


def test_consistent_huge_sizes_are_refused_before_allocating(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    n = 10**12

    def huge(doc: dict[str, Any]) -> None:
        _first(doc).update(shape=[n], size=n, nbytes=4 * n)

    _edit_manifest(path, huge)
    meta_path = _version(path) / "packed_float32" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"] = [n + 6]
    meta_path.write_text(json.dumps(meta))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptCheckpointError, match="chunk objects exist"):
            storage.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_parameter_outside_its_packed_array_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    _edit_manifest(path, lambda d: _first(d).update(offset=100))
    with pytest.raises(CorruptCheckpointError, match=r"spans elements \[100, 112\)"):
        storage.load(path)


@pytest.mark.parametrize(
    "document",
    [
        b"{not json",
        b"null",
        json.dumps({"zarr_format": 3, "node_type": "array"}).encode(),
        b'{"unexpected": 1, "zarr_format": 3, "node_type": "array"}',
    ],
)
def test_broken_array_zarr_json_never_leaks_zarr_errors(tmp_path: Path, document: bytes) -> None:
    path = _saved(tmp_path)
    (_version(path) / "packed_float32" / "zarr.json").write_bytes(document)
    with pytest.raises(CorruptCheckpointError, match=r"zarr\.json"):
        storage.load(path)
    report = storage.verify(path)
    assert not report.ok


@pytest.mark.parametrize("codec", [{"name": "blosc"}, {"name": "bytes", "configuration": 7}])
def test_unknown_codec_is_a_corrupt_checkpoint(tmp_path: Path, codec: dict[str, Any]) -> None:
    path = _saved(tmp_path, compression="zstd")
    meta_path = _version(path) / "packed_float32" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"][0] = codec
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CorruptCheckpointError, match="codec"):
        storage.load(path)


def test_broken_group_zarr_json_is_a_corrupt_checkpoint(tmp_path: Path) -> None:
    path = _saved(tmp_path, compression="zstd")
    (_version(path) / "zarr.json").write_text('{"zarr_format": 3}')
    with pytest.raises(CorruptCheckpointError, match="zarr v3 group"):
        storage.load(path)


@pytest.mark.parametrize("version", ["../x", "..", "/tmp", "a/b", "", 7, None])
def test_commit_version_must_be_a_plain_name(tmp_path: Path, version: object) -> None:
    path = _saved(tmp_path)
    outside = tmp_path / "x"
    shutil.copytree(_version(path), outside)  # a readable "version" outside the checkpoint
    commit = json.loads((path / "COMMIT").read_text())
    commit["version"] = version
    (path / "COMMIT").write_text(json.dumps(commit))
    with pytest.raises(CorruptCheckpointError, match="version"):
        storage.load(path)


def test_version_linked_out_of_the_checkpoint_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    version = _version(path)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(version, elsewhere)
    version.symlink_to(elsewhere)
    with pytest.raises(CorruptCheckpointError, match="link"):
        storage.load(path)


def test_chunk_linked_out_of_the_checkpoint_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    chunk = _version(path) / "packed_float32" / "c" / "0"
    secret = tmp_path / "secret"
    secret.write_bytes(chunk.read_bytes())
    chunk.unlink()
    chunk.symlink_to(secret)
    with pytest.raises(CorruptCheckpointError, match="symbolic link"):
        storage.load(path)


@pytest.mark.timeout(20)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("victim", ["chunk", "COMMIT", "manifest", "zarr.json"])
def test_fifo_in_place_of_a_file_never_blocks(tmp_path: Path, victim: str) -> None:
    path = _saved(tmp_path)
    version = _version(path)
    target = {
        "chunk": version / "packed_float32" / "c" / "0",
        "COMMIT": path / "COMMIT",
        "manifest": version / "manifest.json",
        "zarr.json": version / "packed_float32" / "zarr.json",
    }[victim]
    target.unlink()
    os.mkfifo(target)
    with pytest.raises(CorruptCheckpointError, match="not a regular file"):
        storage.load(path)


def test_zip_that_is_not_a_zip_is_a_corrupt_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "m.zarr.zip"
    storage.save(path, _arrays())
    data = bytearray(path.read_bytes())
    data[-22:] = bytes(22)  # the end-of-central-directory record
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="zip"):
        storage.load(path)


@pytest.mark.timeout(20)
def test_zip_with_a_huge_declared_size_fails_fast(tmp_path: Path) -> None:
    directory = _saved(tmp_path)

    def huge(doc: dict[str, Any]) -> None:
        _first(doc).update(shape=[2**31], size=2**31, nbytes=2**33)

    _edit_manifest(directory, huge)
    meta_path = _version(directory) / "packed_float32" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"] = [2**31 + 6]
    meta_path.write_text(json.dumps(meta))
    archive = tmp_path / "m.zarr.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(directory.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(directory).as_posix())
    with pytest.raises(CorruptCheckpointError, match="chunk objects exist"):
        storage.load(archive)


def test_validators_return_typed_records() -> None:
    where = "test"
    commit = validate.commit({"version": "v1-a", "manifest_crc32c": "0123abcd"}, where)
    assert commit == validate.Commit("v1-a", "0123abcd")
    doc = {
        "format": "paramarena-zarr",
        "format_version": 1,
        "parameters": [
            {
                "name": "w",
                "shape": [2, 3],
                "dtype": "bfloat16",
                "array": "packed_bfloat16",
                "offset": 0,
                "size": 6,
                "nbytes": 12,
                "crc32c": "00000000",
            }
        ],
    }
    manifest = validate.manifest(doc, where, {"paramarena-zarr"}, 1)
    assert manifest.entries[0].shape == (2, 3)
    assert manifest.named is True
    with pytest.raises(CorruptCheckpointError, match="newer"):
        validate.manifest({**doc, "format_version": 2}, where, {"paramarena-zarr"}, 1)
    bad = json.loads(json.dumps(doc))
    bad["parameters"][0]["nbytes"] = 6
    with pytest.raises(CorruptCheckpointError, match="'nbytes'"):
        validate.manifest(bad, where, {"paramarena-zarr"}, 1)


def test_missing_checkpoint_is_still_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        storage.load(tmp_path / "absent.zarr")


def test_zip_needing_a_newer_zip_version_is_a_corrupt_checkpoint(tmp_path: Path) -> None:
    # zipfile raises NotImplementedError for it (found by the fuzzer)
    path = tmp_path / "m.zarr.zip"
    storage.save(path, _arrays())
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    data[at + 6] = 255  # "version needed to extract" of the first central-directory entry
    path.write_bytes(bytes(data))
    for call in (storage.load, storage.inspect, storage.verify):
        with pytest.raises(CorruptCheckpointError, match="zip"):
            call(path)


def test_zstd_codec_without_configuration_is_refused(tmp_path: Path) -> None:
    # zarr itself raises ValueError for it (found by the fuzzer)
    path = _saved(tmp_path, compression="zstd")
    meta_path = _version(path) / "packed_float32" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"][1] = {"name": "zstd"}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CorruptCheckpointError, match="codec"):
        storage.load(path)


def test_zip_member_claiming_more_than_the_archive_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    # zipfile would read (and allocate) the claimed gigabyte in one call (found by the fuzzer)
    import struct

    path = tmp_path / "m.zarr.zip"
    storage.save(path, _arrays())
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    while True:
        (name_len,) = struct.unpack("<H", data[at + 28 : at + 30])
        if data[at + 46 : at + 46 + name_len] == b"COMMIT":
            break
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 20 : at + 24] = struct.pack("<I", 2**30)  # compressed size of COMMIT
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptCheckpointError, match="claims"):
            storage.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
