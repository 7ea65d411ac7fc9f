"""Schemas of a zarr checkpoint's documents: ``COMMIT``, ``manifest.json`` and ``zarr.json``.

Pure functions from parsed JSON to typed records. Each raises
:class:`~paramarena.errors.CorruptCheckpointError` naming the document and the field when the
document does not match its schema, so that nothing downstream (the reader, zarr itself) ever
sees a malformed value: no ``KeyError``, no negative or absurd sizes, no names that could
leave the checkpoint (``../x``), no zarr ``MetadataValidationError``.

Only the layouts paramarena writes are accepted: 1-D packed arrays with the codecs ``bytes``
(little endian), optionally ``zstd``, then ``crc32c``, regular chunks and ``/`` chunk keys.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from paramarena.errors import CorruptCheckpointError
from paramarena.storage.zarr.manifest_record import Manifest, ManifestEntry, decode_init_keys

__all__ = [
    "MAX_NDIM",
    "ArrayMetadata",
    "Commit",
    "Manifest",
    "ManifestEntry",
    "array_metadata",
    "check_entries_fit",
    "commit",
    "decode_init_keys",
    "group_metadata",
    "itemsizes",
    "manifest",
    "manifest_header",
    "parse_json",
    "plain_name",
    "storage_dtype_name",
]

#: The most dimensions a parameter may have (numpy's own limit is 64).
MAX_NDIM = 32
#: The largest array numpy can describe, in bytes.
_MAX_ARRAY_BYTES = 2**63 - 1
#: A name that can be one path component: letters, digits, ``_ . -``, not ``.`` or ``..``.
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}")
_HEX8 = re.compile(r"[0-9a-f]{8}")
#: Logical dtypes a manifest may name, and the itemsize each is stored with.
_ITEMSIZE = {
    "bool": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "float16": 2,
    "bfloat16": 2,
    "int32": 4,
    "uint32": 4,
    "float32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
    "complex64": 8,
    "complex128": 16,
}
_CODECS = ("bytes", "zstd", "crc32c")


def itemsizes() -> Mapping[str, int]:
    """Return ``{logical dtype a manifest may name: its itemsize}``."""
    return _ITEMSIZE


def storage_dtype_name(logical: str) -> str:
    """Return the zarr ``data_type`` a logical dtype is stored as (bool: uint8, bf16: uint16)."""
    return {"bfloat16": "uint16", "bool": "uint8"}.get(logical, logical)


def _fail(where: str, what: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(f"{where}: {what}")


def parse_json(raw: bytes, where: str) -> Any:
    """Decode a UTF-8 JSON document, or raise CorruptCheckpointError naming ``where``."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(where, f"is not valid UTF-8 JSON ({exc})") from None


