"""The column-wise manifest validation, the column-wise reader and the streaming check.

Large manifests are validated column by column (entry by entry only to name a bad entry), the
reader hands whole parameters to ``readv``, and ``storage.check`` streams chunk files through
one buffer: each must accept exactly what the entry-by-entry code accepts, and refuse the rest
naming the parameter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import pytest

from paramarena import errors, storage
from paramarena.params.parameter_dict import ParameterDict
from paramarena.storage import session
from paramarena.storage.zarr import manifest_scan, validate
from paramarena.storage.zarr.location import Location

FORMATS = {"paramarena-zarr"}
WHERE = "test manifest"


def _manifest(n: int) -> dict[str, Any]:
    params = []
    offset = 0
    for i in range(n):
        shape = [3, 1 + i % 4] if i % 2 else [1 + i % 5]
        size = int(np.prod(shape))
        params.append(
            {
                "name": f"p{i}",
                "shape": shape,
                "dtype": "float32",
                "array": "packed_float32",
                "offset": offset,
                "size": size,
                "nbytes": 4 * size,
                "crc32c": f"{i * 7919 % 2**32:08x}",
            }
        )
        offset += size
    return {"format": "paramarena-zarr", "format_version": 1, "parameters": params}


def _entry_by_entry(doc: dict[str, Any]) -> list[validate.ManifestEntry]:
    return [validate._entry(p, i, WHERE) for i, p in enumerate(doc["parameters"])]


def test_bulk_validation_gives_the_same_record_as_entry_by_entry() -> None:
    doc = _manifest(2000)
    record = validate.manifest(doc, WHERE, FORMATS, 1)
    assert list(record.entries) == _entry_by_entry(doc)
    assert record.offsets.dtype == np.int64
    assert record.index["p1234"] == 1234


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("shape", [2, -1], "'shape'"),
        ("shape", [True], "'shape'"),
        ("shape", [1] * 33, "'shape'"),
        ("shape", "3", "'shape'"),
        ("size", 4, "'size'"),
        ("size", 2.0, "'size'"),
        ("nbytes", 3, "'nbytes'"),
        ("offset", -1, "'offset'"),
        ("offset", 2**62 + 1, "'offset'"),
        ("offset", 2**70, "'offset'"),
        ("dtype", "float31", "'dtype'"),
        ("dtype", ["float32"], "'dtype'"),
        ("array", "../x", "'array'"),
        ("crc32c", "ABCDEF01", "'crc32c'"),
        ("crc32c", "0123456", "'crc32c'"),
        ("crc32c", 5, "'crc32c'"),
        ("name", 7, "'name'"),
    ],
)
def test_a_bad_entry_among_thousands_is_named(field: str, value: Any, message: str) -> None:
    doc = _manifest(3000)
    victim = doc["parameters"][2345]
    victim[field] = value
    if field == "shape" and isinstance(value, list) and all(type(d) is int for d in value):
        victim["size"] = victim["nbytes"] = 0  # keep only the shape wrong where possible
    with pytest.raises(errors.CorruptCheckpointError, match=message) as info:
        validate.manifest(doc, WHERE, FORMATS, 1)
    assert "2345" in str(info.value)


def test_a_missing_field_and_a_duplicate_name_are_named() -> None:
    doc = _manifest(3000)
    del doc["parameters"][1500]["crc32c"]
    with pytest.raises(errors.CorruptCheckpointError, match=r"p1500.*'crc32c' is missing"):
        validate.manifest(doc, WHERE, FORMATS, 1)
    doc = _manifest(3000)
    doc["parameters"][2999]["name"] = "p17"
    with pytest.raises(errors.CorruptCheckpointError, match="'p17' appears twice"):
        validate.manifest(doc, WHERE, FORMATS, 1)
    doc = _manifest(3000)
    doc["parameters"][5] = ["not", "an", "object"]
    with pytest.raises(errors.CorruptCheckpointError, match="parameter 5"):
        validate.manifest(doc, WHERE, FORMATS, 1)


def test_zero_size_and_huge_shapes_are_checked_exactly() -> None:
    doc = _manifest(100)
    doc["parameters"].append(
        {
            "name": "empty",
            "shape": [0, 2**40],
            "dtype": "float64",
            "array": "packed_float64",
            "offset": 0,
            "size": 0,
            "nbytes": 0,
            "crc32c": "00000000",
        }
    )
    record = validate.manifest(doc, WHERE, FORMATS, 1)
    assert record.shapes[-1] == (0, 2**40)
    doc["parameters"][-1]["shape"] = [0, 2**61, 2**3]  # an empty array numpy cannot describe
    with pytest.raises(errors.CorruptCheckpointError, match="too large"):
        validate.manifest(doc, WHERE, FORMATS, 1)


# -- reading ------------------------------------------------------------------------------------


def _arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i in range(n):
        shape = (i % 7 + 1, 3) if i % 3 else (i % 50,)  # odd sizes; some empty
        dtype = np.float32 if i % 5 else np.float64
        out[f"w{i}"] = rng.standard_normal(shape).astype(dtype)
    return out


def _same(got: Any, want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, a in want.items():
        assert got[name].dtype == a.dtype, name
        assert got[name].shape == a.shape, name
        np.testing.assert_array_equal(got[name], a)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("chunk_bytes", [64, 1000, 1 << 20])
def test_reads_into_out_arrays_across_chunk_boundaries(tmp_path: Path, chunk_bytes: int) -> None:
    arrays = _arrays(300)
    path = tmp_path / "c.zarr"
    storage.save(path, arrays, chunk_bytes=chunk_bytes)
    _same(storage.load(path), arrays)
    names = [n for i, n in enumerate(arrays) if i % 4]
    out = {n: np.full_like(arrays[n], 7) for n in names[::2]}
    got = storage.load(path, names=names, out=out)
    _same(got, {n: arrays[n] for n in names})
    for n, a in out.items():
        assert got[n] is a
    storage.check(path)
    storage.check(path, names=names)


def _damage_inside(path: Path, name: str, element: int = 0) -> None:
    """Change one value of ``name`` and give its chunk a matching crc32c: only the
    parameter's own checksum can tell."""
    manifest_file = next(path.glob("v*/manifest.json"))
    entry = next(
        e for e in json.loads(manifest_file.read_bytes())["parameters"] if e["name"] == name
    )
    array_dir = manifest_file.parent / entry["array"]
    chunk = json.loads((array_dir / "zarr.json").read_bytes())["chunk_grid"]["configuration"][
        "chunk_shape"
    ][0]
    isz = entry["nbytes"] // entry["size"]
    at = (entry["offset"] + element) * isz
    chunk_file = array_dir / "c" / str(at // (chunk * isz))
    raw = bytearray(chunk_file.read_bytes())
    raw[at % (chunk * isz)] ^= 0x01
    raw[-4:] = crc32c.crc32c(bytes(raw[:-4])).to_bytes(4, "little")
    chunk_file.write_bytes(bytes(raw))


@pytest.mark.timeout(120)
def test_a_parameter_damaged_behind_a_valid_chunk_checksum_is_named(tmp_path: Path) -> None:
    arrays = _arrays(400)
    path = tmp_path / "d.zarr"
    storage.save(path, arrays, chunk_bytes=4096)
    _damage_inside(path, "w301")
    for call in (storage.load, storage.check):
        with pytest.raises(errors.CorruptCheckpointError, match="'w301': crc32c checksum mismatch"):
            call(path)
    storage.check(path, names=["w300", "w302"])  # the others are fine
    report = storage.verify(path)
    assert [n for n, _ in report.problems] == ["w301"]


def _dict(n: int) -> ParameterDict:
    d = ParameterDict("net_")
    for i in range(n):
        d.get(f"p{i}_weight", shape=(i % 9 + 1,))
    return d


@pytest.mark.timeout(300)
@pytest.mark.parametrize("damage", ["parameter", "chunk"])
def test_corrupt_10k_parameter_load_names_it_and_leaves_the_dict_untouched(
    tmp_path: Path, damage: str
) -> None:
    src = _dict(10_000)
    src.initialize(seed=1)
    path = tmp_path / "many.zarr"
    src.save(path, chunk_bytes=8192)
    if damage == "parameter":
        _damage_inside(path, "net_p7777_weight")
        expected = "'net_p7777_weight': crc32c checksum mismatch"
    else:
        victim = sorted(path.glob("v*/packed_float32/c/*"), key=lambda f: int(f.name))[-3]
        raw = bytearray(victim.read_bytes())
        raw[17] ^= 0x40
        victim.write_bytes(bytes(raw))
        expected = "crc32c checksum of the chunk failed"
    d = _dict(10_000)
    d.initialize(seed=2)
    before = {n: (p.data(), p.data().copy()) for n, p in d.items()}
    with pytest.raises(errors.CorruptCheckpointError, match=expected):
        d.load(path)
    for name, (array, values) in before.items():
        assert d[name].data() is array
        np.testing.assert_array_equal(array, values)
    fresh = _dict(10_000)
    with pytest.raises(errors.CorruptCheckpointError, match=expected):
        fresh.load(path)
    assert all(p._data is None for p in fresh.values())


def test_check_of_other_formats_loads_in_batches(tmp_path: Path) -> None:
    arrays = _arrays(20)
    path = tmp_path / "a.npz"
    storage.save(path, arrays)
    storage.check(path)
    storage.check(path, names=["w3"])
    with pytest.raises(errors.MissingParameterError):
        storage.check(path, names=["absent"])
    zpath = tmp_path / "a.zarr"
    storage.save(zpath, arrays)
    with pytest.raises(errors.MissingParameterError):
        storage.check(zpath, names=["absent"])


# -- one manifest parse per ParameterDict.load ----------------------------------------------


def test_shared_reads_parse_once_and_never_reuse_other_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.zarr"
    storage.save(path, _arrays(10, seed=1))
    calls = [0]
    real = manifest_scan.read_manifest

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(manifest_scan, "read_manifest", counting)
    with session.shared_reads():
        storage.inspect(path)
        storage.load(path)
        storage.check(path)
        assert calls[0] == 1
        second = _arrays(10, seed=2)
        storage.save(path, second)  # a new version, another manifest
        _same(storage.load(path), second)
        assert calls[0] == 2
    storage.load(path)
    assert calls[0] == 3  # outside the block nothing is kept
    assert session.memo() is None


def test_shared_reads_read_an_unchanged_local_manifest_once_and_a_touched_one_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    path = tmp_path / "s.zarr"
    arrays = _arrays(10, seed=1)
    storage.save(path, arrays)
    (manifest,) = path.glob("v*/manifest.json")
    calls = {"parse": 0, "read": 0}
    real_parse = manifest_scan.read_manifest
    real_read = Location.read_bytes

    def parsing(*args: Any, **kwargs: Any) -> Any:
        calls["parse"] += 1
        return real_parse(*args, **kwargs)

    def reading(self: Any, *parts: str) -> Any:
        if parts and parts[-1] == "manifest.json":
            calls["read"] += 1
        return real_read(self, *parts)

    monkeypatch.setattr(manifest_scan, "read_manifest", parsing)
    monkeypatch.setattr(Location, "read_bytes", reading)
    with session.shared_reads():
        storage.inspect(path)
        _same(storage.load(path), arrays)
        assert calls == {"parse": 1, "read": 1}  # the same file: neither read nor parsed again
        st = os.stat(manifest)
        os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # written since
        _same(storage.load(path), arrays)
        assert calls == {"parse": 2, "read": 2}
        raw = manifest.read_bytes()
        manifest.unlink()
        manifest.write_bytes(raw)  # another file with the same bytes
        _same(storage.load(path), arrays)
        assert calls == {"parse": 3, "read": 3}
        manifest.write_bytes(raw.replace(b'"named":true', b'"named":false'))
        with pytest.raises(errors.CorruptCheckpointError, match="manifest checksum"):
            storage.load(path)  # read again: it no longer matches COMMIT
    assert session.file_identity(str(tmp_path / "none")) is None
    assert session.file_identity(str(tmp_path)) is None  # not a regular file


def test_load_parses_the_manifest_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _dict(50)
    src.initialize(seed=1)
    path = tmp_path / "m.zarr"
    src.save(path)
    calls = [0]
    real = manifest_scan.read_manifest

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(manifest_scan, "read_manifest", counting)
    d = _dict(50)
    d.initialize(seed=2)
    d.load(path)  # inspect, check pass, in-place read
    assert calls[0] == 1
    for name, p in d.items():
        np.testing.assert_array_equal(p.data(), src[name].data())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("chunk_bytes", [1 << 20, 3 << 20, 16 << 20])
def test_large_parameters_are_read_window_by_window(tmp_path: Path, chunk_bytes: int) -> None:
    rng = np.random.default_rng(3)
    arrays = {
        "small": rng.standard_normal(5).astype(np.float32),
        "big": rng.standard_normal((700, 1100)).astype(np.float32),  # ~2.9 MiB
        "tail": rng.standard_normal(300_001).astype(np.float64),
    }
    path = tmp_path / "w.zarr"
    storage.save(path, arrays, chunk_bytes=chunk_bytes)
    out = {n: np.zeros_like(a) for n, a in arrays.items()}
    got = storage.load(path, names=list(arrays), out=out)
    _same(got, arrays)
    _same(storage.load(path), arrays)  # into one new buffer per packed array
    storage.check(path)
    _damage_inside(path, "big", element=700 * 1100 - 3)  # in the last window
    into = lambda p: storage.load(p, names=list(arrays), out=out)  # noqa: E731
    for call in (storage.check, storage.load, into):
        with pytest.raises(errors.CorruptCheckpointError, match="'big': crc32c checksum mismatch"):
            call(path)


@pytest.mark.parametrize(
    "keys",
    [
        ["00000000000000ff", "FFFFFFFFFFFFFFFF", "0123456789abcdef"],  # one decode for all
        ["00000000000000ff", None, "0123456789abcdef"],  # older entries without a key
        ["ff", "0123456789abcdef", "0x12"],  # not the writer's 16 digits: entry by entry
    ],
)
def test_init_keys_decode_as_entry_by_entry(keys: list[Any]) -> None:
    params = [
        {"name": f"k{i}"} | ({} if k is None else {"init_key": k}) for i, k in enumerate(keys)
    ]
    names = [p["name"] for p in params]
    expected = {p["name"]: int(p["init_key"], 16) for p in params if "init_key" in p}
    assert validate.decode_init_keys([p.get("init_key") for p in params], names) == expected
