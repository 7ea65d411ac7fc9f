"""Reading a ``manifest.json`` as paramarena writes it: its columns straight from the bytes.

``json.loads`` of the manifest of 100k parameters builds a dict, a list and ten values per
entry (~0.2 s and ~80 MiB), which the validation then walks again. The writer
(:mod:`paramarena.storage.zarr.manifest`) always produces one exact compact encoding::

    <header object without its "}">,"parameters":[{"name":"<name>","shape":[<d>,...],
    "dtype":"<dtype>","array":"<array>","offset":<int>,"size":<int>,"nbytes":<int>,
    "crc32c":"<8 hex>"[,"init_key":"<16 hex>"]},...]}

:func:`scan` recognizes exactly that encoding with a few vectorized passes over the bytes (the
quotes of every entry at fixed places, every literal between them compared at once) and returns
the columns, with no Python object per entry but its name. Everything else (whitespace, escapes,
non-ASCII text, another field order or set, init keys on some entries only, a number with a
sign, a fraction or more than 19 digits, ...) returns None: the caller then parses the document
with ``json`` and validates it entry by entry, naming the bad field. What :func:`scan` accepts
is therefore a subset of what that path accepts; :func:`paramarena.storage.zarr.validate.
read_manifest` applies every check of the entry-by-entry validation to the columns (a test
compares the records of both paths).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from paramarena.errors import CorruptCheckpointError
from paramarena.storage.zarr import validate
from paramarena.storage.zarr.manifest_record import Manifest

__all__ = ["Scanned", "read_manifest", "scan"]

_MARK = b',"parameters":['
_ONLY = b'{"parameters":['
_SHAPE = re.compile(r"(?:0|[1-9][0-9]*)(?:,(?:0|[1-9][0-9]*))*")
#: the most digits :func:`_digits` reads (2**62 has 19)
_MAX_DIGITS = 19


@dataclass(frozen=True)
class Scanned:
    """The header fields and the parameter columns of a manifest in the writer's encoding.

    Nothing here is validated beyond the encoding: the strings are what ``json`` would decode
    (no escapes), the integers are in ``[0, 10**19)``, the checksums and keys are hex.
    """

    header: dict[str, Any]
    names: list[str]
    #: per text column: its distinct values (first seen first) and each entry's index in them
    shapes: tuple[list[str], np.ndarray]
    dtypes: tuple[list[str], np.ndarray]
    arrays: tuple[list[str], np.ndarray]
    offsets: np.ndarray
    sizes: np.ndarray
    nbytes: np.ndarray
    crcs: np.ndarray
    init_keys: np.ndarray | None


def _split(raw: bytes) -> tuple[dict[str, Any], int] | None:
    """Return the header (parsed) and where the body of the ``parameters`` array starts.

    The body ends 2 bytes before the end (``]}``).
    """
    if not raw.endswith(b"]}"):
        return None
    if raw.startswith(_ONLY):
        head, start = b"{}", len(_ONLY)
    else:
        at = raw.find(_MARK)
        if at < 0:
            return None
        # a quote after a comma is never inside a JSON string, and a prefix that one "}"
        # closes into a valid object puts the key at the top level
        if raw[:at].strip() == b"{":  # "{,": not JSON, though "{}" is
            return None
        head, start = raw[:at] + b"}", at + len(_MARK)
    if start > len(raw) - 2:
        return None
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if type(header) is not dict or "parameters" in header:
        return None
    return header, start


def _words(raw: bytes, start: int, size: int) -> np.ndarray:
    """Return the 8 bytes from each position of ``raw[start:start + size]`` as one word.

    An overlapping little-endian view (stride 1, no copy): one gather compares 8 bytes of
    every entry.
    """
    if size < 8:
        return np.zeros(0, np.uint64)
    return np.ndarray((size - 7,), np.dtype("<u8"), raw, start, (1,))


def _word(text: bytes) -> np.uint64:
    return np.uint64(int.from_bytes(text.ljust(8, b"\0"), "little"))


def _literal_at(body: np.ndarray, words: np.ndarray, at: np.ndarray, text: bytes) -> bool:
    """Whether ``text`` sits at every position ``at`` of ``body``."""
    if not len(at):
        return True
    if int(at.min()) < 0 or int(at.max()) + len(text) > len(body):
        return False
    if len(text) < 8:
        return not any(np.any(body[at + j] != byte) for j, byte in enumerate(text))
    # 8 bytes at a time; the last word overlaps the one before it
    steps = [*range(0, len(text) - 8, 8), len(text) - 8]
    return not any(np.any(words[at + j] != _word(text[j : j + 8])) for j in steps)


#: Entries whose digits are decoded at once (bounds the temporaries: a row per entry).
_ROWS = 1 << 14


def _rows(words: np.ndarray, at: np.ndarray, width: int) -> np.ndarray | None:
    """Return ``width`` bytes from each position ``at`` as rows, 8 bytes per gather.

    ``words`` is :func:`_words` of the body. None when a row would run past its end.
    """
    k = -(-width // 8)
    if len(at) and (int(at.min()) < 0 or int(at.max()) + 8 * (k - 1) >= len(words)):
        return None
    parts = [words[at + 8 * j] for j in range(k)]  # little-endian words: bytes in order
    joined = np.stack(parts, axis=1) if k > 1 else parts[0][:, None]
    return joined.view(np.uint8).reshape(len(at), 8 * k)[:, :width]


def _digits(
    body: np.ndarray, words: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray | None:
    """Return the JSON non-negative integers in ``body[lo:hi]`` (int64), or None.

    Each must be 1 to 19 digits, without a leading zero, below ``5 * 10**18`` (int64 holds it).
    """
    length = hi - lo
    if len(lo) == 0:
        return np.zeros(0, np.int64)
    if int(length.min()) < 1 or int(length.max()) > _MAX_DIGITS:
        return None
    first = body[lo]
    if np.any((first == ord("0")) & (length > 1)):
        return None
    if np.any((length == _MAX_DIGITS) & (first > ord("4"))):
        return None
    widest = int(length.max())
    powers = 10 ** np.arange(widest - 1, -1, -1, dtype=np.int64)
    column = np.arange(widest)
    value = np.empty(len(lo), np.int64)
    for a in range(0, len(lo), _ROWS):  # right-aligned rows: column j is digit j of ``widest``
        b = min(a + _ROWS, len(lo))
        rows = _rows(words, hi[a:b] - widest, widest)
        if rows is None:
            return None
        digit = rows.astype(np.int64) - ord("0")
        used = column >= (widest - length[a:b])[:, None]
        if np.any(used & ((digit < 0) | (digit > 9))):
            return None
        value[a:b] = np.where(used, digit, 0) @ powers
    return value


def _hex(words: np.ndarray, lo: np.ndarray, hi: np.ndarray, width: int) -> np.ndarray | None:
    """Return the lower-case hex numbers of exactly ``width`` digits in ``body[lo:hi]``.

    ``width`` is 8 or 16 (a crc32c, an init key).
    """
    if len(lo) and not np.all(hi - lo == width):
        return None
    value = np.empty(len(lo), np.uint64)
    for a in range(0, len(lo), _ROWS):
        b = min(a + _ROWS, len(lo))
        rows = _rows(words, lo[a:b], width)
        if rows is None:
            return None
        if not np.all(((rows >= 0x30) & (rows <= 0x39)) | ((rows >= 0x61) & (rows <= 0x66))):
            return None
        nib = (rows & 0x0F) + 9 * (rows >> 6)  # '0'-'9': 0-9, 'a'-'f': 10-15
        pairs = np.ascontiguousarray((nib[:, 0::2] << 4) | nib[:, 1::2])  # the bytes, in order
        value[a:b] = pairs.view(f">u{width // 2}").reshape(-1)
    return value


def _strings(
    data: memoryview, words: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[list[str], np.ndarray] | None:
    """Return the distinct ``data[lo:hi]`` as text (first seen first) and each entry's index.

    Entries are told apart by their bytes read as words (no str per entry); None when a span
    is longer than 64 bytes.
    """
    n = len(lo)
    if n == 0:
        return [], np.zeros(0, np.intp)
    length = hi - lo
    if int(length.max()) > 64 or not len(words):
        return None
    parts = []
    for j in range(0, int(length.max()) or 1, 8):
        at = np.minimum(lo + j, len(words) - 1)
        keep = np.clip(length - j, 0, 8).astype(np.uint64) * np.uint64(8)
        # the bytes of the span in this word, the rest zero (a span never holds a NUL)
        mask = np.where(keep == 64, np.uint64(2**64 - 1), (np.uint64(1) << keep) - np.uint64(1))
        parts.append(words[at] & mask)
    keys = np.stack(parts, axis=1) if len(parts) > 1 else parts[0]
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # distinct values in the order they first appear
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    values = [str(data[int(lo[i]) : int(hi[i])], "ascii") for i in first[order].tolist()]
    return values, rank[inverse.reshape(-1)]


#: Bytes (quotes) and entries (names) handled at once: bounds the temporary memory.
_BLOCK = 1 << 20


def _quotes(body: np.ndarray) -> np.ndarray:
    """Return the positions of every ``"`` in ``body`` (int32 when they fit), block by block."""
    kind = np.dtype(np.int32 if len(body) < 2**31 else np.int64)
    parts = [
        np.flatnonzero(body[at : at + _BLOCK] == ord('"')).astype(kind) + np.array(at, kind)
        for at in range(0, len(body), _BLOCK)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, kind)


