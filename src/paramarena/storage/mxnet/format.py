"""Pure-numpy reader and writer of MXNet's binary ``.params`` / ``nd.save`` format.

Layout (little-endian, no padding; MXNet 1.9.1, see ``docs/formats-mxnet.md``)::

    u64 0x112 (list magic) | u64 reserved | u64 N | N records | u64 M | M x (u64 len, utf-8)

    record V2 (0xF993FAC9) / V3 (0xF993FACA):
        u32 magic | i32 stype | [sparse: TShape storage_shape] | TShape shape
        [V2 with ndim 0, or V3 with an unknown shape: the record ends here]
        i32 dev_type | i32 dev_id | i32 type_flag | [sparse: n_aux x (i32 type, TShape)]
        data | [sparse: aux data]
    record V1 (0xF993FAC8): TShape shape | i32 dev_type | i32 dev_id | i32 type_flag | data
    record V0 (any other first u32): that u32 is ndim | ndim x u32 dims | ctx | type | data
    TShape := i32 ndim, ndim x i64

Reading is two-pass: :func:`parse_headers` walks every record header and seeks past the data
(checking every size against the file size before anything is allocated), then reads the
names; :func:`read_record` reads one record's data. So a partial load reads only the records it
needs, and a corrupt file fails with a :class:`~paramarena.errors.CheckpointError` that names
the file, the record (and its name when known) and the byte offset.

:func:`write_params` writes dense arrays byte-identically to MXNet 1.9.1's ``nd.save``
(V2 records, ``dev_type`` 1 / ``dev_id`` 0). Files holding a 0-d array are written with V3
records throughout, exactly as MXNet does in numpy-shape mode, because MXNet's legacy format
cannot represent 0-d arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

import numpy as np

from paramarena.errors import CheckpointError, ParameterTypeError
from paramarena.storage.mxnet.dtypes import TYPE_FLAGS

__all__ = [
    "DEFAULT_MAX_DENSE_BYTES",
    "LIST_MAGIC",
    "MAGIC_V1",
    "MAGIC_V2",
    "MAGIC_V3",
    "STYPE_NAMES",
    "TYPE_FLAGS",
    "ParamsFile",
    "RecordHeader",
    "parse_headers",
    "read_record",
    "type_flag_of",
]

#: u64 at the start of every file (``kMXAPINDArrayListMagic``).
LIST_MAGIC = 0x112
MAGIC_V1 = 0xF993FAC8
MAGIC_V2 = 0xF993FAC9
MAGIC_V3 = 0xF993FACA


#: Flags MXNet 1.9.1 can load, i.e. the ones we write.
WRITABLE_FLAGS = (0, 1, 2, 3, 4, 5, 6, 7, 12)
#: stype code -> name; the number of aux arrays is 0, 1 (row indices) and 2 (indptr, indices).
STYPE_NAMES = {0: "default", 1: "row_sparse", 2: "csr"}
_N_AUX = {0: 0, 1: 1, 2: 2}
_DEV_TYPES = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}


def type_flag_of(dtype: np.dtype[Any]) -> int:
    """Return the mshadow type flag MXNet writes for ``dtype``.

    Raises
    ------
    paramarena.errors.ParameterTypeError
        MXNet 1.9.1 cannot load arrays of this dtype.
    """
    if dtype.name == "bfloat16":
        return 12
    for flag in WRITABLE_FLAGS:
        candidate = TYPE_FLAGS[flag]
        if dtype.kind == candidate.kind and dtype.itemsize == candidate.itemsize:
            return flag
    names = ", ".join(TYPE_FLAGS[f].name for f in WRITABLE_FLAGS)
    raise ParameterTypeError(
        f"MXNet .params files cannot hold dtype {dtype}: MXNet 1.9.1 loads only {names}"
    )


@dataclass(frozen=True)
class RecordHeader:
    """One record's header, as found in the file.

    Attributes
    ----------
    index : int
        Position of the record in the file (0-based).
    offset : int
        Byte offset of the record's first byte.
    version : str
        ``"v0"``, ``"v1"``, ``"v2"`` or ``"v3"``.
    stype : int
        0 default, 1 row_sparse, 2 csr.
    shape : tuple of int
        Logical shape.
    storage_shape : tuple of int or None
        Shape of the stored values (sparse records only).
    dev_type, dev_id : int
        Context the array was saved from (1 cpu, 2 gpu, 3 cpu_pinned, 5 cpu_shared).
    type_flag : int
        mshadow type flag of the values.
    aux : tuple of (int, tuple of int)
        ``(type_flag, shape)`` of each aux array (row_sparse: indices; csr: indptr, indices).
    data_offset : int
        Byte offset of the values.
    end : int
        Byte offset just past the record.
    empty : bool
        The record carries no array at all (V2 with ``ndim 0`` or V3 with an unknown shape).
    """

    index: int
    offset: int
    version: str
    stype: int
    shape: tuple[int, ...]
    storage_shape: tuple[int, ...] | None
    dev_type: int
    dev_id: int
    type_flag: int
    aux: tuple[tuple[int, tuple[int, ...]], ...]
    data_offset: int
    end: int
    empty: bool = False

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the values."""
        return TYPE_FLAGS[self.type_flag]

    @property
    def stype_name(self) -> str:
        """``"default"``, ``"row_sparse"`` or ``"csr"``."""
        return STYPE_NAMES[self.stype]

    @property
    def data_nbytes(self) -> int:
        """Bytes of the stored values (sparse: the values blob only)."""
        shape = self.storage_shape if self.storage_shape is not None else self.shape
        return _count(shape) * self.dtype.itemsize

    @property
    def stored_nbytes(self) -> int:
        """Bytes of the values plus every aux array."""
        return self.data_nbytes + sum(_count(s) * TYPE_FLAGS[t].itemsize for t, s in self.aux)

    @property
    def context(self) -> str:
        """The saved context as text, e.g. ``"gpu(1)"``."""
        return f"{_DEV_TYPES.get(self.dev_type, f'dev_type {self.dev_type}')}({self.dev_id})"


