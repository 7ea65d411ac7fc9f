"""Reading and writing safetensors files, straight from the format specification.

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned header
length ``N``, ``N`` bytes of UTF-8 JSON, then the data buffer. The JSON maps each tensor name
to ``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (offsets relative to the
start of the data buffer, little-endian, C order) and may hold ``"__metadata__"``, a flat
``str -> str`` map.

paramarena keeps a few entries of its own in ``__metadata__`` (all prefixed ``paramarena.``):

- ``paramarena.crc32``: JSON ``{name: CRC-32 of the tensor's bytes}``, checked by ``load`` and
  ``verify`` when present (files written elsewhere have none and are checked structurally);
- ``paramarena.unnamed``: ``"1"`` when the arrays were saved as a list (loaded back as a list);
- ``paramarena.header_crc32``: CRC-32 (8 hex digits) of the header itself, as canonical JSON
  (keys sorted, no spaces, this entry left out), checked by ``load``, ``inspect`` and
  ``verify``: a flipped bit in a tensor name, shape or offset is caught even though it leaves
  valid JSON. When ``paramarena.crc32`` is present it must list every tensor.

Files without these entries (written by other tools, or by paramarena before 0.2) load and are
checked structurally.

Other ``__metadata__`` entries pass through: ``save(..., metadata={...})`` stores them and
``inspect`` reports them under ``CheckpointInfo.metadata["metadata"]``. Files written here are
read by the ``safetensors`` package and vice versa.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from paramarena.errors import (
    CheckpointError,
    ConfigurationError,
    CorruptCheckpointError,
    MissingParameterError,
    ParameterTypeError,
    ParameterValueError,
    StorageError,
)
from paramarena.hooks.records import (
    ArrayInfo,
    ArraysLike,
    CheckpointInfo,
    LoadedArrays,
    VerifyReport,
)
from paramarena.storage.fileio import atomic_write, durable_option, open_read, progress_reporter

__all__ = [
    "DTYPE_CODES",
    "SafetensorsBackend",
    "TensorEntry",
    "read_header",
    "read_metadata",
]

#: safetensors dtype code -> numpy dtype (little-endian).
_EAGER_CODES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
#: safetensors code -> ml_dtypes attribute (ml_dtypes is imported only when one is used)
_ML_DTYPES_CODES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


class _DtypeCodes(Mapping[str, "np.dtype[Any]"]):
    """safetensors dtype code -> numpy dtype, importing ml_dtypes lazily."""

    def __getitem__(self, code: str) -> np.dtype[Any]:
        if code in _ML_DTYPES_CODES:
            import ml_dtypes

            found: np.dtype[Any] = np.dtype(getattr(ml_dtypes, _ML_DTYPES_CODES[code]))
            return found
        return _EAGER_CODES[code]

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and (code in _EAGER_CODES or code in _ML_DTYPES_CODES)

    def __iter__(self) -> Iterator[str]:
        return iter([*_EAGER_CODES, *_ML_DTYPES_CODES])

    def __len__(self) -> int:
        return len(_EAGER_CODES) + len(_ML_DTYPES_CODES)


DTYPE_CODES: Mapping[str, np.dtype[Any]] = _DtypeCodes()
_CODE_OF: dict[str, str] = {
    **{dtype.name: code for code, dtype in _EAGER_CODES.items()},
    **{name: code for code, name in _ML_DTYPES_CODES.items()},
}

METADATA_KEY = "__metadata__"
_CRC_KEY = "paramarena.crc32"
_UNNAMED_KEY = "paramarena.unnamed"
_HEADER_CRC_KEY = "paramarena.header_crc32"
#: The same entries as written before the rename to paramarena (0.1.x): compatibility
#: reader, kept on purpose so that those files still load. Never written.
_LEGACY_KEYS = {_CRC_KEY: "paramdict.crc32", _UNNAMED_KEY: "paramdict.unnamed"}
_OWN_KEYS = frozenset({_CRC_KEY, _UNNAMED_KEY, _HEADER_CRC_KEY, *_LEGACY_KEYS.values()})


def _own_entry(metadata: Mapping[str, str], key: str) -> str | None:
    """Return paramarena's own metadata entry ``key``, or its pre-rename spelling."""
    value = metadata.get(key)
    return value if value is not None else metadata.get(_LEGACY_KEYS[key])