def _object(document: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(document, dict):
        raise _fail(where, f"must be a JSON object, got {type(document).__name__}")
    return document


def _field(document: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in document:
        raise _fail(where, f"field {key!r} is missing")
    return document[key]


def _int(value: Any, where: str, field: str, minimum: int = 0, maximum: int = 2**62) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _fail(
            where, f"field {field!r} must be an integer in [{minimum}, {maximum}], got {value!r}"
        )
    return value


def _str(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"field {field!r} must be a string, got {type(value).__name__}")
    return value


def plain_name(value: Any, where: str, field: str) -> str:
    """Return ``value`` if it is a plain name that can only mean one entry below the root.

    Letters, digits, ``_``, ``.`` and ``-``, not starting with ``.`` or ``-``: no separators,
    no ``..``, nothing absolute.
    """
    text = _str(value, where, field)
    if not _PLAIN.fullmatch(text):
        raise _fail(where, f"field {field!r} must be a plain name (no '/', '..'), got {text!r}")
    return text


# -- COMMIT ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """The commit marker: which version is current and its manifest's crc32c."""

    version: str
    manifest_crc32c: str


def commit(document: Any, where: str) -> Commit:
    """Validate the parsed ``COMMIT`` document (other fields are allowed and ignored)."""
    doc = _object(document, where)
    version = plain_name(_field(doc, "version", where), where, "version")
    crc = _str(_field(doc, "manifest_crc32c", where), where, "manifest_crc32c")
    if not _HEX8.fullmatch(crc):
        raise _fail(where, f"field 'manifest_crc32c' must be 8 lower-case hex digits, got {crc!r}")
    return Commit(version, crc)


# -- manifest.json -----------------------------------------------------------------------------


def _shape(value: Any, where: str, field: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_NDIM:
        raise _fail(where, f"field {field!r} must be a list of at most {MAX_NDIM} sizes")
    return tuple(_int(d, where, field) for d in value)


def _entry(raw: Any, index: int, where: str) -> ManifestEntry:
    here = f"{where}, parameter {index}"
    doc = _object(raw, here)
    name = _str(_field(doc, "name", here), here, "name")
    here = f"{where}, parameter {name!r}"
    shape = _shape(_field(doc, "shape", here), here, "shape")
    dtype = _str(_field(doc, "dtype", here), here, "dtype")
    if dtype not in _ITEMSIZE:
        raise _fail(here, f"field 'dtype' names an unsupported dtype {dtype!r}")
    array = plain_name(_field(doc, "array", here), here, "array")
    offset = _int(_field(doc, "offset", here), here, "offset")
    size = _int(_field(doc, "size", here), here, "size")
    nbytes = _int(_field(doc, "nbytes", here), here, "nbytes")
    crc = _str(_field(doc, "crc32c", here), here, "crc32c")
    count, extent = 1, _ITEMSIZE[dtype]
    for d in shape:
        count *= d
        extent *= max(d, 1)
    if extent > _MAX_ARRAY_BYTES:  # numpy refuses even an empty (0, 2**62) array
        raise _fail(here, f"field 'shape' {shape} is too large for any array")
    if size != count:
        raise _fail(here, f"field 'size' is {size} but shape {shape} holds {count} elements")
    if nbytes != size * _ITEMSIZE[dtype]:
        raise _fail(here, f"field 'nbytes' is {nbytes}, expected {size * _ITEMSIZE[dtype]}")
    if not _HEX8.fullmatch(crc):
        raise _fail(here, f"field 'crc32c' must be 8 lower-case hex digits, got {crc!r}")
    return ManifestEntry(name, shape, dtype, array, offset, size, nbytes, crc)


def manifest(
    document: Any, where: str, formats: Collection[str], max_format_version: int
) -> Manifest:
    """Validate a parsed ``manifest.json`` (parameter names unique, sizes consistent)."""
    doc = _object(document, where)
    fmt, version, named = manifest_header(doc, where, formats, max_format_version)
    params = _field(doc, "parameters", where)
    if not isinstance(params, list):
        raise _fail(where, "field 'parameters' must be a list")
    columns = _bulk_entries(params)
    if columns is None:  # something is off (or unusual): check entry by entry, naming it
        entries = [_entry(raw, i, where) for i, raw in enumerate(params)]
        seen: set[str] = set()
        for e in entries:
            if e.name in seen:
                raise _fail(where, f"parameter name {e.name!r} appears twice")
            seen.add(e.name)
        columns = (
            tuple(e.name for e in entries),
            tuple(e.shape for e in entries),
            tuple(e.dtype for e in entries),
            tuple(e.array for e in entries),
            np.array([e.offset for e in entries], np.int64),
            np.array([e.size for e in entries], np.int64),
            np.array([e.nbytes for e in entries], np.int64),
            tuple(e.crc32c for e in entries),
        )
    names, shapes, dtypes, arrays, offsets, sizes, nbytes, crcs = columns
    hexed = bytes.fromhex("".join(crcs))
    keys = [p.get("init_key") for p in params]
    return Manifest(
        fmt,
        version,
        named,
        names,
        shapes,
        dtypes,
        arrays,
        offsets,
        sizes,
        nbytes,
        np.frombuffer(hexed, ">u4").astype(np.uint32),
        keys if any(k is not None for k in keys) else None,
    )


def manifest_header(
    doc: Mapping[str, Any], where: str, formats: Collection[str], max_format_version: int
) -> tuple[str, int, bool]:
    """Validate a manifest's header fields; return its format, format_version and named."""
    fmt = _str(_field(doc, "format", where), where, "format")
    if fmt not in formats:
        raise _fail(where, f"field 'format' is {fmt!r}, expected one of {sorted(formats)}")
    version = _int(_field(doc, "format_version", where), where, "format_version", 1)
    if version > max_format_version:
        raise _fail(
            where,
            f"format_version {version} is newer than this paramarena reads "
            f"({max_format_version}); upgrade paramarena",
        )
    named = doc.get("named", True)
    if not isinstance(named, bool):
        raise _fail(where, f"field 'named' must be true or false, got {named!r}")
    return fmt, version, named


_Columns = tuple[
    tuple[str, ...],
    tuple[tuple[int, ...], ...],
    tuple[str, ...],
    tuple[str, ...],
    np.ndarray,
    np.ndarray,
    np.ndarray,
    tuple[str, ...],
]
_HEX_RUN = re.compile(r"[0-9a-f]*")
_MAX_INT = 2**62


def _ints(values: list[Any]) -> np.ndarray | None:
    """Return ``values`` as int64 if every one is an int (not bool) in ``[0, 2**62]``."""
    if values and set(map(type, values)) != {int}:
        return None
    if values and not (min(values) >= 0 and max(values) <= _MAX_INT):
        return None
    return np.array(values, dtype=np.int64)


def _bulk_entries(params: list[Any]) -> _Columns | None:
    """Validate every parameter entry at once; None if any check fails (or is unusual).

    The same checks as :func:`_entry` and the unique-name check, column by column with no
    Python call per entry for the common case; the caller re-checks entry by entry when this
    returns None, to raise the error naming the entry.
    """
    if params and set(map(type, params)) != {dict}:
        return None
    try:
        names = [p["name"] for p in params]
        shapes = [p["shape"] for p in params]
        dtypes = [p["dtype"] for p in params]
        arrays = [p["array"] for p in params]
        offsets, sizes, nbytes = (
            _ints([p[k] for p in params]) for k in ("offset", "size", "nbytes")
        )
        crcs = [p["crc32c"] for p in params]
        if params and (
            set(map(type, names)) != {str}
            or set(map(type, dtypes)) != {str}
            or not set(dtypes) <= _ITEMSIZE.keys()
            or set(map(type, crcs)) != {str}
            or set(map(len, crcs)) != {8}
            or set(map(type, shapes)) != {list}
            or max(map(len, shapes)) > MAX_NDIM
        ):
            return None
        for a in set(arrays):
            plain_name(a, "", "array")
    except (KeyError, TypeError, CorruptCheckpointError):
        return None
    if offsets is None or sizes is None or nbytes is None:
        return None
    if not _HEX_RUN.fullmatch("".join(crcs)) or len(set(names)) != len(names):
        return None
    dims = [d for s in shapes for d in s]
    if dims and _ints(dims) is None:
        return None
    counts = list(map(math.prod, shapes))
    if any(0 in s for s in shapes) or (counts and max(counts) > _MAX_INT):
        return None  # zero-size or huge parameters: the entry checks compute their extent
    itemsize = np.array([_ITEMSIZE[d] for d in dtypes], dtype=np.int64)
    count = np.array(counts, dtype=np.int64)
    if (
        np.any(count > (2**63 - 1) // np.maximum(itemsize, 1))
        or not np.array_equal(sizes, count)
        or not np.array_equal(nbytes, count * itemsize)
    ):
        return None
    return (
        tuple(names),
        tuple(map(tuple, shapes)),
        tuple(dtypes),
        tuple(arrays),
        offsets,
        sizes,
        nbytes,
        tuple(crcs),
    )


# -- zarr.json ---------------------------------------------------------------------------------


def group_metadata(document: Any, where: str) -> Mapping[str, Any]:
    """Validate a group's ``zarr.json``; return its attributes."""
    doc = _object(document, where)
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise _fail(where, "is not a zarr v3 group ('zarr_format': 3, 'node_type': 'group')")
    unknown = sorted(set(doc) - {"zarr_format", "node_type", "attributes", "consolidated_metadata"})
    if unknown:
        raise _fail(where, f"has unexpected field(s) {unknown}")
    attributes = doc.get("attributes", {})
    if not isinstance(attributes, dict):
        raise _fail(where, "field 'attributes' must be an object")
    if doc.get("consolidated_metadata") is not None:
        raise _fail(where, "consolidated metadata is not used by paramarena checkpoints")
    return attributes


@dataclass(frozen=True)
class ArrayMetadata:
    """A packed array's ``zarr.json``: element count, chunk length, dtype, codec names."""

    count: int
    chunk: int
    data_type: str
    codecs: tuple[str, ...]

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return _ITEMSIZE[self.data_type]

    @property
    def compressed(self) -> bool:
        """Whether the chunks are zstd-compressed (their stored size is not fixed)."""
        return "zstd" in self.codecs

    @property
    def n_chunks(self) -> int:
        """Number of chunks the array is cut into."""
        return -(-self.count // self.chunk)


def _codecs(value: Any, where: str, itemsize: int) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(where, "field 'codecs' must be a non-empty list")
    names = []
    for codec in value:
        if not isinstance(codec, dict) or not isinstance(codec.get("name"), str):
            raise _fail(where, f"codec {codec!r} must be an object with a 'name'")
        if set(codec) - {"name", "configuration"}:
            raise _fail(where, f"codec {codec['name']!r} has unexpected fields")
        config = codec.get("configuration", {})
        if not isinstance(config, dict):
            raise _fail(where, f"codec {codec['name']!r}: 'configuration' must be an object")
        name = codec["name"]
        if name == "bytes":
            ok = set(config) <= {"endian"} and config.get("endian", "little") == "little"
            ok = ok and (itemsize == 1 or config.get("endian") == "little")
        elif name == "zstd":
            level, checksum = config.get("level", 0), config.get("checksum", False)
            ok = (
                "configuration" in codec  # zarr requires it for zstd
                and set(config) <= {"level", "checksum"}
                and isinstance(level, int)
                and not isinstance(level, bool)
                and -131072 <= level <= 22
                and isinstance(checksum, bool)
            )
        elif name == "crc32c":
            ok = not config
        else:
            ok = False
        if not ok:
            raise _fail(where, f"codec {codec!r} is not one paramarena writes")
        names.append(name)
    if names not in (["bytes", "crc32c"], ["bytes", "zstd", "crc32c"]):
        raise _fail(where, f"codecs {names} are not bytes[, zstd], crc32c")
    return tuple(names)


_ARRAY_FIELDS = frozenset(
    {
        "shape",
        "data_type",
        "chunk_grid",
        "chunk_key_encoding",
        "fill_value",
        "codecs",
        "attributes",
        "zarr_format",
        "node_type",
        "storage_transformers",
        "dimension_names",
    }
)


def array_metadata(document: Any, where: str, data_type: str) -> ArrayMetadata:
    """Validate a packed array's ``zarr.json`` against the storage dtype the manifest expects."""
    doc = _object(document, where)
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "array":
        raise _fail(where, "is not a zarr v3 array ('zarr_format': 3, 'node_type': 'array')")
    unknown = sorted(set(doc) - _ARRAY_FIELDS)
    if unknown:
        raise _fail(where, f"has unexpected field(s) {unknown}")
    found = _field(doc, "data_type", where)
    if found != data_type:
        raise _fail(where, f"field 'data_type' is {found!r}, the manifest expects {data_type!r}")
    shape = _field(doc, "shape", where)
    if not isinstance(shape, list) or len(shape) != 1:
        raise _fail(where, f"field 'shape' must be a list of one size, got {shape!r}")
    count = _int(shape[0], where, "shape")
    grid = _object(_field(doc, "chunk_grid", where), f"{where}, field 'chunk_grid'")
    config = grid.get("configuration")
    chunk_shape = config.get("chunk_shape") if isinstance(config, dict) else None
    if (
        grid.get("name") != "regular"
        or set(grid) != {"name", "configuration"}
        or not isinstance(config, dict)
        or set(config) != {"chunk_shape"}
        or not isinstance(chunk_shape, list)
        or len(chunk_shape) != 1
    ):
        raise _fail(where, "field 'chunk_grid' must be a regular grid of one chunk length")
    chunk = _int(chunk_shape[0], where, "chunk_shape", 1)
    keys = _object(_field(doc, "chunk_key_encoding", where), f"{where}, 'chunk_key_encoding'")
    key_config = keys.get("configuration", {"separator": "/"})
    if (
        keys.get("name") != "default"
        or set(keys) - {"name", "configuration"}
        or key_config != {"separator": "/"}
    ):
        raise _fail(where, "field 'chunk_key_encoding' must be the default with '/' separators")
    fill = doc.get("fill_value", 0)
    if not (
        (isinstance(fill, (int, float)) and not isinstance(fill, bool) and fill == 0)
        or fill in ([0, 0], [0.0, 0.0])
    ):
        raise _fail(where, f"field 'fill_value' must be 0, got {fill!r}")
    codecs = _codecs(_field(doc, "codecs", where), where, _ITEMSIZE[data_type])
    if doc.get("storage_transformers", []) != []:
        raise _fail(where, "storage transformers are not used by paramarena checkpoints")
    if not isinstance(doc.get("attributes", {}), dict):
        raise _fail(where, "field 'attributes' must be an object")
    names = doc.get("dimension_names")
    if names is not None and not (
        isinstance(names, list)
        and len(names) == 1
        and (names[0] is None or isinstance(names[0], str))
    ):
        raise _fail(where, "field 'dimension_names' must be null or a list of one name")
    return ArrayMetadata(count, chunk, data_type, codecs)


def check_entries_fit(manifest: Manifest, arrays: Mapping[str, ArrayMetadata], where: str) -> None:
    """Check that every parameter of an array in ``arrays`` lies inside it, with its dtype.

    Parameters of arrays not in ``arrays`` (missing ones, which the reader reports) are skipped.
    """
    groups = manifest.groups
    for array, meta in arrays.items():
        if array not in groups:
            continue
        idx, dtypes, end = groups[array]
        if any(storage_dtype_name(d) != meta.data_type for d in dtypes):
            i = next(i for i in idx if storage_dtype_name(manifest.dtypes[i]) != meta.data_type)
            raise _fail(
                where,
                f"parameter {manifest.names[i]!r} is {manifest.dtypes[i]} but {array!r} holds "
                f"{meta.data_type}",
            )
        if end > meta.count:
            ends = manifest.offsets[idx] + manifest.sizes[idx]
            i = idx[int(np.flatnonzero(ends > meta.count)[0])]
            lo, size = int(manifest.offsets[i]), int(manifest.sizes[i])
            raise _fail(
                where,
                f"parameter {manifest.names[i]!r} spans elements [{lo}, {lo + size}) but "
                f"{array!r} holds {meta.count}",
            )