@dataclass(frozen=True)
class ParamsFile:
    """Every header of a ``.params`` file, plus its names.

    Attributes
    ----------
    uri : str
        The file, for messages.
    size : int
        File size in bytes.
    records : tuple of RecordHeader
        In file order.
    names : tuple of str or None
        One name per record, or ``None`` for unnamed (list) files.
    """

    uri: str
    size: int
    records: tuple[RecordHeader, ...]
    names: tuple[str, ...] | None

    def label(self, index: int) -> str:
        """Return ``"record 3 ('fc_weight')"`` for messages."""
        if self.names is not None and index < len(self.names):
            return f"record {index} ({self.names[index]!r})"
        return f"record {index}"


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class _Cursor:
    """Sequential reads from a file of known size; every read is bounds-checked first."""

    def __init__(self, fh: IO[bytes], size: int, uri: str) -> None:
        self.fh = fh
        self.size = size
        self.uri = uri
        self.pos = 0
        self.where = "file header"

    def error(self, what: str, offset: int | None = None) -> CheckpointError:
        at = self.pos if offset is None else offset
        return CheckpointError(
            f"MXNet file {self.uri!r}: {self.where}, at byte offset {at}: {what} "
            f"(file size {self.size} bytes)"
        )

    def need(self, nbytes: int, what: str) -> None:
        if nbytes < 0 or self.pos + nbytes > self.size:
            raise self.error(
                f"{what} needs {nbytes} bytes but only {self.size - self.pos} remain "
                "(truncated or corrupt file)"
            )

    def read(self, nbytes: int, what: str) -> bytes:
        self.need(nbytes, what)
        data = self.fh.read(nbytes)
        if len(data) != nbytes:
            raise self.error(f"{what}: short read ({len(data)} of {nbytes} bytes)")
        self.pos += nbytes
        return data

    def unpack(self, fmt: str, what: str) -> Any:
        values = struct.unpack(fmt, self.read(struct.calcsize(fmt), what))
        return values[0] if len(values) == 1 else values

    def skip(self, nbytes: int, what: str) -> None:
        self.need(nbytes, what)
        self.pos += nbytes
        self.fh.seek(self.pos)

    def tshape(self, what: str, allow_unknown: bool) -> tuple[int, ...] | None:
        """Read ``i32 ndim, ndim x i64``; ``None`` for an unknown (np-shape) shape."""
        start = self.pos
        ndim = self.unpack("<i", f"{what} ndim")
        if ndim == -1 and allow_unknown:
            return None
        if ndim < 0 or ndim * 8 > self.size - self.pos:
            raise self.error(f"{what} has an impossible ndim {ndim}", start)
        dims = struct.unpack(f"<{ndim}q", self.read(8 * ndim, f"{what} dims")) if ndim else ()
        if any(d < 0 for d in dims):
            if allow_unknown and all(d >= -1 for d in dims):
                return None
            raise self.error(f"{what} has a negative dimension {tuple(dims)}", start)
        return tuple(int(d) for d in dims)