#: The safetensors Rust reader refuses headers above 100 MB; so do we.
MAX_HEADER_BYTES = 100_000_000
#: The largest array numpy can describe, in bytes (even an empty one: ``(0, 2**62)``).
_MAX_ARRAY_BYTES = 2**63 - 1
_COMMON = frozenset({"progress", "storage_options", "concurrency"})
_SAVE_OPTIONS = _COMMON | {"metadata", "durable"}
_LOAD_OPTIONS = _COMMON | {"check_crc"}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor's header entry.

    Attributes
    ----------
    name : str
    dtype : numpy.dtype
    shape : tuple of int
    begin, end : int
        Byte offsets relative to the start of the data buffer.
    """

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        """Size of the tensor's data in bytes."""
        return self.end - self.begin


@dataclass(frozen=True)
class Header:
    """A parsed and validated safetensors header.

    Attributes
    ----------
    entries : tuple of TensorEntry
        In data-buffer order.
    metadata : dict of str to str
        The whole ``__metadata__`` map.
    data_start : int
        File offset of the data buffer (``8 + N``).
    header_crc_problem : str or None
        Why the header fails its own checksum (``paramarena.header_crc32``); None when it
        passes or the file has none.
    """

    entries: tuple[TensorEntry, ...]
    metadata: dict[str, str]
    data_start: int
    header_crc_problem: str | None = None


