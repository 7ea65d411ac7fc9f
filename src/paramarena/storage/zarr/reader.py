"""Reading the parameters of a committed zarr checkpoint version, column by column.

The validated manifest (:class:`~paramarena.storage.zarr.validate.Manifest`) holds one column
per field; the reader works on index lists into it, so that the per-parameter work is a few
C-level operations (a ``crc32c`` call, a view) rather than Python objects and dictionary
lookups per parameter. On local disk without compression the chunk files are read directly
(:mod:`paramarena.storage.zarr.local`): every chunk read whole has its crc32c checked, and every
parameter its own crc32c. Other stores read through zarr.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from paramarena.errors import CorruptCheckpointError, MissingParameterError, StorageError
from paramarena.storage.fileio import progress_reporter
from paramarena.storage.remote import is_transient
from paramarena.storage.zarr import guard
from paramarena.storage.zarr.local import (
    RawLayout,
    open_chunk,
    raw_layout,
    read_ranges,
    read_scattered,
)
from paramarena.storage.zarr.validate import Manifest
from paramarena.storage.zarr.writer import storage_dtype

__all__ = ["logical_dtype", "read", "select"]

Problems = list[tuple[str, str]]


@functools.lru_cache(maxsize=64)
def logical_dtype(logical: str) -> np.dtype[Any]:
    """Return the numpy dtype of a manifest's logical dtype name (bfloat16 via ml_dtypes)."""
    if logical == "bfloat16":
        import ml_dtypes

        bf16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bf16
    return np.dtype(logical)


def _crc32c() -> Any:
    import crc32c

    return crc32c.crc32c


def select(uri: str, record: Manifest, names: Collection[str] | None) -> list[int]:
    """Return the manifest indices of ``names`` (all parameters if None), in stored order.

    Raises
    ------
    paramarena.errors.MissingParameterError
        A name is not in the manifest.
    """
    if names is None or (len(names) == len(record.names) and tuple(names) == record.names):
        return list(range(len(record.names)))  # everything in stored order: no index needed
    index = record.index
    missing = [n for n in names if n not in index]
    if missing:
        raise MissingParameterError(
            f"zarr checkpoint {uri!r} has no parameter(s) {missing}; it contains "
            f"{len(index)} parameters."
        )
    return sorted({index[n] for n in names})


def read(
    loc: Any,
    version: str,
    record: Manifest,
    picked: Sequence[int],
    progress: bool | None,
    into: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], Problems]:
    """Read the parameters ``picked`` (manifest indices); return arrays and problems.

    An entry named in ``into`` whose array fits (C-contiguous, writable, same shape and
    dtype) is read into that array (local uncompressed checkpoints); the others get new arrays.
    Every array returned passed its crc32c check; each parameter that did not is a problem
    ``(name, why)`` instead.
    """
    out: dict[str, np.ndarray] = {}
    problems: Problems = []
    by_array = _by_array(record, picked)
    total = int(record.nbytes[np.asarray(picked, dtype=np.intp)].sum()) if len(picked) else 0
    group: Any = None
    with progress_reporter(total, f"load {loc.uri}", progress) as update:
        for arr_name, idx in by_array.items():
            sdtype = storage_dtype(record.dtypes[idx[0]])
            layout = raw_layout(loc.join(version, arr_name), sdtype) if loc.local else None
            if layout is not None:
                _read_raw(layout, arr_name, record, idx, out, problems, into or {})
            else:
                if group is None:
                    group = guard.open_group(loc, version)
                _read_zarr(loc, group, version, arr_name, record, idx, out, problems)
            update(int(record.nbytes[np.asarray(idx, dtype=np.intp)].sum()))
    return out, problems


#: Mean bytes per parameter from which a whole packed array is read window by window.
LARGE_PARAMETER_BYTES = 64 << 10