def _record(cur: _Cursor, index: int) -> RecordHeader:
    start = cur.pos
    cur.where = f"record {index} (starts at byte offset {start})"
    magic = cur.unpack("<I", "record magic")
    stype = 0
    storage_shape: tuple[int, ...] | None = None
    empty = False
    shape: tuple[int, ...] | None
    if magic in (MAGIC_V2, MAGIC_V3):
        version = "v2" if magic == MAGIC_V2 else "v3"
        stype = cur.unpack("<i", "storage type")
        if stype not in _N_AUX:
            raise cur.error(f"unknown storage type {stype} (0 default, 1 row_sparse, 2 csr)")
        if _N_AUX[stype]:
            storage_shape = cur.tshape("storage shape", allow_unknown=False) or ()
        shape = cur.tshape("shape", allow_unknown=version == "v3")
        if shape is None:
            empty = True
        elif version == "v2" and len(shape) == 0:
            # MXNet's loader stops here ("none" array). MXNet's own legacy writer nevertheless
            # followed the shape with ctx, type and one element: recover that array when the
            # next bytes are a plausible context and type (a next record starts with a magic
            # whose i32 value is negative, never a valid dev_type).
            empty = not _payload_follows(cur)
    elif magic == MAGIC_V1:
        version = "v1"
        shape = cur.tshape("shape", allow_unknown=False)
    else:
        version = "v0"
        ndim = magic
        if ndim * 4 > cur.size - cur.pos:
            raise cur.error(
                f"bad record magic 0x{magic:08X}: not V1/V2/V3 (0xF993FAC8/9/A) and too large "
                "for a pre-V1 ndim",
                start,
            )
        dims = struct.unpack(f"<{ndim}I", cur.read(4 * ndim, "pre-V1 dims")) if ndim else ()
        shape = tuple(int(d) for d in dims)
    if empty or shape is None:
        return RecordHeader(
            index, start, version, stype, (), None, 0, 0, 0, (), cur.pos, cur.pos, empty=True
        )
    dev_type, dev_id, type_flag = cur.unpack("<iii", "context and type flag")
    if dev_type not in _DEV_TYPES:
        raise cur.error(f"unknown device type {dev_type} (1 cpu, 2 gpu, 3 pinned, 5 shared)")
    if type_flag not in TYPE_FLAGS:
        raise cur.error(
            f"unknown type flag {type_flag} (known: {', '.join(map(str, sorted(TYPE_FLAGS)))})",
            cur.pos - 4,
        )
    aux: list[tuple[int, tuple[int, ...]]] = []
    for k in range(_N_AUX[stype]):
        aux_flag = cur.unpack("<i", f"aux {k} type flag")
        if aux_flag not in TYPE_FLAGS or TYPE_FLAGS[aux_flag].kind not in "iu":
            raise cur.error(f"aux array {k} has an invalid index type flag {aux_flag}")
        aux_shape = cur.tshape(f"aux {k} shape", allow_unknown=False) or ()
        aux.append((aux_flag, aux_shape))
    if stype:
        _check_sparse_header(cur, stype, shape, storage_shape or (), aux)
    header = RecordHeader(
        index,
        start,
        version,
        stype,
        shape,
        storage_shape,
        dev_type,
        dev_id,
        type_flag,
        tuple(aux),
        cur.pos,
        cur.pos,
    )
    nbytes = header.stored_nbytes
    cur.need(
        nbytes,
        f"data of shape {shape} {header.dtype.name}"
        + (f" (stored {storage_shape}, {header.stype_name})" if storage_shape is not None else ""),
    )
    _check_numpy_fits(cur, shape, header.dtype.itemsize)
    cur.skip(nbytes, "data")
    return replace(header, end=cur.pos)


#: MXNet 1.9.1 (without large-tensor support) limits arrays to fewer than 2**31 elements. Only
#: sparse records can claim a logical shape the file size does not bound.
MAX_ELEMENTS = 2**31 - 1


#: The largest array numpy can describe (bytes, as ``np.intp`` counts them).
_MAX_ARRAY_BYTES = 2**63 - 1


