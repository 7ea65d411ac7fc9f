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

from paramarena import kernels
from paramarena.errors import CorruptCheckpointError, MissingParameterError, StorageError
from paramarena.storage.fileio import progress_reporter
from paramarena.storage.remote import is_transient
from paramarena.storage.zarr import guard
from paramarena.storage.zarr.checkpass import Identity, check_raw
from paramarena.storage.zarr.local import (
    RawLayout,
    raw_layout,
    read_ranges,
)
from paramarena.storage.zarr.scatter import read_scattered
from paramarena.storage.zarr.validate import Manifest
from paramarena.storage.zarr.writer import storage_dtype

__all__ = ["describe", "logical_dtype", "read", "select"]

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
    verified: Mapping[str, Identity] | None = None,
) -> tuple[dict[str, np.ndarray], Problems]:
    """Read the parameters ``picked`` (manifest indices); return arrays and problems.

    An entry named in ``into`` whose array fits (C-contiguous, writable, same shape and
    dtype) is read into that array (local uncompressed checkpoints); the others get new arrays.
    Every array returned passed its crc32c check; each parameter that did not is a problem
    ``(name, why)`` instead. ``verified`` (what :func:`check` recorded in ``seen``): a chunk
    file read into ``into`` arrays must be the very file checked, else it is not read.
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
                _read_raw(layout, arr_name, record, idx, out, problems, into or {}, verified)
            else:
                if group is None:
                    group = guard.open_group(loc, version)
                _read_zarr(loc, group, version, arr_name, record, idx, out, problems)
            update(int(record.nbytes[np.asarray(idx, dtype=np.intp)].sum()))
    return out, problems


#: Problems a load error lists one by one; the others are counted.
SHOWN_PROBLEMS = 8


def describe(problems: Problems) -> str:
    """Return ``problems`` as text: the first :data:`SHOWN_PROBLEMS`, then how many more."""
    shown = "; ".join(f"{n!r}: {why}" for n, why in problems[:SHOWN_PROBLEMS])
    more = len(problems) - SHOWN_PROBLEMS
    return shown if more <= 0 else f"{shown}; and {more} more parameter(s)"


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
    trusted: set[int] | None = None,
) -> dict[int, str]:
    """Return ``{position in idx: why}`` for the parameters that failed a check.

    Positions in ``trusted`` were read from chunk files a check pass verified (their crc32c
    was compared there, and ``crcs`` holds nothing for them).
    """
    expected = record.crcs[np.asarray(idx, dtype=np.intp)]
    wrong = np.flatnonzero(expected != np.array(crcs, dtype=np.uint32)).tolist()
    why: dict[int, str] = {r: "crc32c checksum mismatch" for r in wrong if r not in (trusted or ())}
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
    verified: Mapping[str, Identity] | None = None,
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
        # (kernels.empty: a big buffer on huge pages, and the mapping of a freed one reused:
        # a load after a load takes no page faults)
        packed = kernels.empty(layout.count, sdtype)
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
    trusted: set[int] = set()  # read only from chunk files the check pass found intact
    bad = read_scattered(layout, offsets, sizes, targets, crcs, verified, trusted)
    why = _check(record, idx, crcs, bad, chunk_of, arr_name, trusted)
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


def check(
    loc: Any,
    version: str,
    record: Manifest,
    picked: Sequence[int],
    seen: dict[str, Identity] | None = None,
) -> Problems:
    """Read and check the parameters ``picked`` like :func:`read`, keeping nothing.

    Local uncompressed arrays are read chunk file by chunk file by
    :func:`~paramarena.storage.zarr.checkpass.check_raw` (a reused 1 MiB window per thread,
    several threads; each chunk the parameters cover completely has its crc32c checked, every
    parameter its own crc32c); ``seen`` receives the identity of each chunk file that passed.
    Other arrays are read through zarr in batches of :data:`CHECK_BATCH_BYTES`. Memory: a
    window per thread, or one batch.
    """
    problems: Problems = []
    by_array = _by_array(record, picked)
    group: Any = None
    for arr_name, idx in by_array.items():
        sdtype = storage_dtype(record.dtypes[idx[0]])
        layout = raw_layout(loc.join(version, arr_name), sdtype) if loc.local else None
        if layout is not None:
            _check_raw(layout, arr_name, record, idx, problems, seen)
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
    layout: RawLayout,
    arr_name: str,
    record: Manifest,
    idx: list[int],
    problems: Problems,
    seen: dict[str, Identity] | None = None,
) -> None:
    """Check the chunk files holding ``idx`` (see :func:`check` and :mod:`.checkpass`)."""
    isz = layout.itemsize
    at = np.asarray(idx, dtype=np.intp)
    at = at[np.argsort(record.offsets[at], kind="stable")]
    lo_a = record.offsets[at] * isz
    hi_a = lo_a + record.sizes[at] * isz
    names = [record.names[i] for i in at.tolist()]
    running, reasons = check_raw(layout, arr_name, lo_a.tolist(), hi_a.tolist(), seen)
    expected = record.crcs[at]
    for r in np.flatnonzero(expected != np.array(running, dtype=np.uint32)).tolist():
        reasons.setdefault(r, "crc32c checksum mismatch")
    for r in sorted(reasons):
        problems.append((names[r], reasons[r]))
