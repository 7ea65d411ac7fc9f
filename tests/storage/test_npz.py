"""npz storage backend: round trips, bfloat16, atomic saves, clear errors, partial reads."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from paramarena import storage
from paramarena.errors import (
    CheckpointError,
    ConfigurationError,
    CorruptCheckpointError,
    MissingParameterError,
    ParameterTypeError,
    ParameterValueError,
    StorageError,
)
from paramarena.storage import npz as npz_backend


def sample() -> dict[str, np.ndarray]:
    return {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([1.0, -2.5, 3.0], dtype=ml_dtypes.bfloat16),
        "h": np.array([0.5, 2.0], dtype=np.float16),
        "mask": np.array([True, False]),
        "step": np.array(3, dtype=np.int64),
        "empty": np.zeros((0, 5), np.float64),
        "bf0d": np.array(1.5, dtype=ml_dtypes.bfloat16),
    }


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes()


def test_dict_round_trip_keeps_order_and_dtypes(tmp_path: Path) -> None:
    arrays = sample()
    storage.save(tmp_path / "c.npz", arrays)
    back = storage.load(tmp_path / "c.npz")
    assert isinstance(back, dict)
    assert list(back) == list(arrays)
    for name, arr in arrays.items():
        assert_same(back[name], arr)


def test_list_round_trip_loads_as_list(tmp_path: Path) -> None:
    arrays = [np.ones(3, np.float32), np.zeros((2, 2), np.int8)]
    storage.save(tmp_path / "l.npz", arrays)
    back = storage.load(tmp_path / "l.npz")
    assert isinstance(back, list)
    for got, want in zip(back, arrays, strict=True):
        assert_same(got, want)
    with np.load(tmp_path / "l.npz", allow_pickle=False) as raw:
        assert raw.files == ["arr_0", "arr_1"]


def test_file_is_plain_npz_with_bf16_bits_and_json_metadata(tmp_path: Path) -> None:
    storage.save(tmp_path / "c.npz", sample())
    with np.load(tmp_path / "c.npz", allow_pickle=False) as raw:
        assert raw["b"].dtype == np.uint16
        assert raw["b"][0] == 0x3F80  # bfloat16 1.0
        assert sorted(raw.files) == sorted(sample())
    with zipfile.ZipFile(tmp_path / "c.npz") as zf:
        assert zf.comment.startswith(npz_backend.COMMENT_PREFIX)
        meta = json.loads(zf.comment[len(npz_backend.COMMENT_PREFIX) :].decode())
    assert meta["dtypes"] == {"b": "bfloat16", "bf0d": "bfloat16"}
    assert meta["named"] is True


def test_plain_numpy_savez_file_loads_as_dict(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", np.ones(2), np.zeros(3))
    back = storage.load(tmp_path / "plain.npz")
    assert isinstance(back, dict)
    assert list(back) == ["arr_0", "arr_1"]


def test_partial_load_and_missing_names(tmp_path: Path) -> None:
    storage.save(tmp_path / "c.npz", sample())
    part = storage.load(tmp_path / "c.npz", names=["h", "w"])
    assert list(part) == ["h", "w"]
    with pytest.raises(MissingParameterError, match=r"c\.npz.*'nope'"):
        storage.load(tmp_path / "c.npz", names=["w", "nope"])


def test_partial_load_does_not_read_other_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.save(tmp_path / "c.npz", sample())
    read: list[str] = []
    original = npz_backend.NpzBackend._read

    def spy(self: Any, uri: str, npz: Any, name: str, *args: Any) -> np.ndarray:
        read.append(name)
        return original(self, uri, npz, name, *args)

    monkeypatch.setattr(npz_backend.NpzBackend, "_read", spy)
    storage.load(tmp_path / "c.npz", names=["mask"])
    assert read == ["mask"]
    read.clear()
    info = storage.inspect(tmp_path / "c.npz")
    assert read == []
    assert [(a.name, a.shape, a.dtype) for a in info.arrays][:2] == [
        ("w", (3, 4), "float32"),
        ("b", (3,), "bfloat16"),
    ]
    assert info.arrays[0].nbytes == 48
    assert info.format == "npz"
    assert info.committed


def test_missing_file_is_storage_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"nope\.npz.*does not exist"):
        storage.load(tmp_path / "nope.npz")
    with pytest.raises(StorageError, match="directory"):
        storage.load(tmp_path, format="npz")


@pytest.mark.parametrize("cut", [0, 10, 100, -30])
def test_truncated_file_is_checkpoint_error(tmp_path: Path, cut: int) -> None:
    storage.save(tmp_path / "c.npz", sample())
    data = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match=r"t\.npz"):
        storage.load(tmp_path / "t.npz")


def test_unsupported_zip_version_is_checkpoint_error(tmp_path: Path) -> None:
    """zipfile raises NotImplementedError for a "version needed" above 6.3: a clean error."""
    storage.save(tmp_path / "c.npz", sample())
    data = bytearray((tmp_path / "c.npz").read_bytes())
    directory = data.index(b"PK\x01\x02")  # first central directory entry
    data[directory + 6] = 64  # version needed to extract: 6.4
    (tmp_path / "v.npz").write_bytes(bytes(data))
    for operation in (storage.load, storage.inspect, storage.verify):
        with pytest.raises(CheckpointError, match=r"v\.npz"):
            operation(tmp_path / "v.npz")


def test_non_npz_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "text.npz").write_text("hello, I am not a zip archive")
    with pytest.raises(CheckpointError, match=r"text\.npz.*not an npz archive"):
        storage.load(tmp_path / "text.npz")
    np.save(tmp_path / "single.npy", np.ones(3))
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    with pytest.raises(CheckpointError, match="not an npz archive"):
        storage.load(tmp_path / "single.npz")


def test_corrupted_entry_is_named_by_load_and_verify(tmp_path: Path) -> None:
    storage.save(tmp_path / "c.npz", {"a": np.zeros(1000, np.float32), "b": np.ones(4)})
    data = bytearray((tmp_path / "c.npz").read_bytes())
    data[600] ^= 0xFF  # inside a's data
    (tmp_path / "c.npz").write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=r"array 'a'.*CRC"):
        storage.load(tmp_path / "c.npz")
    assert list(storage.load(tmp_path / "c.npz", names=["b"])) == ["b"]
    report = storage.verify(tmp_path / "c.npz")
    assert report.checked == 2
    assert [p[0] for p in report.problems] == ["a"]


def test_verify_ok(tmp_path: Path) -> None:
    storage.save(tmp_path / "c.npz", sample())
    report = storage.verify(tmp_path / "c.npz")
    assert report.ok
    assert report.checked == len(sample())


def test_failed_save_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    storage.save(path, {"a": np.ones(2)})
    before = path.read_bytes()
    with pytest.raises(ParameterTypeError, match="object"):
        storage.save(path, {"a": np.ones(2), "bad": np.array([object()], dtype=object)})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


@pytest.mark.parametrize("how", ["direct", "direct-threaded", "zipfile"])
def test_interrupted_write_leaves_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    from paramarena.storage import npz_write

    path = tmp_path / "c.npz"
    storage.save(path, {"a": np.ones(2)})
    before = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    if how == "zipfile":  # deflated archives are written through zipfile and numpy
        monkeypatch.setattr(np.lib.format, "write_array", boom)
    else:
        monkeypatch.setattr(npz_write.os, "pwritev", boom)
    if how == "direct-threaded":
        monkeypatch.setattr(npz_write, "_THREAD_MIN_BYTES", 0)
    with pytest.raises(StorageError, match=r"c\.npz.*disk full"):
        storage.save(path, {"a": np.zeros(3), "b": np.ones(5)}, compress=how == "zipfile")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def test_save_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="directory"):
        storage.save(tmp_path / "no" / "c.npz", {"a": np.ones(1)})


def test_reserved_name_and_unknown_option(tmp_path: Path) -> None:
    with pytest.raises(ParameterValueError, match="reserved"):
        storage.save(tmp_path / "c.npz", {npz_backend.META_KEY: np.ones(1)})
    with pytest.raises(ParameterValueError, match="NUL"):
        storage.save(tmp_path / "c.npz", {"a\x00b": np.ones(1)})
    with pytest.raises(ConfigurationError, match="'zstd'"):
        storage.save(tmp_path / "c.npz", {"a": np.ones(1)}, zstd=True)
    with pytest.raises(ConfigurationError, match="remote"):
        storage.save(tmp_path / "c.npz", {"a": np.ones(1)}, storage_options={"anon": True})


def test_compressed_save(tmp_path: Path) -> None:
    arrays = {"z": np.zeros(10000, np.float32)}
    storage.save(tmp_path / "c.npz", arrays, compress=True)
    assert (tmp_path / "c.npz").stat().st_size < 5000
    assert_same(storage.load(tmp_path / "c.npz")["z"], arrays["z"])


def test_memory_url_round_trip() -> None:
    pytest.importorskip("fsspec")
    url = "memory://paramarena-test/ckpt.npz"
    storage.save(url, sample())
    back = storage.load(url, names=["w"])
    assert_same(back["w"], sample()["w"])
    assert storage.verify(url).ok
    with pytest.raises(StorageError, match="does not exist"):
        storage.load("memory://paramarena-test/none.npz")


_DTYPES = ["float16", "float32", "float64", "uint8", "int16", "int64", "bool", "complex64"]


@st.composite
def array_dicts(draw: st.DrawFn) -> dict[str, np.ndarray]:
    names = draw(
        st.lists(
            st.text(
                st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                min_size=1,
                max_size=10,
            ),
            max_size=5,
            unique=True,
        ).filter(lambda ns: npz_backend.META_KEY not in ns)
    )
    out = {}
    for name in names:
        dtype = draw(st.sampled_from([*_DTYPES, "bfloat16"]))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        if dtype == "bfloat16":
            out[name] = draw(hnp.arrays(np.uint16, shape)).view(ml_dtypes.bfloat16)
        else:
            out[name] = draw(hnp.arrays(np.dtype(dtype), shape))
    return out


@settings(max_examples=30, deadline=None)
@given(array_dicts())
def test_random_dicts_round_trip(arrays: dict[str, np.ndarray]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.npz"
        storage.save(path, arrays)
        back = storage.load(path)
    assert list(back) == list(arrays)
    for name, arr in arrays.items():
        assert_same(back[name], arr)


def test_header_claiming_more_data_than_the_entry_fails_before_reading(tmp_path: Path) -> None:
    # Large enough that reading the header does not reach the end of the entry (and its CRC).
    storage.save(tmp_path / "c.npz", {"w": np.ones((100, 100), np.float32)})
    data = (tmp_path / "c.npz").read_bytes()
    assert data.count(b"(100, 100)") == 1
    (tmp_path / "c.npz").write_bytes(data.replace(b"(100, 100)", b"(999, 999)"))
    with pytest.raises(CorruptCheckpointError, match=r"'w' claims shape \(999, 999\)"):
        storage.load(tmp_path / "c.npz")
    with pytest.raises(CorruptCheckpointError, match="claims shape"):
        storage.inspect(tmp_path / "c.npz")


def _fuzz_sources() -> list[bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        out = []
        for i, (arrays, kwargs) in enumerate(
            [
                (sample(), {}),
                ([np.ones(5)], {"compress": True}),
            ]
        ):
            path = Path(tmp) / f"{i}.npz"
            storage.save(path, arrays, **kwargs)
            out.append(path.read_bytes())
        return out


_FUZZ = _fuzz_sources()


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(range(len(_FUZZ))),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_archives_fail_only_with_storage_errors(
    source: int, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(_FUZZ[source])
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.npz"
        path.write_bytes(bytes(data))
        for operation in (storage.load, storage.inspect, storage.verify):
            message = "fuzz.npz"
            try:
                operation(path)
            except StorageError as exc:  # anything else (KeyError, MemoryError, ...) fails
                message = str(exc)
            assert "fuzz.npz" in message


def test_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    from paramarena.errors import ParamarenaError

    with pytest.raises(ParamarenaError, match="not valid UTF-8"):
        storage.save(tmp_path / "bad.npz", {"\ud800": np.zeros(2)})
    assert not (tmp_path / "bad.npz").exists()