def _check_numpy_fits(cur: _Cursor, shape: tuple[int, ...], itemsize: int) -> None:
    """Reject shapes numpy cannot allocate even when empty, such as ``(0, 2**62)``."""
    extent = itemsize
    for d in shape:
        extent *= max(d, 1)
    if extent > _MAX_ARRAY_BYTES:
        raise cur.error(f"shape {shape} is too large for any array (over 2**63 bytes)")


def _check_sparse_header(
    cur: _Cursor,
    stype: int,
    shape: tuple[int, ...],
    storage_shape: tuple[int, ...],
    aux: list[tuple[int, tuple[int, ...]]],
) -> None:
    """Reject sparse headers whose parts cannot fit together (before anything is allocated)."""
    if _count(shape) > MAX_ELEMENTS:
        raise cur.error(
            f"sparse array of shape {shape} has more than 2**31 - 1 elements (MXNet's limit)"
        )
    if stype == 1:
        rows = aux[0][1]
        ok = (
            len(shape) >= 1
            and len(storage_shape) == len(shape)
            and storage_shape[1:] == shape[1:]
            and rows == storage_shape[:1]
            and storage_shape[0] <= shape[0]
        )
        if not ok:
            raise cur.error(
                f"row_sparse parts do not fit: shape {shape}, stored values {storage_shape}, "
                f"row indices {rows}"
            )
        return
    indptr, indices = aux[0][1], aux[1][1]
    ok = (
        len(shape) == 2
        and len(storage_shape) == 1
        and indptr == (shape[0] + 1,)
        and indices == storage_shape
        and storage_shape[0] <= shape[0] * shape[1]
    )
    if not ok:
        raise cur.error(
            f"csr parts do not fit: shape {shape}, stored values {storage_shape}, "
            f"indptr {indptr}, indices {indices}"
        )


def _payload_follows(cur: _Cursor) -> bool:
    if cur.size - cur.pos < 12:
        return False
    here = cur.pos
    dev_type, dev_id, type_flag = struct.unpack("<iii", cur.fh.read(12))
    cur.fh.seek(here)
    if dev_type not in _DEV_TYPES or dev_id < 0 or type_flag not in TYPE_FLAGS:
        return False
    return cur.size - here - 12 >= TYPE_FLAGS[type_flag].itemsize


def parse_headers(fh: IO[bytes], size: int, uri: str) -> ParamsFile:
    """Read every record header and the names, seeking past all array data.

    Parameters
    ----------
    fh : binary file
        Seekable, positioned anywhere (it is rewound).
    size : int
        The file size in bytes; every length in the file is checked against it.
    uri : str
        The file, for messages.

    Returns
    -------
    ParamsFile

    Raises
    ------
    paramarena.errors.CheckpointError
        Bad magic, truncation, impossible sizes, an unknown type flag, or a name count that is
        neither 0 nor the array count; the message names the file, record and byte offset.
    """
    fh.seek(0)
    cur = _Cursor(fh, size, uri)
    if size < 24:
        raise cur.error(f"too short for an MXNet .params header (24 bytes needed, {size} given)")
    magic, _reserved, count = cur.unpack("<QQQ", "header")
    if magic != LIST_MAGIC:
        raise CheckpointError(
            f"{uri!r} is not an MXNet .params file: list magic at byte offset 0 is "
            f"0x{magic:X}, expected 0x{LIST_MAGIC:X}"
        )
    if count * 4 > size - cur.pos:
        raise cur.error(f"claims {count} arrays, more than the file can hold", 16)
    records = [_record(cur, i) for i in range(count)]
    cur.where = "names block"
    n_names = cur.unpack("<Q", "name count")
    if n_names not in (0, count):
        raise cur.error(
            f"holds {n_names} names for {count} arrays (must be 0 or {count})", cur.pos - 8
        )
    names: list[str] = []
    for i in range(n_names):
        cur.where = f"name {i}"
        length = cur.unpack("<Q", "name length")
        raw = cur.read(length, f"name of {length} bytes")
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise cur.error(f"name is not valid UTF-8: {exc}", cur.pos - length) from None
    # Bytes after the names are ignored, as MXNet does.
    return ParamsFile(uri, size, tuple(records), tuple(names) if n_names else None)


