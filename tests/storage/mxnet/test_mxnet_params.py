"""MXNet .params backend: every fixture, byte-identical writing, legacy layouts, corruption."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from paramarena import storage
from paramarena.errors import (
    CheckpointError,
    ConfigurationError,
    MissingParameterError,
    ParameterTypeError,
    ParameterValueError,
)
from paramarena.storage.mxnet import format as mxnet_format
from paramarena.storage.mxnet.format import parse_headers
from paramarena.storage.mxnet.writer import write_params

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mxnet"
DENSE_FIXTURES = [
    "checkpoint-0000",
    "gluon_paramarena_full",
    "gluon_paramarena_stripped",
    "ndarray_all_dtypes",
    "ndarray_empty_dict",
    "ndarray_list",
    "ndarray_single",
]
ALL_FIXTURES = [*DENSE_FIXTURES, "ndarray_sparse"]
CRAFTED = ["legacy_v1_magic", "legacy_v0_uint32_shape", "v2_gpu1_context"]


def expected_arrays(stem: str) -> dict[str, np.ndarray] | list[np.ndarray]:
    """The fixture's .npz, following tests/fixtures/mxnet/README.md conventions."""
    with np.load(FIXTURES / f"{stem}.npz", allow_pickle=False) as npz:
        files = list(npz.files)
        if "__keys__" in files:
            keys = [str(k) for k in npz["__keys__"]]
            return {k: npz[k] if k in files else npz[f"{k}.dense"] for k in keys}
        arrays = [k for k in files if k.startswith("arr_")]
        return [npz[f"arr_{i}"] for i in range(len(arrays))]


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes()


def encode(arrays: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    write_params(buf, arrays, **kwargs)
    return buf.getvalue()


def write_file(tmp_path: Path, data: bytes, name: str = "f.params") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def record_v2(arr: np.ndarray, flag: int, magic: int = mxnet_format.MAGIC_V2) -> bytes:
    head = struct.pack(f"<Iii{arr.ndim}q", magic, 0, arr.ndim, *arr.shape)
    return head + struct.pack("<iii", 1, 0, flag) + arr.tobytes()


def file_of(records: list[bytes], names: list[str] | None = None) -> bytes:
    out = struct.pack("<QQQ", 0x112, 0, len(records)) + b"".join(records)
    names = names or []
    out += struct.pack("<Q", len(names))
    for n in names:
        out += struct.pack("<Q", len(n.encode())) + n.encode()
    return out


# --------------------------------------------------------------------- fixtures from MXNet


@pytest.mark.parametrize("stem", ALL_FIXTURES)
def test_fixture_loads_to_its_npz(stem: str) -> None:
    loaded = storage.load(FIXTURES / f"{stem}.params")
    expected = expected_arrays(stem)
    assert type(loaded) is type(expected)
    if isinstance(expected, dict):
        assert isinstance(loaded, dict)
        assert list(loaded) == list(expected)  # on-disk order
        for name, arr in expected.items():
            assert_same(loaded[name], arr)
    else:
        assert isinstance(loaded, list)
        assert len(loaded) == len(expected)
        for got, want in zip(loaded, expected, strict=True):
            assert_same(got, want)


@pytest.mark.parametrize("stem", DENSE_FIXTURES)
def test_dense_fixture_rewrites_byte_identically(stem: str, tmp_path: Path) -> None:
    original = (FIXTURES / f"{stem}.params").read_bytes()
    loaded = storage.load(FIXTURES / f"{stem}.params")
    assert encode(loaded) == original
    storage.save(tmp_path / "out.params", loaded)
    assert (tmp_path / "out.params").read_bytes() == original


def test_empty_dict_file_loads_as_empty_list_like_mxnet() -> None:
    assert storage.load(FIXTURES / "ndarray_empty_dict.params") == []


@pytest.mark.parametrize("stem", CRAFTED)
def test_crafted_legacy_files_load(stem: str) -> None:
    with np.load(FIXTURES / "crafted" / "legacy_expected.npz", allow_pickle=False) as npz:
        expected = npz["a"]
    loaded = storage.load(FIXTURES / "crafted" / f"{stem}.params")
    values = list(loaded.values()) if isinstance(loaded, dict) else loaded
    assert len(values) == 1
    assert_same(values[0], expected)


def test_gpu_context_is_reported_and_loaded_on_cpu() -> None:
    info = storage.inspect(FIXTURES / "crafted" / "v2_gpu1_context.params")
    assert info.metadata["contexts"] == ["gpu(1)"]
    assert isinstance(
        storage.load(FIXTURES / "crafted" / "v2_gpu1_context.params")["g"], np.ndarray
    )


def test_inspect_fixture_versions_and_stypes() -> None:
    info = storage.inspect(FIXTURES / "ndarray_sparse.params")
    assert info.format == "mxnet"
    assert info.named
    assert info.committed
    assert [(a.name, a.stype) for a in info.arrays] == [
        ("rsp", "row_sparse"),
        ("csr", "csr"),
        ("rsp_empty", "row_sparse"),
        ("dense", "default"),
    ]
    assert info.arrays[1].shape == (4, 5)
    legacy = storage.inspect(FIXTURES / "crafted" / "legacy_v0_uint32_shape.params")
    assert legacy.metadata["record_versions"] == ["v0"]
    assert not legacy.named


def test_sparse_error_mode_refuses_sparse_records() -> None:
    with pytest.raises(CheckpointError, match="row_sparse"):
        storage.load(FIXTURES / "ndarray_sparse.params", sparse="error")
    dense_only = storage.load(FIXTURES / "ndarray_sparse.params", names=["dense"], sparse="error")
    assert list(dense_only) == ["dense"]
    with pytest.raises(ConfigurationError, match="sparse"):
        storage.load(FIXTURES / "ndarray_sparse.params", sparse="raw-ish")


# --------------------------------------------------------------------- writing


def test_annotated_example_from_the_spec_is_reproduced() -> None:
    data = encode({"w": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)})
    assert len(data) == 105
    assert data[0x18:0x1C] == bytes.fromhex("c9fa93f9")
    assert data[-9:] == struct.pack("<Q", 1) + b"w"


