"""Reading a whole packed array of many small parameters into destinations in one flat buffer.

:func:`read_gathered` streams the chunk files of one packed array (local, uncompressed) through
a reused staging window: each chunk file is read once, in order, its size and its stored
crc32c checked over every byte; the parameters are copied out of the window into their
destinations (element offsets into one flat buffer) with one numpy gather per run of equal
sizes instead of a buffer, a view or a ``readv`` entry per parameter; and each parameter's own
crc32c is computed from the copied rows, to be compared with the manifest by the caller.
Parameters that cross a window or chunk boundary are copied piece by piece (at most two per
window).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from paramarena.storage.zarr.local import (
    _CRC_BYTES,
    RawLayout,
    _crc32c_function,
    _read_all,
    open_chunk,
    whole_size_problem,
)
from paramarena.storage.zarr.scatter import Identity, identity

__all__ = ["GATHER_WINDOW", "gatherable", "places_problem", "read_gathered"]

#: Bytes of a chunk file read (and checksummed) at once into the staging window.
GATHER_WINDOW = 4 << 20


def gatherable(offsets: np.ndarray, sizes: np.ndarray, count: int) -> bool:
    """Whether parameters (``offsets`` / ``sizes`` in stored order) tile ``[0, count)`` exactly."""
    if not len(offsets):
        return count == 0
    ends = offsets + sizes
    return bool(offsets[0] == 0 and ends[-1] == count and np.array_equal(offsets[1:], ends[:-1]))


def places_problem(dest_offsets: np.ndarray, sizes: np.ndarray, room: int) -> str | None:
    """Say why destinations (element offsets, sizes) do not fit a buffer of ``room`` elements.

    Each non-empty destination must lie inside the buffer and overlap no other (each is
    written once, then checksummed). None when they fit.
    """
    nonempty = sizes > 0
    starts = dest_offsets[nonempty]
    if not len(starts):
        return None
    ends = starts + sizes[nonempty]
    if starts.min() < 0 or ends.max() > room:
        return f"a destination lies outside the buffer of {room} elements"
    order = np.argsort(starts, kind="stable")
    if not (starts[order][1:] >= ends[order][:-1]).all():
        return "two destinations overlap"
    return None


def _sliding(buffer: np.ndarray, n: int, writeable: bool) -> np.ndarray:
    """Every ``n``-byte window of a flat byte ``buffer``, as rows (no copy)."""
    return as_strided(buffer, shape=(buffer.size - n + 1, n), strides=(1, 1), writeable=writeable)


def read_gathered(
    layout: RawLayout,
    offsets: np.ndarray,
    sizes: np.ndarray,
    buffer: np.ndarray,
    dest_offsets: np.ndarray,
    seen: Mapping[str, Identity] | None = None,
    check_only: dict[str, Identity] | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """Read a packed array into ``buffer``; return each parameter's crc32c and chunk problems.

    Parameters
    ----------
    layout : RawLayout
        The packed array (``bytes`` + ``crc32c`` chunks on local disk).
    offsets, sizes : numpy.ndarray
        ``int64`` elements of each parameter in the array, in stored order, tiling it exactly
        (:func:`gatherable`).
    buffer : numpy.ndarray
        Flat C-contiguous writable destination of the storage itemsize.
    dest_offsets : numpy.ndarray
        ``int64`` element offset of each parameter in ``buffer`` (inside, not overlapping:
        :func:`places_problem`).
    seen : mapping of str to Identity, optional
        The chunk files a check pass (:mod:`~paramarena.storage.zarr.checkpass`) found intact,
        by path, with their identity: each chunk file is then read only if it is still that
        very file (compared with ``fstat`` when opened, before a byte is read) and is not
        checksummed again (its bytes were, and by its identity it was not written since).
    check_only : dict of str to Identity, optional
        Check, write nothing: every chunk and parameter checksum is computed as in a read,
        ``buffer`` is not touched, and the identity of each chunk file that passed is recorded
        here by path (the ``seen`` of the read that follows).

    Returns
    -------
    crcs : numpy.ndarray
        ``uint32`` crc32c of the bytes each parameter received (0 for empty ones; all 0 with
        ``seen``: not computed).
    problems : dict of int to str
        Why each chunk that failed (missing, wrong size, short read, crc32c mismatch) failed;
        its parameters' bytes are not to be used.
    """
    crc = _crc32c_function()
    isz = layout.itemsize
    count = len(offsets)
    crcs = np.zeros(count, dtype=np.uint32)
    problems: dict[int, str] = {}
    if not count or not layout.count:
        return crcs, problems
    out = None if check_only is not None else buffer.reshape(-1).view(np.uint8)
    starts_b = offsets * isz  # byte offsets in the array's byte stream
    ends_b = starts_b + sizes * isz
    dest_b = dest_offsets * isz
    chunk_b = layout.chunk_bytes
    total_b = layout.count * isz
    window = min(GATHER_WINDOW, chunk_b)
    stage = np.empty(window, dtype=np.uint8)
    running: dict[int, int] = {}  # parameters crossing a window: crc32c so far
    n_chunks = -(-layout.count // layout.chunk)
    for k in range(n_chunks):
        lo_k = k * chunk_b
        valid = min(chunk_b, total_b - lo_k)
        path = layout.path(k)
        if seen is not None and path not in seen:
            why: str | None = "was not checked"
        else:
            why = _read_chunk_gathered(
                path, lo_k, valid, chunk_b, window, stage, out,
                starts_b, ends_b, dest_b, crcs, running, crc if seen is None else None,
                None if seen is None else seen[path], check_only,
            )  # fmt: skip
        if why is not None:
            problems[k] = f"chunk {k} {why}"
    return crcs, problems


def _read_chunk_gathered(
    path: str,
    lo_k: int,
    valid: int,
    chunk_b: int,
    window: int,
    stage: np.ndarray,
    out: np.ndarray | None,
    starts_b: np.ndarray,
    ends_b: np.ndarray,
    dest_b: np.ndarray,
    crcs: np.ndarray,
    running: dict[int, int],
    crc: Any,
    checked: Identity | None = None,
    record: dict[str, Identity] | None = None,
) -> str | None:
    """Read one chunk file window by window (see :func:`read_gathered`); say why it failed.

    ``crc`` None: no checksum (the file was checked, and ``checked`` is its identity then,
    compared before anything is read). ``out`` None: nothing written, and the identity of
    a chunk file that passed goes to ``record``.
    """
    fd = open_chunk(path)
    if isinstance(fd, str):
        return fd
    update = crc  # crc32c.crc32c
    try:
        st = os.fstat(fd)
        if checked is not None and identity(st) != checked:
            return "changed since it was checked (not read)"
        expected = chunk_b + _CRC_BYTES
        why = whole_size_problem(st.st_size, expected)
        if why is not None:
            return why
        if update is None and out is not None and _direct(lo_k, valid, starts_b, ends_b):
            # checked before, large parameters: straight into their places, no window
            if not _read_direct(fd, lo_k, valid, out, starts_b, ends_b, dest_b):
                return "short read (truncated)"
            return None
        chunk_crc = 0
        for a in range(0, valid, window):
            n = min(window, valid - a)
            view = stage[:n]
            if not _read_all(fd, [view]):
                return "short read (truncated)"
            if update is not None:
                chunk_crc = update(view, chunk_crc)
            _scatter(lo_k + a, view, out, starts_b, ends_b, dest_b, crcs, running, update)
        if update is None:
            return None  # checked before: the trailer and padding were too
        tail = memoryview(bytearray(expected - valid))
        if not _read_all(fd, [tail]):
            return "short read (truncated)"
        chunk_crc = update(tail[:-_CRC_BYTES], chunk_crc)
        if int.from_bytes(tail[-_CRC_BYTES:], "little") != chunk_crc:
            return "crc32c checksum of the chunk failed"
        if record is not None:
            record[path] = identity(st)
    finally:
        os.close(fd)
    return None


#: Average bytes per parameter of a chunk from which a read of checked files (no checksums)
#: goes straight into the parameters' places with ``readv`` instead of through the window.
DIRECT_BYTES = 4096


def _direct(lo_k: int, valid: int, starts_b: np.ndarray, ends_b: np.ndarray) -> bool:
    """Whether the parameters in chunk bytes ``[lo_k, lo_k + valid)`` average DIRECT_BYTES."""
    first = int(np.searchsorted(ends_b, lo_k, side="right"))
    last = int(np.searchsorted(starts_b, lo_k + valid, side="left"))
    return (last - first) * DIRECT_BYTES <= valid


def _read_direct(
    fd: int,
    lo_k: int,
    valid: int,
    out: np.ndarray,
    starts_b: np.ndarray,
    ends_b: np.ndarray,
    dest_b: np.ndarray,
) -> bool:
    """Read the chunk's data bytes straight into each parameter's place (``readv``).

    The parameters tile the array (:func:`gatherable`), so their pieces in the chunk, in
    order, are its data bytes. False at a premature end of file.
    """
    first = int(np.searchsorted(ends_b, lo_k, side="right"))
    last = int(np.searchsorted(starts_b, lo_k + valid, side="left"))
    a = np.maximum(starts_b[first:last], lo_k)
    b = np.minimum(ends_b[first:last], lo_k + valid)
    d = dest_b[first:last] + (a - starts_b[first:last])
    mv = out.data
    places = [mv[x:y] for x, y in zip(d.tolist(), (d + (b - a)).tolist(), strict=True)]
    return _read_all(fd, places)


def _scatter(
    s: int,
    view: np.ndarray,
    out: np.ndarray | None,
    starts_b: np.ndarray,
    ends_b: np.ndarray,
    dest_b: np.ndarray,
    crcs: np.ndarray,
    running: dict[int, int],
    update: Any,
) -> None:
    """Copy the bytes ``[s, s + len(view))`` of the array's stream to their destinations."""
    e = s + view.size
    first = int(np.searchsorted(ends_b, s, side="right"))  # first parameter ending after s
    last = int(np.searchsorted(starts_b, e, side="left"))  # parameters starting before e
    if first >= last:
        return
    inside_lo = first if starts_b[first] >= s else first + 1
    inside_hi = last if ends_b[last - 1] <= e else last - 1
    partial = [j for j in sorted({first, last - 1}) if not inside_lo <= j < inside_hi]
    for j in partial:
        a, b = max(int(starts_b[j]), s), min(int(ends_b[j]), e)
        if b <= a:
            continue
        d = int(dest_b[j]) + a - int(starts_b[j])
        if out is not None:
            out[d : d + b - a] = view[a - s : b - s]
        if update is None:
            continue
        running[j] = update(view[a - s : b - s], running.get(j, 0))
        if b == int(ends_b[j]):  # its last piece
            crcs[j] = running.pop(j)
    if inside_hi <= inside_lo:
        return
    _gather(s, view, out, starts_b, ends_b, dest_b, crcs, inside_lo, inside_hi, update)