def _by_array(record: Manifest, picked: Sequence[int]) -> dict[str, list[int]]:
    """Group ``picked`` (stored order) by packed array."""
    if len(picked) == len(record.names):  # everything: the manifest's own grouping
        return {a: idx for a, (idx, _dtypes, _end) in record.groups.items()}
    by_array: dict[str, list[int]] = {}
    arrays = record.arrays
    for i in picked:
        group = by_array.get(arrays[i])
        if group is None:
            group = by_array[arrays[i]] = []
        group.append(i)
    return by_array


def _fitting(array: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray | None:
    """Return ``array`` if a parameter's stored bytes can be read straight into it, else None."""
    if (
        isinstance(array, np.ndarray)
        and array.flags.c_contiguous
        and array.flags.writeable
        and array.shape == shape
        and array.dtype == dtype
    ):
        return array
    return None


def _check(
    record: Manifest,
    idx: Sequence[int],
    crcs: list[int],
    failed_chunks: Mapping[int, str],
    chunk_of: tuple[np.ndarray, np.ndarray] | None,
    arr_name: str,
) -> dict[int, str]:
    """Return ``{position in idx: why}`` for the parameters that failed a check."""
    expected = record.crcs[np.asarray(idx, dtype=np.intp)]
    wrong = np.flatnonzero(expected != np.array(crcs, dtype=np.uint32))
    why: dict[int, str] = {int(r): "crc32c checksum mismatch" for r in wrong}
    if failed_chunks and chunk_of is not None:
        first, last = chunk_of
        for r in range(len(idx)):
            hit = [
                failed_chunks[k]
                for k in range(int(first[r]), int(last[r]) + 1)
                if k in failed_chunks
            ]
            if hit:
                why[r] = f"{'; '.join(hit)} in {arr_name!r}"
    return dict(sorted(why.items()))


def _read_raw(
    layout: RawLayout,
    arr_name: str,
    record: Manifest,
    idx: list[int],
    out: dict[str, np.ndarray],
    problems: Problems,
    into: Mapping[str, np.ndarray],
) -> None:
    """Read ``idx`` of one packed array straight from its chunk files (local disk)."""
    crc = _crc32c()
    at = np.asarray(idx, dtype=np.intp)
    offsets, sizes = record.offsets[at], record.sizes[at]
    names = [record.names[i] for i in idx]
    shapes = [record.shapes[i] for i in idx]
    dtype = logical_dtype(record.dtypes[idx[0]])
    sdtype = storage_dtype(record.dtypes[idx[0]])
    same = [record.dtypes[i] == record.dtypes[idx[0]] for i in idx]  # one array, one dtype
    if not all(same):  # validated not to happen; never hand out views of the wrong type
        for i in idx:
            problems.append((record.names[i], f"dtype differs from {arr_name!r}"))
        return
    given = (
        [_fitting(into.get(n), s, dtype) for n, s in zip(names, shapes, strict=True)]
        if into
        else []
    )
    with np.errstate(over="ignore"):
        first = offsets // layout.chunk
        last = (offsets + np.maximum(sizes, 1) - 1) // layout.chunk
    chunk_of = (first, np.where(sizes > 0, last, first - 1))
    if not any(g is not None for g in given) and int(sizes.sum()) == layout.count:
        # the whole array: one buffer, each parameter a view of it; every chunk read whole
        # a window at a time, its crc32c and the parameters' checked while in cache
        # (many small parameters: one readv per chunk, then a crc32c call per parameter)
        packed = np.empty(layout.count, dtype=sdtype)
        lo, hi = offsets.tolist(), (offsets + sizes).tolist()
        flats = [packed[a:b] for a, b in zip(lo, hi, strict=True)]
        if layout.count * layout.itemsize >= len(idx) * LARGE_PARAMETER_BYTES:
            crcs = [0] * len(flats)
            bad = read_scattered(layout, offsets, sizes, flats, crcs)
        else:
            bad = read_ranges(layout, [(0, packed)])
            crcs = [crc(f) for f in flats]
        why = _check(record, idx, crcs, bad, chunk_of, arr_name)
        _hand_out(names, shapes, flats, [], dtype, why, out, problems)
        return
    sizes_l = sizes.tolist()
    if given:
        # the given arrays themselves (C-contiguous: readv and crc32c take them as they are);
        # viewed as the storage dtype where they hold another (bfloat16, bool)
        as_is = dtype == sdtype
        targets = [
            (g if as_is else g.reshape(-1).view(sdtype)) if g is not None else np.empty(n, sdtype)
            for g, n in zip(given, sizes_l, strict=True)
        ]
    else:
        targets = [np.empty(n, sdtype) for n in sizes_l]
    crcs = [0] * len(targets)  # each target's crc32c, computed as its bytes arrive
    bad = read_scattered(layout, offsets, sizes, targets, crcs)
    why = _check(record, idx, crcs, bad, chunk_of, arr_name)
    _hand_out(names, shapes, targets, given, dtype, why, out, problems)


def _hand_out(
    names: Sequence[str],
    shapes: Sequence[tuple[int, ...]],
    flats: Sequence[np.ndarray],
    given: Sequence[np.ndarray | None],
    dtype: np.dtype[Any],
    why: Mapping[int, str],
    out: dict[str, np.ndarray],
    problems: Problems,
) -> None:
    """Put each checked parameter in ``out`` (``why``'s failures in ``problems``).

    A parameter read into the caller's array (``given``) is that very array; the others are
    their flat storage buffer, viewed as ``dtype`` and reshaped.
    """
    for r, (name, shape, flat) in enumerate(zip(names, shapes, flats, strict=True)):
        reason = why.get(r)
        if reason is not None:
            problems.append((name, reason))
            continue
        mine = given[r] if given else None
        if mine is not None:
            out[name] = mine  # the caller's very array, filled in place
        else:
            out[name] = (flat if flat.dtype == dtype else flat.view(dtype)).reshape(shape)


def _packed(group: Any, name: str) -> Any:
    import zarr

    node = guard.zarr_node(group, name)
    if not isinstance(node, zarr.Array):
        raise KeyError(name)
    return node


def _read_zarr(
    loc: Any,
    group: Any,
    version: str,
    arr_name: str,
    record: Manifest,
    idx: list[int],
    out: dict[str, np.ndarray],
    problems: Problems,
) -> None:
    """Read ``idx`` of one packed array through zarr (remote stores, compressed arrays)."""
    try:
        zarr_array = _packed(group, arr_name)
    except KeyError:
        for i in idx:
            problems.append((record.names[i], f"packed array {arr_name!r} is missing"))
        return
    chunk = int(zarr_array.chunks[0])
    count = int(zarr_array.shape[0])
    present = set(loc.list_dir(version, arr_name, "c"))
    whole = int(record.sizes[np.asarray(idx, dtype=np.intp)].sum()) == count
    packed = None
    cache: dict[int, np.ndarray] = {}
    n_chunks = -(-count // chunk)
    if whole and all(str(i) in present for i in range(n_chunks)):
        # one read for the whole array; on a checksum failure fall back to per-parameter
        # reads so that only the damaged parameters are reported
        with contextlib.suppress(CorruptCheckpointError):
            packed = _read_range(loc, zarr_array, 0, count, arr_name)
    crc = _crc32c()
    for i in idx:
        name, lo, size = record.names[i], int(record.offsets[i]), int(record.sizes[i])
        sdtype = storage_dtype(record.dtypes[i])
        need = range(lo // chunk, -(-(lo + size) // chunk)) if size else range(0)
        absent = [c for c in need if str(c) not in present]
        if absent:
            problems.append((name, f"chunk(s) {absent} of {arr_name!r} are missing"))
            continue
        try:
            flat = (
                packed[lo : lo + size]
                if packed is not None
                else _from_chunks(loc, zarr_array, cache, lo, size, sdtype)
            )
        except CorruptCheckpointError as exc:
            problems.append((name, f"chunk checksum failed: {exc}"))
            continue
        flat = np.ascontiguousarray(flat)
        if crc(flat.view(np.uint8)) != int(record.crcs[i]):
            problems.append((name, "crc32c checksum mismatch"))
            continue
        out[name] = flat.view(logical_dtype(record.dtypes[i])).reshape(record.shapes[i])


def _from_chunks(
    loc: Any,
    zarr_array: Any,
    cache: dict[int, np.ndarray],
    lo: int,
    size: int,
    dtype: np.dtype[Any],
) -> np.ndarray:
    """Assemble elements ``[lo, lo + size)`` reading each chunk at most once."""
    chunk = int(zarr_array.chunks[0])
    end = lo + size
    parts = []
    for c in range(lo // chunk, -(-end // chunk)):
        if c not in cache:
            hi = min((c + 1) * chunk, int(zarr_array.shape[0]))
            cache[c] = _read_range(loc, zarr_array, c * chunk, hi, zarr_array.path)
        parts.append(
            cache[c][max(lo, c * chunk) - c * chunk : min(end, (c + 1) * chunk) - c * chunk]
        )
    if not parts:
        return np.empty(0, dtype=dtype)
    return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


def _read_range(loc: Any, zarr_array: Any, lo: int, hi: int, arr_name: str) -> Any:
    try:
        return np.asarray(zarr_array[lo:hi])
    except Exception as exc:  # zarr raises codec errors on crc32c mismatch
        if isinstance(exc, StorageError) or is_transient(exc):
            raise  # a network failure is not damage (paramarena.storage.remote)
        raise CorruptCheckpointError(
            f"zarr checkpoint {loc.uri!r}: array {arr_name!r} elements [{lo}, {hi}) cannot "
            f"be read: {type(exc).__name__}: {exc}"
        ) from exc


#: Bytes read at once when checking arrays that are not read chunk file by chunk file.
CHECK_BATCH_BYTES = 64 << 20


def check(loc: Any, version: str, record: Manifest, picked: Sequence[int]) -> Problems:
    """Read and check the parameters ``picked`` like :func:`read`, keeping nothing.

    Local uncompressed arrays are streamed one chunk file at a time through a window of
    :data:`CHECK_WINDOW` bytes (each chunk the parameters cover completely has its crc32c
    checked, every parameter its own crc32c, carried across windows and chunks); other arrays
    are read through zarr in batches of :data:`CHECK_BATCH_BYTES`. Memory: one window, or one
    batch.
    """
    problems: Problems = []
    by_array = _by_array(record, picked)
    group: Any = None
    for arr_name, idx in by_array.items():
        sdtype = storage_dtype(record.dtypes[idx[0]])
        layout = raw_layout(loc.join(version, arr_name), sdtype) if loc.local else None
        if layout is not None:
            _check_raw(layout, arr_name, record, idx, problems)
            continue
        if group is None:
            group = guard.open_group(loc, version)
        batch: list[int] = []
        size = 0
        for i in [*idx, -1]:
            nbytes = int(record.nbytes[i]) if i >= 0 else 0
            if batch and (i < 0 or size + nbytes > CHECK_BATCH_BYTES):
                _read_zarr(loc, group, version, arr_name, record, batch, {}, problems)
                batch, size = [], 0
            if i >= 0:
                batch.append(i)
                size += nbytes
    return problems


def _check_raw(
    layout: RawLayout, arr_name: str, record: Manifest, idx: list[int], problems: Problems
) -> None:
    """Stream the chunk files holding ``idx`` and check them (see :func:`check`)."""
    crc = _crc32c()
    isz, cb = layout.itemsize, layout.chunk * layout.itemsize  # cb: data bytes per chunk
    at = np.asarray(idx, dtype=np.intp)
    at = at[np.argsort(record.offsets[at], kind="stable")]
    lo_a = record.offsets[at] * isz
    hi_a = lo_a + record.sizes[at] * isz
    full = hi_a > lo_a
    first, last = lo_a[full] // cb, (hi_a[full] - 1) // cb
    spans = [
        np.arange(f, g + 1) for f, g in zip(first.tolist(), last.tolist(), strict=True) if g > f
    ]
    needed = np.unique(np.concatenate([first, *spans])).tolist() if first.size else []
    lo, hi = lo_a.tolist(), hi_a.tolist()
    names = [record.names[i] for i in at.tolist()]
    n = len(names)
    running = [0] * n
    reasons: dict[int, str] = {}
    window = memoryview(np.empty(min(CHECK_WINDOW, cb + 4), dtype=np.uint8))  # type: ignore[arg-type]
    j = 0  # first entry not finished before the current chunk
    for k in needed:
        start = k * cb
        stop = start + cb
        while j < n and hi[j] <= start:
            j += 1
        e, covered, need = j, 0, 0
        while e < n and lo[e] < stop:
            if hi[e] > start:
                covered += min(hi[e], stop) - max(lo[e], start)
                need = max(need, min(hi[e], stop) - start)
            e += 1
        valid = min(layout.count * isz - start, cb)
        spans_k = _Spans(lo, hi, running, j, e, start, cb, crc)
        why = _stream_chunk(layout.path(k), window, cb, need, covered == valid, spans_k)
        if why is not None:
            for r in range(j, e):
                if hi[r] > start:
                    reasons.setdefault(r, f"chunk {k} {why} in {arr_name!r}")
    expected = record.crcs[at]
    for r in np.flatnonzero(expected != np.array(running, dtype=np.uint32)).tolist():
        reasons.setdefault(r, "crc32c checksum mismatch")
    for r in sorted(reasons):
        problems.append((names[r], reasons[r]))


#: Bytes of a chunk file read at once by :func:`check` (cache-sized: checksummed while hot).
CHECK_WINDOW = 1 << 20


class _Spans:
    """The parameters ``[j, e)`` touching one chunk: feeds each its bytes as they stream by."""

    def __init__(
        self,
        lo: list[int],
        hi: list[int],
        running: list[int],
        j: int,
        e: int,
        start: int,
        cb: int,
        crc: Any,
    ) -> None:
        self.lo, self.hi, self.running, self.p, self.e = lo, hi, running, j, e
        self.start, self.cb, self.crc = start, cb, crc

    def feed(self, pos: int, view: memoryview) -> None:
        """Add the chunk's data bytes ``[pos, pos + len(view))`` to the parameters' crc32c."""
        lo, hi, running, crc = self.lo, self.hi, self.running, self.crc
        ws = self.start + pos
        we = ws + len(view)
        p = self.p
        while p < self.e and hi[p] <= ws:
            p += 1
        self.p = p
        while p < self.e and lo[p] < we:
            a, b = max(lo[p], ws), min(hi[p], we)
            if b > a:
                running[p] = crc(view[a - ws : b - ws], running[p])
            p += 1


def _stream_chunk(
    path: str, window: memoryview, cb: int, need: int, whole: bool, spans: _Spans
) -> str | None:
    """Stream chunk file ``path`` through ``window``, feeding ``spans``; return what is wrong.

    With ``whole`` (every data byte of the chunk is checked) the file must have its full size
    (``cb`` data bytes and the crc32c) and its crc32c must match; otherwise only its first
    ``need`` data bytes are read.
    """
    import os

    crc = spans.crc
    fd = open_chunk(path)
    if isinstance(fd, str):
        return fd
    try:
        size = os.fstat(fd).st_size
        expected = cb + 4
        if whole and size != expected:
            return f"has {size} bytes, expected {expected} (truncated or damaged)"
        if not whole and need > size - 4:
            return f"has {size} bytes, too short for the requested range (truncated)"
        end = expected if whole else need
        pos, chunk_crc, trailer = 0, 0, b""
        while pos < end:
            got = os.readv(fd, [window[: min(len(window), end - pos)]])
            if got == 0:
                return "short read (truncated)"
            view = window[:got]
            data = max(0, min(got, cb - pos))
            if data:
                spans.feed(pos, view[:data])
                if whole:
                    chunk_crc = crc(view[:data], chunk_crc)
            if data < got:
                trailer += bytes(view[data:])
            pos += got
    finally:
        os.close(fd)
    if whole and int.from_bytes(trailer[:4], "little") != chunk_crc:
        return "crc32c checksum of the chunk failed"
    return None
