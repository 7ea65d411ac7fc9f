"""The column-wise manifest reader accepts exactly what json + the entry checks accept.

:func:`paramarena.storage.zarr.manifest_scan.read_manifest` reads the writer's encoding
straight from the bytes; every document must give the same record, or the same error, as
``json.loads`` followed by :func:`paramarena.storage.zarr.validate.manifest`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramarena import errors, storage
from paramarena.storage.zarr import manifest_scan, validate
from paramarena.storage.zarr.direct import PackedColumns
from paramarena.storage.zarr.manifest import ManifestEntries, PackedGroup, encode_manifest

FORMATS = {"paramarena-zarr"}
WHERE = "test manifest"
HEADER = {"format": "paramarena-zarr", "format_version": 1, "named": True, "chunk_bytes": 64}


def _by_json(raw: bytes) -> tuple[dict[str, Any], validate.Manifest]:
    doc = validate.parse_json(raw, WHERE)
    record = validate.manifest(doc, WHERE, FORMATS, 1)
    return {k: v for k, v in doc.items() if k != "parameters"}, record


def _outcome(read: Any, raw: bytes) -> tuple[Any, ...]:
    """What reading ``raw`` gives: the record's every column, or the error and its message."""
    try:
        header, r = read(raw)
        return (
            header,
            r.format,
            r.format_version,
            r.named,
            r.names,
            r.shapes,
            r.dtypes,
            r.arrays,
            r.offsets.dtype,
            r.offsets.tolist(),
            r.sizes.tolist(),
            r.nbytes.tolist(),
            r.crcs.dtype,
            r.crcs.tolist(),
            r.crc32c,
            r.init_keys(),
            list(r.entries),
        )
    except errors.CorruptCheckpointError as exc:
        return ("error", str(exc))
    except ValueError as exc:  # a garbage init_key, decoded only when asked for (as before)
        return ("value error", str(exc))


def _same(raw: bytes) -> bool:
    """Assert both readers agree on ``raw``; return whether the fast path took it."""
    fast = _outcome(lambda b: manifest_scan.read_manifest(b, WHERE, FORMATS, 1), raw)
    slow = _outcome(_by_json, raw)
    assert fast == slow
    return _column_wise(raw)


def _column_wise(raw: bytes) -> bool:
    """Whether the column-wise reader took ``raw`` (without falling back to json)."""
    scanned = manifest_scan.scan(raw)
    return scanned is not None and manifest_scan._record(scanned, WHERE, FORMATS, 1) is not None


def _entries(n: int, keys: str = "all", dtypes: tuple[str, ...] = ("float32",)) -> bytes:
    names = [f"net_layer{i}.w-{i % 3}" for i in range(n)]
    shapes = [(i % 5, 3) if i % 2 else (i % 7 + 1,) for i in range(n)]
    groups = []
    for k, dtype in enumerate(dtypes):
        idx = [i for i in range(n) if i % len(dtypes) == k]
        size = [int(np.prod(shapes[i])) for i in idx]
        itemsize = validate.itemsizes()[dtype]
        offsets = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(int).tolist() if idx else []
        crcs = [(i * 2654435761) % 2**32 for i in idx]
        columns = PackedColumns(offsets, size, [s * itemsize for s in size], crcs)
        groups.append(PackedGroup(dtype, f"packed_{dtype}", idx, columns))
    init_keys = {}
    if keys == "all":
        init_keys = {name: (i * 0x9E3779B97F4A7C15) % 2**64 for i, name in enumerate(names)}
    elif keys == "some":
        init_keys = {name: i for i, name in enumerate(names) if i % 3}
    entries = ManifestEntries(names, shapes, groups, init_keys)
    return encode_manifest(HEADER, entries)


@pytest.mark.parametrize("keys", ["all", "none"])
@pytest.mark.parametrize("dtypes", [("float32",), ("float16", "bfloat16", "complex128", "bool")])
def test_the_writers_encoding_is_read_column_wise_as_json_reads_it(
    keys: str, dtypes: tuple[str, ...]
) -> None:
    raw = _entries(500, keys, dtypes)
    assert _same(raw)
    header, record = manifest_scan.read_manifest(raw, WHERE, FORMATS, 1)
    assert header == HEADER
    assert record.shapes[2] == (3,)
    assert record.shapes[3] == (3, 3)
    assert record.names[7] == "net_layer7.w-1"