def test_bfloat16_is_flag_12_with_raw_upper_bits(tmp_path: Path) -> None:
    arr = np.array([1.0, -2.0], dtype=ml_dtypes.bfloat16)
    data = encode({"b": arr})
    parsed = parse_headers(io.BytesIO(data), len(data), "mem")
    assert parsed.records[0].type_flag == 12
    assert data[0x38:0x3C] == bytes.fromhex("803f00c0")  # 1-d record: data at 0x38
    path = write_file(tmp_path, data)
    back = storage.load(path)["b"]
    assert back.dtype == np.dtype(ml_dtypes.bfloat16)
    assert_same(back, arr)


def test_zero_d_arrays_switch_the_file_to_v3_records() -> None:
    arrays = {"s": np.array(2.5, dtype=np.float32), "v": np.ones(3, np.float32)}
    data = encode(arrays)
    parsed = parse_headers(io.BytesIO(data), len(data), "mem")
    assert [r.version for r in parsed.records] == ["v3", "v3"]
    with pytest.raises(ParameterValueError, match="0-d"):
        encode(arrays, np_shape=False)
    forced = encode({"v": np.ones(3, np.float32)}, np_shape=True)
    assert parse_headers(io.BytesIO(forced), len(forced), "m").records[0].version == "v3"


def test_v3_zero_d_and_zero_size_round_trip(tmp_path: Path) -> None:
    arrays = {"s": np.array(7, dtype=np.int64), "z": np.zeros((0, 3), np.float32)}
    path = tmp_path / "np.params"
    storage.save(path, arrays)
    back = storage.load(path)
    assert_same(back["s"], arrays["s"])
    assert_same(back["z"], arrays["z"])


def test_unsupported_dtypes_are_refused_with_the_name() -> None:
    with pytest.raises(ParameterTypeError, match=r"'x'.*int16"):
        encode({"x": np.zeros(2, np.int16)})
    with pytest.raises(ParameterTypeError, match="complex"):
        encode([np.zeros(2, np.complex64)])


def test_big_endian_and_fortran_inputs_write_the_canonical_bytes() -> None:
    base = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert encode({"a": base.astype(">f4")}) == encode({"a": base})
    assert encode({"a": np.asfortranarray(base)}) == encode({"a": base})