def _gather(
    s: int,
    view: np.ndarray,
    out: np.ndarray | None,
    starts_b: np.ndarray,
    ends_b: np.ndarray,
    dest_b: np.ndarray,
    crcs: np.ndarray,
    lo: int,
    hi: int,
    update: Any,
) -> None:
    """Copy parameters ``lo:hi`` (inside the window) by runs of equal size; checksum each."""
    nbytes = ends_b[lo:hi] - starts_b[lo:hi]
    if nbytes[0] == nbytes[-1] and (nbytes == nbytes[0]).all():
        groups: Sequence[tuple[int, np.ndarray]] = [(int(nbytes[0]), np.arange(lo, hi))]
    else:
        order = np.argsort(nbytes, kind="stable")
        ordered = nbytes[order]
        cuts = [0, *(np.flatnonzero(np.diff(ordered)) + 1).tolist(), len(order)]
        groups = [(int(ordered[a]), order[a:b] + lo) for a, b in itertools.pairwise(cuts)]
    for n, members in groups:
        if n == 0:
            continue  # crc32c of nothing: 0
        at = starts_b[members] - s
        k = len(at)
        if k == 1 or (int(at[-1] - at[0]) == (k - 1) * n and (np.diff(at) == n).all()):
            rows = view[int(at[0]) : int(at[0]) + k * n].reshape(k, n)  # adjacent: no copy
        else:
            rows = _sliding(view, n, False)[at]  # one copy, the rows
        if out is not None:
            _sliding(out, n, True)[dest_b[members]] = rows
        if update is not None:
            crcs[members] = list(map(update, rows))