def _read_array(
    fh: IO[bytes], offset: int, dtype: np.dtype[Any], shape: tuple[int, ...]
) -> np.ndarray:
    arr = np.empty(shape, dtype=dtype)
    if arr.nbytes:
        fh.seek(offset)
        view = arr.reshape(-1).view(np.uint8).data
        got = 0
        while got < arr.nbytes:
            n = fh.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                break
            got += n
        if got != arr.nbytes:
            raise OSError(f"short read: {got} of {arr.nbytes} bytes at offset {offset}")
    return arr


#: Default cap on the dense array a sparse record may expand to (``max_dense_bytes``).
DEFAULT_MAX_DENSE_BYTES = 2**30


def read_record(
    fh: IO[bytes],
    parsed: ParamsFile,
    index: int,
    *,
    sparse: str = "dense",
    max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
) -> np.ndarray:
    """Read record ``index`` as a numpy array (sparse records densified, values exact).

    Parameters
    ----------
    fh : binary file
        The file ``parsed`` came from.
    parsed : ParamsFile
        From :func:`parse_headers`.
    index : int
        Record position.
    sparse : {"dense", "error"}
        ``"dense"`` returns sparse arrays as dense numpy arrays; ``"error"`` refuses them.
    max_dense_bytes : int
        The largest dense array a sparse record may expand to (default 1 GiB): a few stored
        bytes can describe a huge mostly-empty array.

    Raises
    ------
    paramarena.errors.CheckpointError
        The record is empty (MXNet cannot load it either), sparse with ``sparse="error"``,
        has out-of-range sparse indices, or the file changed under us.
    """
    header = parsed.records[index]
    label = f"MXNet file {parsed.uri!r}: {parsed.label(index)} at byte offset {header.offset}"
    if header.empty:
        raise CheckpointError(
            f"{label} holds no array (a {header.version.upper()} record with "
            f"{'ndim 0' if header.version == 'v2' else 'an unknown shape'}); MXNet cannot load "
            "it either"
        )
    try:
        if header.stype == 0:
            return _read_array(fh, header.data_offset, header.dtype, header.shape)
        if sparse != "dense":
            raise CheckpointError(
                f"{label} is a {header.stype_name} sparse array; load with sparse='dense'"
            )
        dense_bytes = _count(header.shape) * header.dtype.itemsize
        if dense_bytes > max_dense_bytes:
            raise CheckpointError(
                f"{label} is a {header.stype_name} sparse array of shape {header.shape} "
                f"{header.dtype.name} that would expand to {dense_bytes} dense bytes, over "
                f"max_dense_bytes={max_dense_bytes} (pass a larger max_dense_bytes to load it)"
            )
        stored_shape = header.storage_shape or ()
        values = _read_array(fh, header.data_offset, header.dtype, stored_shape)
        offset = header.data_offset + header.data_nbytes
        aux = []
        for flag, shape in header.aux:
            aux.append(_read_array(fh, offset, TYPE_FLAGS[flag], shape).astype(np.int64))
            offset += _count(shape) * TYPE_FLAGS[flag].itemsize
    except OSError as exc:
        raise CheckpointError(f"{label}: cannot read its data: {exc}") from exc
    return _densify(label, header, values, aux)


def _densify(
    label: str, header: RecordHeader, values: np.ndarray, aux: list[np.ndarray]
) -> np.ndarray:
    shape = header.shape
    dense = np.zeros(shape, dtype=header.dtype)
    if header.stype == 1:
        (rows,) = aux
        if len(shape) < 1 or values.shape[:1] != rows.shape or values.shape[1:] != shape[1:]:
            raise CheckpointError(
                f"{label}: row_sparse values {values.shape} do not fit {len(rows)} rows of {shape}"
            )
        if rows.size and (rows.min() < 0 or rows.max() >= shape[0]):
            raise CheckpointError(f"{label}: row index out of range for shape {shape}")
        dense[rows] = values
        return dense
    indptr, indices = aux
    if len(shape) != 2 or indptr.shape != (shape[0] + 1,) or indices.shape != values.shape:
        raise CheckpointError(
            f"{label}: csr parts (indptr {indptr.shape}, indices {indices.shape}, values "
            f"{values.shape}) do not fit shape {shape}"
        )
    if (
        indptr[0] != 0
        or indptr[-1] != values.size
        or np.any(np.diff(indptr) < 0)
        or (indices.size and (indices.min() < 0 or indices.max() >= shape[1]))
    ):
        raise CheckpointError(f"{label}: csr indptr/indices are out of range for {shape}")
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    dense[rows, indices] = values
    return dense