def test_list_writes_no_names_and_loads_as_list(tmp_path: Path) -> None:
    arrays = [np.ones(2, np.float32), np.zeros((1, 2), np.int32)]
    path = tmp_path / "l.params"
    storage.save(path, arrays)
    assert path.read_bytes()[-8:] == struct.pack("<Q", 0)
    back = storage.load(path)
    assert isinstance(back, list)
    assert_same(back[1], arrays[1])
    assert list(storage.load(path, names=["arr_1"])) == ["arr_1"]


def test_unknown_save_option_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="compression"):
        storage.save(tmp_path / "x.params", {"a": np.ones(1)}, compression="zstd")


# --------------------------------------------------------------------- legacy and odd layouts


def test_duplicate_names_last_wins_in_first_position(tmp_path: Path) -> None:
    a = np.ones(2, np.float32)
    b = np.full(2, 3, np.float32)
    c = np.zeros(1, np.int32)
    path = write_file(
        tmp_path, file_of([record_v2(a, 0), record_v2(c, 4), record_v2(b, 0)], ["w", "c", "w"])
    )
    back = storage.load(path)
    assert list(back) == ["w", "c"]
    assert_same(back["w"], b)
    assert_same(storage.load(path, names=["w"])["w"], b)


def test_trailing_bytes_are_ignored(tmp_path: Path) -> None:
    data = (FIXTURES / "ndarray_list.params").read_bytes() + b"garbage"
    back = storage.load(write_file(tmp_path, data))
    assert len(back) == 3


def test_names_with_colons_unicode_and_empty(tmp_path: Path) -> None:
    arrays = {"arg:fc1_weight": np.ones(1), "aux:größe/μ": np.zeros(1), "": np.ones(2)}
    path = tmp_path / "n.params"
    storage.save(path, arrays)
    assert list(storage.load(path)) == list(arrays)


def test_v2_zero_d_record_as_mxnet_legacy_wrote_it_is_recovered(tmp_path: Path) -> None:
    # nd.save of nd.array(5.0) in legacy mode: ndim 0 followed by ctx, type and one element.
    rec = struct.pack("<Iii", mxnet_format.MAGIC_V2, 0, 0) + struct.pack("<iii", 1, 0, 0)
    rec += np.float32(5.0).tobytes()
    path = write_file(tmp_path, file_of([rec, record_v2(np.ones(2, np.float32), 0)], ["s", "v"]))
    back = storage.load(path)
    assert_same(back["s"], np.array(5.0, np.float32))
    assert_same(back["v"], np.ones(2, np.float32))


def test_v2_record_ending_after_ndim_0_holds_no_array(tmp_path: Path) -> None:
    rec = struct.pack("<Iii", mxnet_format.MAGIC_V2, 0, 0)
    path = write_file(tmp_path, file_of([rec, record_v2(np.ones(2, np.float32), 0)], ["e", "v"]))
    info = storage.inspect(path)
    assert [a.dtype for a in info.arrays] == ["none", "float32"]
    assert list(storage.load(path, names=["v"])) == ["v"]
    with pytest.raises(CheckpointError, match=r"record 0 \('e'\).*holds no array"):
        storage.load(path)
    report = storage.verify(path)
    assert [p[0] for p in report.problems] == ["e"]


def test_v3_unknown_shape_record_is_empty(tmp_path: Path) -> None:
    rec = struct.pack("<Iii", mxnet_format.MAGIC_V3, 0, -1)
    path = write_file(tmp_path, file_of([rec], ["u"]))
    with pytest.raises(CheckpointError, match="unknown shape"):
        storage.load(path)


def test_v1_and_v0_zero_d_records_load(tmp_path: Path) -> None:
    v1 = struct.pack("<Ii", mxnet_format.MAGIC_V1, 0) + struct.pack("<iii", 1, 0, 4)
    v1 += np.int32(9).tobytes()
    v0 = struct.pack("<I", 0) + struct.pack("<iii", 1, 0, 1) + np.float64(1.5).tobytes()
    back = storage.load(write_file(tmp_path, file_of([v1, v0])))
    assert_same(back[0], np.array(9, np.int32))
    assert_same(back[1], np.array(1.5, np.float64))


def test_flags_8_to_11_are_read(tmp_path: Path) -> None:
    arr = np.array([1, 65535], np.uint16)
    back = storage.load(write_file(tmp_path, file_of([record_v2(arr, 9)])))
    assert_same(back[0], arr)


# --------------------------------------------------------------------- corruption