def test_unusual_documents_go_through_json_with_the_same_result() -> None:
    raw = _entries(40)
    doc = json.loads(raw)
    variants = [
        _entries(40, "some"),  # init keys on some entries only
        _entries(0),  # no parameters
        raw.replace(b'"name":"net_layer3', b'"name":"n\\u00e9t_layer3'),  # an escape
        raw.replace(b'"name":"net_layer3', '"name":"nét_layer3'.encode()),  # UTF-8 text
        raw.replace(b"},{", b"}, {", 1),  # whitespace
        raw + b"\n",
        json.dumps(doc, indent=1).encode(),  # the old indented manifests
        json.dumps({"parameters": doc["parameters"], **HEADER}).encode(),  # parameters first
        json.dumps({**doc, "extra": {"parameters": [1]}}, separators=(",", ":")).encode(),
        raw.replace(b'"offset":0,', b'"offset":0.0,', 1),  # a float
        raw.replace(b'"offset":0,', b'"offset":-0,', 1),
        raw.replace(b'"size":3,', b'"size":03,', 1),  # a leading zero: not JSON
        raw.replace(b'"size":1,', b'"size":1e0,', 1),
        raw.replace(b'"shape":[1]', b'"shape":[1.0]', 1),
        raw.replace(b'"shape":[1]', b'"shape":[01]', 1),
        raw.replace(b'"shape":[1]', b'"shape":[1,]', 1),
        raw.replace(b'"shape":[1]', b'"shape":[true]', 1),
        raw.replace(b'"crc32c":"', b'"crc32c":"A', 1).replace(b'","init_key', b'","init_key', 1),
        raw.replace(b'"dtype":"float32"', b'"dtype":"float31"', 1),
        raw.replace(b'"array":"packed_float32"', b'"array":"../x"', 1),
        raw.replace(b'"init_key":"', b'"init_key":"0x', 1),
        raw.replace(b'"net_layer5.w-2"', b'"net_layer4.w-1"'),  # a duplicate name
        raw.replace(b'"format_version":1', b'"format_version":2'),
        raw.replace(b'"format":"paramarena-zarr"', b'"format":"other"'),
        raw.replace(b'"named":true', b'"named":1'),
        raw.replace(b'{"format"', b'{"parameters":[],"format"'),  # the key twice
        raw[:-2] + b",{}]}",
        b'{,"parameters":[' + raw.split(b'"parameters":[', 1)[1],
        raw[:-3] + b"]}",
        b'{"parameters":[' + raw.split(b'"parameters":[', 1)[1],
        raw.replace(b'"size":3,"nbytes":12', b'"size":3,"nbytes":13', 1),
        raw.replace(b'"shape":[1]', b'"shape":[' + b",".join([b"1"] * 33) + b"]", 1),
        raw.replace(b'"offset":0,', b'"offset":4611686018427387905,', 1),  # 2**62 + 1
        raw.replace(b'"offset":0,', b'"offset":9999999999999999999,', 1),
        raw.replace(b'"offset":0,', b'"offset":99999999999999999999999,', 1),
    ]
    for variant in variants:
        assert variant != raw
        _same(variant)
    # what the writer never writes is not taken by the column-wise reader
    assert not any(map(_column_wise, variants[2:9]))


def test_zero_size_and_huge_shapes_agree() -> None:
    raw = _entries(10)
    empty = raw.replace(b'"shape":[1,3]', b'"shape":[0,1099511627776]', 1)
    empty = empty.replace(b'"size":3,"nbytes":12', b'"size":0,"nbytes":0', 1)
    assert empty != raw
    assert _same(empty)
    huge = empty.replace(b"[0,1099511627776]", b"[0,2305843009213693952,8]")
    assert not _same(huge)
    big = raw.replace(b'"shape":[1,3]', b'"shape":[2305843009213693953]', 1).replace(
        b'"size":3,"nbytes":12', b'"size":2305843009213693953,"nbytes":9223372036854775812', 1
    )
    assert not _same(big)
    bigger = raw.replace(b'"shape":[1,3]', b'"shape":[1152921504606846977]', 1).replace(
        b'"size":3,"nbytes":12', b'"size":1152921504606846977,"nbytes":4611686018427387908', 1
    )
    assert not _same(bigger)  # nbytes above 2**62


@pytest.mark.timeout(120)
def test_random_damage_is_refused_or_read_exactly_as_json_reads_it() -> None:
    rng = np.random.default_rng(11)
    raw = _entries(12)
    alphabet = b'{}[]",:0123456789abcdefxyz\\ \x00\xc3'
    for _ in range(1500):
        damaged = bytearray(raw)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(damaged)))
            kind = int(rng.integers(0, 3))
            byte = alphabet[int(rng.integers(0, len(alphabet)))]
            if kind == 0:
                damaged[at] = byte
            elif kind == 1:
                damaged.insert(at, byte)
            else:
                del damaged[at]
        _same(bytes(damaged))


def test_a_checkpoint_reads_its_manifest_column_wise(tmp_path: Path) -> None:
    arrays = {f"w{i}": np.full((i % 4 + 1, 2), i, np.float32) for i in range(50)}
    path = tmp_path / "c.zarr"
    keys = {name: i * 7 for i, name in enumerate(arrays)}
    storage.save(path, arrays, init_keys=keys)
    manifest = next(path.glob("v*/manifest.json")).read_bytes()
    assert manifest_scan.scan(manifest) is not None
    info = storage.inspect(path)
    assert info.metadata["init_keys"] == keys
    got = storage.load(path)
    assert isinstance(got, dict)
    for name, a in arrays.items():
        np.testing.assert_array_equal(got[name], a)
