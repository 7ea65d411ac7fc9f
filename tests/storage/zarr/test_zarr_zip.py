"""One-file ``.zarr.zip`` checkpoints: layout, atomic replacement, errors, CLI and ParameterDict."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

import paramarena as pa
from paramarena import cli, storage
from paramarena.errors import ConfigurationError, CorruptCheckpointError, StorageError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mxnet"


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {
        "w": rng.standard_normal((40, 9)).astype(np.float32),
        "h": rng.standard_normal(7).astype(np.float16),
        "i": np.arange(5, dtype=np.int64),
    }


def test_archive_holds_the_directory_layout_stored_with_commit_last(tmp_path: Path) -> None:
    path = tmp_path / "m.zarr.zip"
    arrays = _arrays()
    storage.save(path, arrays, chunk_bytes=400)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    assert infos[-1].filename == "COMMIT"
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    names = [i.filename for i in infos]
    assert any(n.endswith("/manifest.json") for n in names)
    assert sum("/packed_float32/c/" in n for n in names) > 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zarr.zip"]  # no temp files left
    got = storage.load(path)
    assert isinstance(got, dict)
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)
    assert storage.inspect(path).committed
    assert storage.verify(path).ok


def test_failed_save_keeps_the_old_archive_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "m.zarr.zip"
    storage.save(path, {"w": np.arange(4, dtype=np.float32)})
    before = path.read_bytes()
    with pytest.raises(StorageError, match="not supported"):
        storage.save(path, {"w": np.array(["text"])})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zarr.zip"]


def test_not_a_zip_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.zarr.zip"
    path.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(CorruptCheckpointError, match=r"bad\.zarr\.zip.*not a readable zip"):
        storage.load(path)


def test_missing_archive_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        storage.load(tmp_path / "nope.zarr.zip")


def test_remote_zip_urls_are_refused_with_advice() -> None:
    with pytest.raises(ConfigurationError, match="local files"):
        storage.save("memory://bucket/m.zarr.zip", {"w": np.zeros(2, np.float32)})


def test_cli_convert_params_to_zip_and_verify(tmp_path: Path) -> None:
    src = FIXTURES / "gluon_paramarena_full.params"
    dst = tmp_path / "full.zarr.zip"
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["convert", str(src), str(dst), "--no-progress"], stdout=out, stderr=err) == 0
    assert "(zarr)" in out.getvalue()
    out = io.StringIO()
    assert cli.main(["verify", str(dst)], stdout=out, stderr=err) == 0
    expected = storage.load(src)
    got = storage.load(dst)
    assert isinstance(expected, dict)
    assert isinstance(got, dict)
    assert list(got) == list(expected)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


def test_parameter_dict_round_trip(tmp_path: Path) -> None:
    params = pa.ParameterDict("net_")
    params.get("weight", shape=(8, 4))
    params.get("bias", shape=(8,), init=pa.init.Normal())
    params.initialize(pa.init.Xavier(), seed=5)
    params.save(tmp_path / "net.zarr.zip")
    restored = pa.ParameterDict("net_")
    restored.get("weight", shape=(8, 4))
    restored.get("bias", shape=(8,))
    restored.load(tmp_path / "net.zarr.zip")
    for name in params:
        np.testing.assert_array_equal(restored[name].data(), params[name].data())


def test_uncompressed_save_streams_into_the_archive_without_a_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paramarena.storage.zarr import zip as zarr_zip

    seen: list[list[str]] = []
    real = zarr_zip._ArchiveMembers.put_pieces

    def spy(self: zarr_zip._ArchiveMembers, path: str, pieces: list[memoryview]) -> None:
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        real(self, path, pieces)

    monkeypatch.setattr(zarr_zip._ArchiveMembers, "put_pieces", spy)
    path = tmp_path / "s.zarr.zip"
    storage.save(path, _arrays(), chunk_bytes=400)
    assert seen  # every member went through the archive writer
    assert all(len(names) == 1 and names[0].endswith(".tmp") for names in seen)  # one temp file
    got = storage.load(path)
    assert isinstance(got, dict)
    for k, v in _arrays().items():
        np.testing.assert_array_equal(got[k], v)


def test_compressed_zip_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "c.zarr.zip"
    storage.save(path, _arrays(), compression="zstd")
    got = storage.load(path)
    assert isinstance(got, dict)
    for k, v in _arrays().items():
        np.testing.assert_array_equal(got[k], v)
    assert storage.verify(path).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr.zip"]