def test_every_truncation_fails_with_checkpoint_error(tmp_path: Path) -> None:
    data = (FIXTURES / "ndarray_sparse.params").read_bytes()
    path = tmp_path / "t.params"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"t\.params"):
            storage.load(path)


def test_bad_list_magic(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "ndarray_list.params").read_bytes())
    data[0] = 0x13
    with pytest.raises(CheckpointError, match=r"not an MXNet \.params file.*0x113"):
        storage.load(write_file(tmp_path, bytes(data)))
    with pytest.raises(CheckpointError, match="not an MXNet"):
        storage.verify(write_file(tmp_path, bytes(data)))


def test_bad_record_magic_names_record_and_offset(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "ndarray_list.params").read_bytes())
    data[24:28] = struct.pack("<I", 0xDEADBEEF)
    with pytest.raises(
        CheckpointError,
        match=r"record 0 \(starts at byte offset 24\), at byte offset 24: "
        r"bad record magic 0xDEADBEEF",
    ):
        storage.load(write_file(tmp_path, bytes(data)))


@pytest.mark.parametrize("flag", [13, 99, -1])
def test_unknown_type_flag(tmp_path: Path, flag: int) -> None:
    path = write_file(tmp_path, file_of([record_v2(np.ones(2, np.float32), flag)], ["w"]))
    with pytest.raises(
        CheckpointError,
        match=r"record 0 \(starts at byte offset 24\), at byte offset 52: "
        rf"unknown type flag {flag}",
    ):
        storage.load(path)


def test_name_count_must_match(tmp_path: Path) -> None:
    recs = [record_v2(np.ones(1, np.float32), 0), record_v2(np.ones(1, np.float32), 0)]
    path = write_file(tmp_path, file_of(recs, ["only_one"]))
    with pytest.raises(CheckpointError, match="1 names for 2 arrays"):
        storage.load(path)


def test_huge_shape_fails_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = struct.pack("<Iiiqq", mxnet_format.MAGIC_V2, 0, 2, 2**31, 2**31)
    rec += struct.pack("<iii", 1, 0, 0) + b"\0" * 16
    path = write_file(tmp_path, file_of([rec], ["big"]))

    def no_alloc(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("array memory was allocated")

    monkeypatch.setattr(mxnet_format, "_read_array", no_alloc)
    with pytest.raises(
        CheckpointError,
        match=r"record 0 \(starts at byte offset 24\), at byte offset 64: "
        r"data of shape \(2147483648, 2147483648\)",
    ):
        storage.load(path)


def test_claimed_array_count_larger_than_file(tmp_path: Path) -> None:
    path = write_file(tmp_path, struct.pack("<QQQ", 0x112, 0, 10**12) + b"\0" * 16)
    with pytest.raises(CheckpointError, match="claims 1000000000000 arrays"):
        storage.load(path)


def test_sparse_out_of_range_index_reported_by_verify(tmp_path: Path) -> None:
    # row_sparse (3, 2) with one stored row whose index is 7.
    rec = struct.pack("<Ii", mxnet_format.MAGIC_V2, 1)
    rec += struct.pack("<iqq", 2, 1, 2) + struct.pack("<iqq", 2, 3, 2)
    rec += struct.pack("<iii", 1, 0, 0) + struct.pack("<iiq", 6, 1, 1)
    rec += np.ones(2, np.float32).tobytes() + np.int64(7).tobytes()
    path = write_file(tmp_path, file_of([rec, record_v2(np.ones(1, np.float32), 0)], ["r", "d"]))
    report = storage.verify(path)
    assert not report.ok
    assert report.checked == 2
    assert [p[0] for p in report.problems] == ["r"]
    assert "out of range" in report.problems[0][1]


def test_verify_reports_truncation_as_a_problem(tmp_path: Path) -> None:
    data = (FIXTURES / "gluon_paramarena_full.params").read_bytes()
    path = write_file(tmp_path, data[:300])
    report = storage.verify(path)
    assert not report.ok
    assert "truncated" in report.problems[0][1]
    assert storage.verify(FIXTURES / "gluon_paramarena_full.params").ok


# --------------------------------------------------------------------- partial reads


class CountingFile(io.FileIO):
    bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        CountingFile.bytes_read += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = super().readinto(buffer)
        CountingFile.bytes_read += n or 0
        return n or 0


def test_partial_load_reads_only_the_wanted_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = {f"p{i}": np.full((256, 256), i, np.float32) for i in range(8)}
    path = tmp_path / "big.params"
    storage.save(path, arrays)
    import contextlib

    from paramarena.storage.mxnet import backend as mxnet_params

    @contextlib.contextmanager
    def counting_open(uri: str, storage_options: Any = None) -> Any:
        with CountingFile(uri, "rb") as fh:
            yield fh, path.stat().st_size

    monkeypatch.setattr(mxnet_params, "open_read", counting_open)
    CountingFile.bytes_read = 0
    got = storage.load(path, names=["p5"])
    assert_same(got["p5"], arrays["p5"])
    assert CountingFile.bytes_read < 256 * 256 * 4 + 4096
    CountingFile.bytes_read = 0
    info = storage.inspect(path)
    assert len(info.arrays) == 8
    assert CountingFile.bytes_read < 4096
    with pytest.raises(MissingParameterError, match="'nope'"):
        storage.load(path, names=["p1", "nope"])


# --------------------------------------------------------------------- property: round trip

_DTYPES = ["float16", "float32", "float64", "uint8", "int8", "int32", "int64", "bool"]


@st.composite
def array_dicts(draw: st.DrawFn) -> dict[str, np.ndarray]:
    names = draw(st.lists(st.text(max_size=12), max_size=6, unique=True))
    out = {}
    for name in names:
        dtype = draw(st.sampled_from([*_DTYPES, "bfloat16"]))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        if dtype == "bfloat16":
            bits = draw(hnp.arrays(np.uint16, shape))
            out[name] = bits.view(ml_dtypes.bfloat16)
        else:
            out[name] = draw(hnp.arrays(np.dtype(dtype), shape))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array_dicts())
