"""The zarr checkpoint backend: layout, commit protocol, corruption detection, partial loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import (
    ConfigurationError,
    CorruptCheckpointError,
    MissingParameterError,
    StorageError,
    UncommittedCheckpointError,
)
from paramarena.storage.zarr.checkpoint import COMMIT_MARKER, MANIFEST


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((64, 33)).astype(np.float32),
        "b": np.arange(7, dtype=np.float32),
        "h": rng.standard_normal(10).astype(np.float16),
        "bf": rng.standard_normal(9).astype(ml_dtypes.bfloat16),
        "i": np.arange(5, dtype=np.int64),
        "m": np.array([True, False, True]),
        "s": np.array(3.5),
        "e": np.zeros((0, 4), dtype=np.float32),
    }


def _version_dir(path: Path) -> Path:
    commit = json.loads((path / COMMIT_MARKER).read_text())
    return path / commit["version"]


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


def test_round_trip_all_dtypes_and_layout(tmp_path: Path) -> None:
    path = tmp_path / "ck.zarr"
    arrays = _arrays()
    storage.save(path, arrays, chunk_bytes=1024)
    loaded = storage.load(path)
    assert isinstance(loaded, dict)
    _assert_same(arrays, loaded)
    version = _version_dir(path)
    packed = sorted(p.name for p in version.iterdir() if p.is_dir())
    # one packed array per dtype, never one per parameter
    assert packed == sorted(
        f"packed_{d}" for d in ["float32", "float16", "bfloat16", "int64", "bool", "float64"]
    )
    manifest = json.loads((version / MANIFEST).read_text())
    names = [e["name"] for e in manifest["parameters"]]
    assert names == list(arrays)
    zarr_json = json.loads((version / "packed_float32" / "zarr.json").read_text())
    assert zarr_json["zarr_format"] == 3
    assert any(c["name"] == "crc32c" for c in zarr_json["codecs"])


def test_unnamed_list_round_trips_as_list(tmp_path: Path) -> None:
    path = tmp_path / "l.zarr"
    storage.save(path, [np.ones(3), np.zeros(2, np.int32)])
    loaded = storage.load(path)
    assert isinstance(loaded, list)
    assert [a.dtype for a in loaded] == [np.float64, np.int32]


def test_partial_load_reads_only_requested(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    arrays = _arrays()
    storage.save(path, arrays, chunk_bytes=256)
    part = storage.load(path, names=["b", "bf"])
    assert list(part) == ["b", "bf"]
    np.testing.assert_array_equal(part["b"], arrays["b"])
    with pytest.raises(MissingParameterError, match="nope"):
        storage.load(path, names=["nope"])


def test_inspect_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "i.zarr"
    storage.save(path, _arrays())
    info = storage.inspect(path)
    assert info.committed
    assert info.format == "zarr"
    assert [a.name for a in info.arrays] == list(_arrays())
    assert {a.name: a.dtype for a in info.arrays}["bf"] == "bfloat16"
    report = storage.verify(path)
    assert report.ok
    assert report.checked == len(_arrays())


def test_uncommitted_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "u.zarr"
    storage.save(path, _arrays())
    (path / COMMIT_MARKER).unlink()
    with pytest.raises(UncommittedCheckpointError, match="commit marker"):
        storage.load(path)
    assert storage.inspect(path).committed is False


def test_missing_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        storage.load(tmp_path / "absent.zarr")


def test_missing_chunk_is_never_read_as_zeros(tmp_path: Path) -> None:
    path = tmp_path / "m.zarr"
    arrays = {"z": np.zeros(1000, np.float32), "w": np.ones(1000, np.float32)}
    storage.save(path, arrays, chunk_bytes=400)
    (_version_dir(path) / "packed_float32" / "c" / "0").unlink()
    with pytest.raises(CorruptCheckpointError, match=r"'z'.*missing"):
        storage.load(path)
    report = storage.verify(path)
    assert not report.ok
    assert report.problems[0][0] == "z"
    # the intact parameter can still be read on its own
    np.testing.assert_array_equal(storage.load(path, names=["w"])["w"], arrays["w"])


def test_corrupted_chunk_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    storage.save(path, {"w": np.arange(100, dtype=np.float32)})
    chunk = _version_dir(path) / "packed_float32" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[10] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=r"c\.zarr"):
        storage.load(path)
    assert not storage.verify(path).ok


def test_tampered_manifest_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    storage.save(path, {"w": np.arange(10, dtype=np.float32)})
    manifest = _version_dir(path) / MANIFEST
    manifest.write_text(manifest.read_text().replace('"size":10', '"size":9'))
    with pytest.raises(CorruptCheckpointError, match="manifest checksum"):
        storage.load(path)


def test_failed_save_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.zarr"
    old = {"w": np.arange(10, dtype=np.float32)}
    storage.save(path, old)
    import paramarena.storage.zarr.location as zl

    real = zl.Location.write_bytes

    def fail_on_commit(self: zl.Location, data: bytes, *parts: str) -> None:
        if parts == (COMMIT_MARKER,):
            raise OSError("disk full")
        real(self, data, *parts)

    monkeypatch.setattr(zl.Location, "write_bytes", fail_on_commit)
    with pytest.raises(OSError, match="disk full"):
        storage.save(path, {"w": np.zeros(10, dtype=np.float32)})
    monkeypatch.undo()
    np.testing.assert_array_equal(storage.load(path)["w"], old["w"])


def test_killed_save_leaves_previous_checkpoint_loadable(tmp_path: Path) -> None:
    path = tmp_path / "k.zarr"
    old = {"w": np.arange(1000, dtype=np.float32)}
    storage.save(path, old)
    script = (
        "import numpy as np, sys\n"
        "from paramarena import storage\n"
        "arrays = {f'p{i}': np.full(2_000_000, i, np.float32) for i in range(40)}\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        f"    storage.save({str(path)!r}, arrays, chunk_bytes=1 << 20)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    loaded = storage.load(path)
    assert storage.verify(path).ok
    assert set(loaded) in ({"w"}, {f"p{i}" for i in range(40)})


def test_bad_options_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Unknown option"):
        storage.save(tmp_path / "o.zarr", {"w": np.ones(2)}, colour="red")
    with pytest.raises(ConfigurationError, match="compression"):
        storage.save(tmp_path / "o.zarr", {"w": np.ones(2)}, compression="lz77")
    with pytest.raises(ConfigurationError, match="storage_options"):
        storage.save(tmp_path / "o.zarr", {"w": np.ones(2)}, storage_options={"key": "k"})


def test_zstd_compression_and_memory_url() -> None:
    arrays = {"w": np.zeros(10_000, np.float32), "b": np.arange(3.0)}
    storage.save("memory://paramarena-test/z.zarr", arrays, compression="zstd")
    _assert_same(arrays, storage.load("memory://paramarena-test/z.zarr"))  # type: ignore[arg-type]


def test_chunk_count_per_100mb(tmp_path: Path) -> None:
    path = tmp_path / "big.zarr"
    arrays = {f"p{i}": np.ones(2_621_440, np.float32) for i in range(10)}  # 100 MiB
    storage.save(path, arrays)
    files = [p for p in path.rglob("*") if p.is_file()]
    assert len(files) <= 10


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_option_round_trips_remote(concurrency: int) -> None:
    arrays = {f"p{i}": np.full(100 + i, i, np.float32) for i in range(20)}
    url = f"memory://conc{concurrency}/m.zarr"
    storage.save(url, arrays, chunk_bytes=512, concurrency=concurrency)
    got = storage.load(url, concurrency=concurrency)
    assert isinstance(got, dict)
    _assert_same(got, arrays)
    assert storage.verify(url, concurrency=concurrency).ok


@pytest.mark.parametrize("bad", [0, -2, 1.5, "4", True])
def test_bad_concurrency_is_a_configuration_error(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="concurrency must be a positive int"):
        storage.save(tmp_path / "c.zarr", {"w": np.zeros(3, np.float32)}, concurrency=bad)