def _names(
    data: memoryview, starts: np.ndarray, ends: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> list[str]:
    """Return ``data[lo:hi]`` of every entry as text, decoding a block of entries at a time."""
    names: list[str] = []
    step = 1 << 13
    for first in range(0, len(lo), step):
        last = min(first + step, len(lo))
        a, b = int(starts[first]), int(ends[last - 1])
        text = str(data[a:b], "ascii")
        lows, highs = (lo[first:last] - a).tolist(), (hi[first:last] - a).tolist()
        names += map(text.__getitem__, map(slice, lows, highs))
    return names


def scan(raw: bytes) -> Scanned | None:
    """Return the columns of a manifest in the writer's exact encoding, else None."""
    split = _split(raw)
    if split is None:
        return None
    header, start = split
    stop = len(raw) - 2
    body = np.frombuffer(raw, np.uint8, stop - start, start)  # a view: nothing copied
    if len(body) and (int(body.min()) < 0x20 or int(body.max()) >= 0x80):
        return None  # control bytes or non-ASCII text: json decodes them
    if raw.find(b"\\", start, stop) >= 0:
        return None  # escapes
    has_key = raw.find(b'"init_key":', start, stop) >= 0
    per = 28 if has_key else 24
    quotes = _quotes(body)
    if len(quotes) % per:
        return None
    q = quotes.reshape(-1, per).T  # q[k]: the k-th quote of every entry
    n = q.shape[1]
    tail = q[27] if has_key else q[23]
    literals = [
        (q[0] - 1, b'{"name":"'),
        (q[3], b'","shape":['),
        (q[6] - 2, b'],"dtype":"'),
        (q[9], b'","array":"'),
        (q[13], b'","offset":'),
        (q[16] - 1, b',"size":'),
        (q[18] - 1, b',"nbytes":'),
        (q[20] - 1, b',"crc32c":"'),
        *([(q[23], b'","init_key":"')] if has_key else []),
        (tail, b'"}'),
    ]
    words = _words(raw, start, len(body))
    if not all(_literal_at(body, words, at, lit) for at, lit in literals):
        return None
    # entries tile the body, one comma between neighbours
    starts, ends = q[0] - 1, tail + 2
    if n:
        if int(starts[0]) != 0 or int(ends[-1]) != len(body):
            return None
        if not np.array_equal(starts[1:], ends[:-1] + 1):
            return None
        if len(ends) > 1 and not np.all(body[ends[:-1]] == ord(",")):
            return None
    elif len(body):
        return None
    offsets = _digits(body, words, q[13] + 11, q[16] - 1)
    sizes = _digits(body, words, q[16] + 7, q[18] - 1)
    nbytes = _digits(body, words, q[18] + 9, q[20] - 1)
    crcs = _hex(words, q[22] + 1, q[23], 8)
    keys = _hex(words, q[26] + 1, q[27], 16) if has_key else None
    if offsets is None or sizes is None or nbytes is None or crcs is None:
        return None
    if has_key and keys is None:
        return None
    data = memoryview(raw)[start:stop]
    shapes = _strings(data, words, q[5] + 3, q[6] - 2)
    dtypes = _strings(data, words, q[8] + 1, q[9])
    arrays = _strings(data, words, q[12] + 1, q[13])
    if shapes is None or dtypes is None or arrays is None:
        return None
    return Scanned(
        header=header,
        names=_names(data, starts, ends, q[2] + 1, q[3]),
        shapes=shapes,
        dtypes=dtypes,
        arrays=arrays,
        offsets=offsets,
        sizes=sizes,
        nbytes=nbytes,
        crcs=crcs.astype(np.uint32),
        init_keys=keys,
    )


def parse_shape(text: str) -> tuple[int, ...] | None:
    """Return the dimensions of a shape's JSON text between the brackets, or None."""
    if not text:
        return ()
    if not _SHAPE.fullmatch(text):
        return None
    return tuple(map(int, text.split(",")))


def read_manifest(
    raw: bytes, where: str, formats: Collection[str], max_format_version: int
) -> tuple[dict[str, Any], Manifest]:
    """Parse and validate a ``manifest.json``; return its header fields and its record.

    The writer's encoding is read column-wise (:func:`scan`) and checked exactly as
    :func:`~paramarena.storage.zarr.validate.manifest` checks parsed JSON; any other document,
    or one that fails a check, goes through ``json`` and that validation, which names the
    field. The header holds every top-level field but ``parameters``.

    Raises
    ------
    paramarena.errors.CorruptCheckpointError
        The document is not valid JSON or does not match the schema.
    """
    scanned = scan(raw)
    record = _record(scanned, where, formats, max_format_version) if scanned else None
    if scanned is None or record is None:
        doc = validate.parse_json(raw, where)
        record = validate.manifest(doc, where, formats, max_format_version)
        return {k: v for k, v in doc.items() if k != "parameters"}, record
    return scanned.header, record


def _record(
    s: Scanned, where: str, formats: Collection[str], max_format_version: int
) -> Manifest | None:
    """Return the record of scanned columns if they pass every check of the JSON path."""
    try:
        fmt, version, named = validate.manifest_header(s.header, where, formats, max_format_version)
        for a in s.arrays[0]:
            validate.plain_name(a, where, "array")
    except CorruptCheckpointError:
        return None
    n = len(s.names)
    itemsizes = validate.itemsizes()
    kinds, kind_of = s.dtypes
    if not set(kinds) <= itemsizes.keys() or len(set(s.names)) != n:
        return None
    widest = max((itemsizes[d] for d in kinds), default=1)
    shapes: list[tuple[int, ...]] = []
    counts: list[int] = []
    for text in s.shapes[0]:
        shape = parse_shape(text)
        if shape is None or len(shape) > validate.MAX_NDIM or any(d > 2**62 for d in shape):
            return None
        count = math.prod(shape)
        if count > 2**62 or widest * math.prod(max(d, 1) for d in shape) > 2**63 - 1:
            return None  # the entry-by-entry checks name the entry
        shapes.append(shape)
        counts.append(count)
    shape_of = s.shapes[1]
    count_of = np.array(counts, np.int64)[shape_of]
    itemsize = np.array([itemsizes[d] for d in kinds], np.int64)[kind_of]
    if (
        np.any(s.offsets > 2**62)
        or np.any(s.nbytes > 2**62)
        or not np.array_equal(s.sizes, count_of)
        or not np.array_equal(s.nbytes, count_of * itemsize)
    ):
        return None
    return Manifest(
        fmt,
        version,
        named,
        tuple(s.names),
        _column(shapes, shape_of),
        _column(kinds, kind_of),
        _column(*s.arrays),
        s.offsets,
        s.sizes,
        s.nbytes,
        s.crcs,
        s.init_keys,
    )


def _column(values: list[Any], index: np.ndarray) -> tuple[Any, ...]:
    """Return ``values[index[i]]`` for every entry (the values shared, not copied)."""
    if len(values) == 1:
        return (values[0],) * len(index)
    table = np.empty(len(values), dtype=object)
    table[:] = values
    return tuple(table[index].tolist())