def test_random_dicts_round_trip_bit_exactly(arrays: dict[str, np.ndarray]) -> None:
    data = encode(arrays)
    parsed = parse_headers(io.BytesIO(data), len(data), "mem")
    fh = io.BytesIO(data)
    back = {
        name: mxnet_format.read_record(fh, parsed, i) for i, name in enumerate(parsed.names or ())
    }
    assert list(back) == list(arrays)
    for name, arr in arrays.items():
        assert back[name].dtype == arr.dtype
        assert back[name].shape == arr.shape
        assert back[name].tobytes() == np.ascontiguousarray(arr).tobytes()
    # Re-encoding what was read gives the same bytes.
    assert encode(back) == data


def test_memory_url_round_trip_and_partial_read() -> None:
    pytest.importorskip("fsspec")
    url = "memory://paramarena-mx/ckpt.params"
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.int64)}
    storage.save(url, arrays)
    assert_same(storage.load(url, names=["b"])["b"], arrays["b"])
    assert storage.inspect(url).arrays[0].shape == (2, 3)
    assert storage.verify(url).ok


def test_sparse_record_with_huge_logical_shape_is_refused(tmp_path: Path) -> None:
    # row_sparse claiming 2**40 rows with one stored row: densifying would need terabytes.
    rec = struct.pack("<Ii", mxnet_format.MAGIC_V2, 1)
    rec += struct.pack("<iqq", 2, 1, 2) + struct.pack("<iqq", 2, 2**40, 2)
    rec += struct.pack("<iii", 1, 0, 0) + struct.pack("<iiq", 6, 1, 1)
    rec += np.ones(2, np.float32).tobytes() + np.int64(0).tobytes()
    path = write_file(tmp_path, file_of([rec], ["r"]))
    with pytest.raises(CheckpointError, match=r"record 0 .*more than 2\*\*31 - 1 elements"):
        storage.inspect(path)


_FUZZ_SOURCES = [
    (FIXTURES / f"{stem}.params").read_bytes() for stem in ("ndarray_sparse", "ndarray_list")
] + [(FIXTURES / "crafted" / f"{stem}.params").read_bytes() for stem in CRAFTED]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(range(len(_FUZZ_SOURCES))),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_files_fail_only_with_checkpoint_error(
    source: int, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(_FUZZ_SOURCES[source])
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    fh = io.BytesIO(bytes(data))
    message = "fuzz.params"
    try:
        parsed = parse_headers(fh, len(data), "fuzz.params")
        for i in range(len(parsed.records)):
            mxnet_format.read_record(fh, parsed, i)
    except CheckpointError as exc:  # anything else (IndexError, MemoryError, ...) fails
        message = str(exc)
    assert "fuzz.params" in message