def _check_options(uri: str, options: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigurationError(
            f"safetensors storage of {uri!r} got unknown option(s) "
            f"{', '.join(map(repr, unknown))}; valid: {', '.join(sorted(allowed))}"
        )


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _parse_entry(uri: str, name: str, raw: Any) -> TensorEntry:
    if not isinstance(raw, dict):
        raise CheckpointError(f"safetensors {uri!r}: header entry {name!r} is not an object")
    code, shape, offsets = raw.get("dtype"), raw.get("shape"), raw.get("data_offsets")
    if not isinstance(code, str) or code not in DTYPE_CODES:
        raise CheckpointError(
            f"safetensors {uri!r}: tensor {name!r} has unsupported dtype {code!r} "
            f"(supported: {', '.join(DTYPE_CODES)})"
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise CheckpointError(f"safetensors {uri!r}: tensor {name!r} has bad shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise CheckpointError(
            f"safetensors {uri!r}: tensor {name!r} has bad data_offsets {offsets!r}"
        )
    dtype = DTYPE_CODES[code]
    extent = dtype.itemsize
    for d in shape:
        extent *= max(d, 1)
    if extent > _MAX_ARRAY_BYTES:
        raise CheckpointError(
            f"safetensors {uri!r}: tensor {name!r} has shape {shape}, too large for any array"
        )
    entry = TensorEntry(name, dtype, tuple(shape), offsets[0], offsets[1])
    expected = _count(entry.shape) * dtype.itemsize
    if entry.nbytes != expected:
        raise CheckpointError(
            f"safetensors {uri!r}: tensor {name!r} ({code} {entry.shape}) needs {expected} bytes "
            f"but its data_offsets span {entry.nbytes}"
        )
    return entry


def _header_crc(document: Mapping[str, Any]) -> str:
    """CRC-32 of a header as canonical JSON, without its own ``paramarena.header_crc32``."""
    meta = dict(document.get(METADATA_KEY) or {})
    meta.pop(_HEADER_CRC_KEY, None)
    canonical = {**document, METADATA_KEY: meta}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{zlib.crc32(text.encode('utf-8', 'surrogatepass')):08x}"


def _header_crc_problem(uri: str, document: Mapping[str, Any]) -> str | None:
    meta = document.get(METADATA_KEY) or {}
    stored = meta.get(_HEADER_CRC_KEY) if isinstance(meta, dict) else None
    if stored is None:
        return None
    actual = _header_crc(document)
    if stored != actual:
        return (
            f"safetensors {uri!r}: the header fails its checksum ({_HEADER_CRC_KEY} "
            f"{stored!r}, header {actual!r}): names, shapes or offsets are damaged"
        )
    return None


def parse_header(uri: str, fh: IO[bytes], size: int) -> Header:
    """Read and validate the header of an open safetensors file of ``size`` bytes.

    Raises
    ------
    paramarena.errors.CheckpointError
        The header is malformed, or the tensors do not exactly tile the data buffer.
    """
    fh.seek(0)
    head = fh.read(8)
    if len(head) != 8:
        raise CheckpointError(f"safetensors {uri!r}: file is {size} bytes, shorter than a header")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise CheckpointError(
            f"safetensors {uri!r}: header claims {n} bytes in a {size}-byte file "
            "(not a safetensors file, or truncated)"
        )
    raw = fh.read(n)
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"safetensors {uri!r}: header is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise CheckpointError(f"safetensors {uri!r}: header is nested too deeply") from None
    if not isinstance(parsed, dict):
        raise CheckpointError(f"safetensors {uri!r}: header is not a JSON object")
    meta = parsed.get(METADATA_KEY) or {}
    if isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values()):
        crc_problem = _header_crc_problem(uri, parsed)
    else:
        crc_problem = None
    parsed.pop(METADATA_KEY, None)
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise CheckpointError(f"safetensors {uri!r}: __metadata__ is not a str -> str map")
    entries = sorted(
        (_parse_entry(uri, name, value) for name, value in parsed.items()),
        key=lambda e: (e.begin, e.end),
    )
    data_start = 8 + n
    position = 0
    for entry in entries:
        if entry.begin != position:
            what = "overlaps the previous tensor" if entry.begin < position else "leaves a gap"
            raise CheckpointError(
                f"safetensors {uri!r}: tensor {entry.name!r} at data offset {entry.begin} {what} "
                f"(expected offset {position})"
            )
        position = entry.end
    if data_start + position != size:
        raise CheckpointError(
            f"safetensors {uri!r}: the tensors need {data_start + position} bytes but the file "
            f"has {size} (truncated or padded)"
        )
    return Header(tuple(entries), dict(meta), data_start, crc_problem)


def read_header(uri: str, *, storage_options: Mapping[str, Any] | None = None) -> Header:
    """Return the validated header of the safetensors file at ``uri`` (no tensor data read)."""
    with open_read(uri, storage_options) as (fh, size):
        return parse_header(uri, fh, size)


def read_metadata(uri: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Return the user ``__metadata__`` of ``uri`` (paramarena's own entries left out)."""
    meta = read_header(uri, storage_options=storage_options).metadata
    return {k: v for k, v in meta.items() if k not in _OWN_KEYS}


def _crcs(uri: str, header: Header) -> dict[str, int]:
    text = _own_entry(header.metadata, _CRC_KEY)
    if text is None:
        return {}
    try:
        crcs = json.loads(text)
    except json.JSONDecodeError:
        raise CorruptCheckpointError(f"safetensors {uri!r}: {_CRC_KEY} is not JSON") from None
    if not isinstance(crcs, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32 for v in crcs.values()
    ):
        raise CorruptCheckpointError(
            f"safetensors {uri!r}: {_CRC_KEY} is not a JSON object of CRC-32 values"
        )
    unlisted = [e.name for e in header.entries if e.name not in crcs]
    if unlisted:
        raise CorruptCheckpointError(
            f"safetensors {uri!r}: {_CRC_KEY} has no checksum for tensor(s) "
            f"{', '.join(map(repr, unlisted[:5]))} (a damaged name?)"
        )
    return {str(k): v for k, v in crcs.items()}


def _read_tensor(
    uri: str, fh: IO[bytes], header: Header, entry: TensorEntry, crc: int | None
) -> np.ndarray:
    """Read one tensor's bytes straight into a new array (seeking to its offset)."""
    arr = np.empty(entry.shape, dtype=entry.dtype)
    if entry.nbytes:
        fh.seek(header.data_start + entry.begin)
        view = arr.reshape(-1).view(np.uint8).data
        got = 0
        while got < entry.nbytes:
            n = fh.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                break
            got += n
        if got != entry.nbytes:
            raise CorruptCheckpointError(f"safetensors {uri!r}: tensor {entry.name!r} is truncated")
    if crc is not None:
        actual = zlib.crc32(arr.reshape(-1).view(np.uint8).data) if entry.nbytes else 0
        if actual != crc:
            raise CorruptCheckpointError(
                f"safetensors {uri!r}: tensor {entry.name!r} fails its CRC-32 check "
                f"(stored 0x{crc:08x}, data 0x{actual:08x})"
            )
    return arr


def _stored_bytes(name: str, arr: np.ndarray, uri: str) -> tuple[str, np.ndarray]:
    """Return ``(dtype code, little-endian C-ordered flat uint8 view)`` of ``arr``."""
    if arr.dtype.hasobject:
        raise ParameterTypeError(
            f"cannot save {name!r} to safetensors {uri!r}: object arrays cannot be stored"
        )
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    code = _CODE_OF.get(dtype.name)
    if code is None:
        raise ParameterTypeError(
            f"cannot save {name!r} to safetensors {uri!r}: dtype {arr.dtype} has no safetensors "
            f"code (supported: {', '.join(sorted(_CODE_OF))})"
        )
    flat = np.ascontiguousarray(arr, dtype=dtype).reshape(-1)
    return code, flat.view(np.uint8)


class SafetensorsBackend:
    """Read and write ``.safetensors`` files (see the module docstring)."""

    def save(self, uri: str, arrays: ArraysLike, **options: Any) -> None:
        """Write ``arrays`` to ``uri`` atomically.

        Parameters
        ----------
        uri : str
            Destination path or URL.
        arrays : dict of str to numpy.ndarray, or list of numpy.ndarray
            A list is stored as ``arr_0``, ``arr_1``, ... and loaded back as a list.
        **options
            ``metadata`` (dict str -> str, stored in ``__metadata__``), ``progress``,
            ``storage_options``, ``durable`` (bool, default True; False: still atomic, but
            neither the file nor its directory is fsync-ed, as for ``.npz``).
        """
        _check_options(uri, options, _SAVE_OPTIONS)
        durable = durable_option(uri, options)
        user_meta = options.get("metadata") or {}
        if not isinstance(user_meta, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in user_meta.items()
        ):
            raise ConfigurationError(
                f"safetensors metadata for {uri!r} must be a dict of str to str; got {user_meta!r}"
            )
        own = sorted(set(user_meta) & _OWN_KEYS)
        if own:
            raise ConfigurationError(f"safetensors metadata keys {own} are reserved for paramarena")
        named = isinstance(arrays, Mapping)
        items = (
            list(arrays.items())
            if isinstance(arrays, Mapping)
            else [(f"arr_{i}", a) for i, a in enumerate(arrays)]
        )
        header: dict[str, Any] = {}
        payload: list[np.ndarray] = []
        crcs: dict[str, int] = {}
        offset = 0
        for name, value in items:
            if name == METADATA_KEY:
                raise ParameterValueError(
                    f"cannot save an array named {METADATA_KEY!r} to safetensors {uri!r}: "
                    "the name is reserved by the format"
                )
            arr = np.asarray(value)
            code, data = _stored_bytes(name, arr, uri)
            header[name] = {
                "dtype": code,
                "shape": [int(d) for d in arr.shape],
                "data_offsets": [offset, offset + data.nbytes],
            }
            crcs[name] = zlib.crc32(data.data) if data.nbytes else 0
            offset += data.nbytes
            payload.append(data)
        meta = dict(user_meta)
        meta[_CRC_KEY] = json.dumps(crcs, separators=(",", ":"))
        if not named:
            meta[_UNNAMED_KEY] = "1"
        header = {METADATA_KEY: meta, **header}
        meta[_HEADER_CRC_KEY] = _header_crc(header)
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * (-len(text) % 8)  # the spec pads the header to 8-byte alignment
        with (
            progress_reporter(offset, f"save {uri}", options.get("progress")) as update,
            atomic_write(uri, options.get("storage_options"), durable=durable) as fh,
        ):
            fh.write(struct.pack("<Q", len(text)))
            fh.write(text)
            for data in payload:
                fh.write(data.data)
                update(data.nbytes)

    def load(
        self, uri: str, *, names: Collection[str] | None = None, **options: Any
    ) -> LoadedArrays:
        """Read ``uri``; with ``names`` only those tensors are read (each by seeking to it).

        Parameters
        ----------
        uri : str
            Source path or URL.
        names : collection of str, optional
            Tensors to read.
        **options
            ``check_crc`` (bool, default True: check paramarena's CRC-32 when present),
            ``progress``, ``storage_options``.

        Returns
        -------
        dict or list
            Tensors in data-buffer order; a list when the file was saved from a list.
        """
        _check_options(uri, options, _LOAD_OPTIONS)
        check_crc = options.get("check_crc", True)
        with open_read(uri, options.get("storage_options")) as (fh, size):
            header = parse_header(uri, fh, size)
            if check_crc and header.header_crc_problem:
                raise CorruptCheckpointError(header.header_crc_problem)
            by_name = {e.name: e for e in header.entries}
            if names is not None:
                missing = [n for n in names if n not in by_name]
                if missing:
                    raise MissingParameterError(
                        f"safetensors {uri!r} has no tensor named {', '.join(map(repr, missing))}"
                    )
                wanted = set(names)
                chosen = [e for e in header.entries if e.name in wanted]
            else:
                chosen = list(header.entries)
            crcs = _crcs(uri, header) if check_crc else {}
            out: dict[str, np.ndarray] = {}
            total = sum(e.nbytes for e in chosen)
            with progress_reporter(total, f"load {uri}", options.get("progress")) as update:
                for entry in chosen:
                    out[entry.name] = _read_tensor(uri, fh, header, entry, crcs.get(entry.name))
                    update(entry.nbytes)
        if names is None and _own_entry(header.metadata, _UNNAMED_KEY) == "1":
            return list(out.values())  # saved from a list: data-buffer order is list order
        return out

    def inspect(self, uri: str, **options: Any) -> CheckpointInfo:
        """Describe the file from its header only; ``metadata["metadata"]`` is ``__metadata__``."""
        _check_options(uri, options, _COMMON)
        storage_options = options.get("storage_options")
        with open_read(uri, storage_options) as (fh, size):
            header = parse_header(uri, fh, size)
        if header.header_crc_problem:
            raise CorruptCheckpointError(header.header_crc_problem)
        user = {k: v for k, v in header.metadata.items() if k not in _OWN_KEYS}
        return CheckpointInfo(
            uri=uri,
            format="safetensors",
            committed=True,
            named=_own_entry(header.metadata, _UNNAMED_KEY) != "1",
            arrays=tuple(_infos(header)),
            metadata={
                "file_size": size,
                "header_size": header.data_start - 8,
                "metadata": user,
                "checksums": _own_entry(header.metadata, _CRC_KEY) is not None,
            },
        )

    def verify(self, uri: str, **options: Any) -> VerifyReport:
        """Check the header's structure and read every tensor, checking CRC-32s when present.

        Raises
        ------
        paramarena.errors.StorageError
            The file is missing or its header cannot be parsed at all.
        """
        _check_options(uri, options, _COMMON)
        problems: list[tuple[str, str]] = []
        with open_read(uri, options.get("storage_options")) as (fh, size):
            header = parse_header(uri, fh, size)
            if header.header_crc_problem:
                problems.append((METADATA_KEY, header.header_crc_problem))
            try:
                crcs = _crcs(uri, header)
            except CheckpointError as exc:
                problems.append((METADATA_KEY, str(exc)))
                crcs = {}
            for entry in header.entries:
                try:
                    _read_tensor(uri, fh, header, entry, crcs.get(entry.name))
                except StorageError as exc:
                    problems.append((entry.name, str(exc)))
        return VerifyReport(uri=uri, checked=len(header.entries), problems=tuple(problems))


def _infos(header: Header) -> Iterator[ArrayInfo]:
    for e in header.entries:
        yield ArrayInfo(e.name, e.shape, e.dtype.name, e.nbytes)
