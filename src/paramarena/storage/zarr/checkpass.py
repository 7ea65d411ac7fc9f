"""The check pass over local chunk files: every crc32c verified, nothing kept.

What a load that overwrites arrays in place runs first (the all-or-nothing load of
``ParameterDict.load``; :func:`paramarena.storage.check`). Each chunk file is read through a
reused window of :data:`CHECK_WINDOW` bytes per thread (``readv``: a short or failing read is an
error, never a ``SIGBUS`` as with ``mmap``) by :data:`CHECK_THREADS` threads (the ``crc32c``
package releases the GIL). Every byte is checksummed once: each *piece* (the part of one
parameter inside one chunk) gets its own crc32c, from which both the chunk's crc32c and each
parameter's are derived with :func:`~paramarena.storage.zarr.crc.crc32c_combine` (no data
touched). A chunk cut into more than :data:`COMBINE_PIECES` pieces (many small parameters) has
its crc32c computed over its bytes instead (derived, it would cost more Python than the data).

Each chunk file checked is described by its :data:`Identity` (device, inode, size, modification
and change times), so that a read that follows can tell that it reads the very files checked.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from paramarena.storage.zarr.crc import crc32c, crc32c_combine
from paramarena.storage.zarr.local import RawLayout, open_chunk
from paramarena.storage.zarr.scatter import COMBINE_PIECES, Identity, identity

__all__ = [
    "CHECK_THREADS",
    "CHECK_WINDOW",
    "COMBINE_PIECES",
    "Identity",
    "changed",
    "check_raw",
    "identity",
]

#: Bytes of a chunk file read at once by each thread (cache-sized: checksummed while hot).
CHECK_WINDOW = 1 << 20
#: Threads checking chunk files at once. Chunks are handed out one at a time, so a thread
#: slowed by a busy core holds up only its own chunk (2 CPUs, the other one busy: the pass took
#: 0.9-1.1x its single-thread time in our measurements).
CHECK_THREADS = max(1, min(4, os.cpu_count() or 1))
_CRC_BYTES = 4

_LOCAL = threading.local()


def _window(nbytes: int) -> memoryview:
    """Return this thread's reused read window (at least ``nbytes``, at most CHECK_WINDOW)."""
    want = min(CHECK_WINDOW, max(nbytes, 1))
    buf: memoryview | None = getattr(_LOCAL, "window", None)
    if buf is None or len(buf) < want:
        buf = memoryview(np.empty(max(want, 64 << 10), dtype=np.uint8))  # type: ignore[arg-type]
        _LOCAL.window = buf
    return buf[:want]


def _contiguous(starts: list[int], ends: list[int], valid: int) -> bool:
    """Whether the pieces (sorted by start) tile ``[0, valid)`` exactly."""
    pos = 0
    for a, b in zip(starts, ends, strict=True):
        if a != pos:
            return False
        pos = b
    return pos == valid


#: A checked chunk: what is wrong (or None), each piece's crc32c, the file's identity.
ChunkResult = tuple[str | None, list[int], Identity | None]


class Pieces(NamedTuple):
    """The parts of parameters inside one chunk: byte ranges of its data, sorted by start."""

    starts: list[int]
    ends: list[int]
    disjoint: bool  # each piece ends before the next starts (manifests written here)


def check_chunk(
    path: str, cb: int, valid: int, pieces: Pieces, need: int, whole: bool
) -> ChunkResult:
    """Read chunk file ``path`` and checksum its ``pieces``; check its own crc32c if ``whole``.

    Parameters
    ----------
    path : str
        The chunk file.
    cb : int
        Data bytes of every chunk (the last one zero-padded); the file holds ``cb + 4`` bytes.
    valid : int
        Data bytes of this chunk before the padding.
    pieces : Pieces
        Byte ranges of the data.
    need : int
        Data bytes to read when not ``whole``.
    whole : bool
        Every valid byte belongs to a piece: the whole file is read and its crc32c checked.
    """
    fd = open_chunk(path)
    if isinstance(fd, str):
        return fd, [], None
    try:
        st = os.fstat(fd)
        size = st.st_size
        expected = cb + _CRC_BYTES
        if whole and size != expected:
            return f"has {size} bytes, expected {expected} (truncated or damaged)", [], None
        if not whole and need > size - _CRC_BYTES:
            return f"has {size} bytes, too short for the requested range (truncated)", [], None
        end = expected if whole else need
        window = _window(end)
        starts, ends = pieces.starts, pieces.ends
        n = len(starts)
        combine = whole and n <= COMBINE_PIECES and _contiguous(starts, ends, valid)
        feed = _feed_disjoint if pieces.disjoint else _feed_any
        crcs = [0] * n
        chunk_crc = pad_crc = 0
        trailer = b""
        pos = p = 0
        while pos < end:
            got = os.readv(fd, [window[: min(len(window), end - pos)]])
            if got == 0:
                return "short read (truncated)", [], None
            view = window[:got]
            data = max(0, min(got, cb - pos))
            if data:
                dv = view[:data]
                if whole and not combine:
                    chunk_crc = crc32c(dv, chunk_crc)
                p = feed(starts, ends, crcs, p, pos, dv)
                if combine and pos + data > valid:  # the zero padding of the last chunk
                    pad_crc = crc32c(dv[max(valid, pos) - pos :], pad_crc)
            if data < got:
                trailer += bytes(view[data:])
            pos += got
        if whole:
            if combine:
                for a, b, c in zip(starts, ends, crcs, strict=True):
                    chunk_crc = crc32c_combine(chunk_crc, c, b - a)
                chunk_crc = crc32c_combine(chunk_crc, pad_crc, cb - valid)
            if int.from_bytes(trailer[:_CRC_BYTES], "little") != chunk_crc:
                return "crc32c checksum of the chunk failed", [], None
        return None, crcs, identity(st)
    finally:
        os.close(fd)


def _feed_any(
    starts: list[int], ends: list[int], crcs: list[int], p: int, pos: int, dv: memoryview
) -> int:
    """Add the window ``dv`` (data bytes from ``pos``) to every piece it touches.

    Returns the first piece not finished before the window (pieces may overlap).
    """
    n, we = len(starts), pos + len(dv)
    while p < n and ends[p] <= pos:
        p += 1
    q = p
    while q < n and starts[q] < we:
        a, b = max(starts[q], pos), min(ends[q], we)
        if b > a:
            crcs[q] = crc32c(dv[a - pos : b - pos], crcs[q])
        q += 1
    return p


def _feed_disjoint(
    starts: list[int], ends: list[int], crcs: list[int], p: int, pos: int, dv: memoryview
) -> int:
    """:func:`_feed_any` for disjoint pieces: those inside the window in one comprehension."""
    we = pos + len(dv)
    p = bisect.bisect_right(ends, pos, p)  # the first piece ending after pos
    q = bisect.bisect_left(starts, we, p)  # pieces [p, q) start before the window's end
    if q <= p:
        return p
    head = p
    if starts[p] < pos:  # continues from the previous window
        crcs[p] = crc32c(dv[: min(ends[p], we) - pos], crcs[p])
        head = p + 1
    tail = q
    if tail > head and ends[q - 1] > we:  # goes on into the next window
        tail = q - 1
        crcs[tail] = crc32c(dv[starts[tail] - pos :], crcs[tail])
    if tail > head:
        crcs[head:tail] = [
            crc32c(dv[a - pos : b - pos])
            for a, b in zip(starts[head:tail], ends[head:tail], strict=True)
        ]
    return p


def check_raw(
    layout: RawLayout,
    arr_name: str,
    lo: Sequence[int],
    hi: Sequence[int],
    seen: dict[str, Identity] | None = None,
    threads: int | None = None,
) -> tuple[list[int], dict[int, str]]:
    """Check the chunk files holding the byte ranges ``[lo[r], hi[r])`` of one packed array.

    Parameters
    ----------
    layout : RawLayout
        The array.
    arr_name : str
        Its name (for the messages).
    lo, hi : sequence of int
        Each parameter's byte range in the array, sorted by ``lo``.
    seen : dict, optional
        Receives the :data:`Identity` of every chunk file that passed, by path.
    threads : int, optional
        Threads reading chunk files at once (default :data:`CHECK_THREADS`).

    Returns
    -------
    list of int, dict of int to str
        Each parameter's crc32c (meaningless where it failed) and why each failed parameter did
        (a chunk missing, truncated or failing its crc32c).
    """
    isz, cb = layout.itemsize, layout.chunk * layout.itemsize
    jobs = _jobs(lo, hi, cb, layout.count * isz)
    running = [0] * len(lo)
    reasons: dict[int, str] = {}

    def one(job: _Job) -> ChunkResult:
        return check_chunk(layout.path(job.k), cb, job.valid, job.pieces, job.need, job.whole)

    workers = min(CHECK_THREADS if threads is None else max(1, threads), len(jobs))
    if workers <= 1:
        _collect(layout, arr_name, jobs, map(one, jobs), running, reasons, seen)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="paramarena-check") as pool:
            try:
                results = pool.map(one, jobs)
                _collect(layout, arr_name, jobs, results, running, reasons, seen)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return running, reasons


class _Job(NamedTuple):
    k: int  # the chunk
    pieces: Pieces
    owners: list[int]  # the parameter of each piece
    need: int  # data bytes up to the end of the last piece
    valid: int  # data bytes of the chunk before its padding
    whole: bool  # the pieces cover every valid byte


def _jobs(lo: Sequence[int], hi: Sequence[int], cb: int, total: int) -> list[_Job]:
    """Cut the byte ranges into pieces, one list per chunk touched (numpy, no loop per range)."""
    lo_a = np.asarray(lo, dtype=np.int64)
    hi_a = np.asarray(hi, dtype=np.int64)
    nz = np.flatnonzero(hi_a > lo_a)
    if not nz.size:
        return []
    first, last = lo_a[nz] // cb, (hi_a[nz] - 1) // cb
    counts = last - first + 1
    owner = np.repeat(nz, counts)
    step = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(counts) - counts, counts
    )
    k = np.repeat(first, counts) + step
    base = k * cb
    a = np.maximum(lo_a[owner], base) - base
    b = np.minimum(hi_a[owner], base + cb) - base
    order = np.lexsort((a, k))
    k, a, b, owner = k[order], a[order], b[order], owner[order]
    cut = np.flatnonzero(np.diff(k)) + 1
    starts_at = np.concatenate([[0], cut])
    need = np.maximum.reduceat(b, starts_at)
    covered = np.add.reduceat(b - a, starts_at)
    chunks = k[starts_at]
    valid = np.minimum(total - chunks * cb, cb)
    overlap = np.zeros(len(k), dtype=np.int64)
    overlap[1:] = (k[1:] == k[:-1]) & (b[:-1] > a[1:])
    overlapping = np.add.reduceat(overlap, starts_at) > 0
    bounds = [*starts_at.tolist(), len(k)]
    a_l, b_l, o_l = a.tolist(), b.tolist(), owner.tolist()
    return [
        _Job(kk, Pieces(a_l[s:e], b_l[s:e], not ov), o_l[s:e], nd, vd, cv == vd)
        for kk, s, e, nd, vd, cv, ov in zip(
            chunks.tolist(),
            bounds[:-1],
            bounds[1:],
            need.tolist(),
            valid.tolist(),
            covered.tolist(),
            overlapping.tolist(),
            strict=True,
        )
    ]


def _collect(
    layout: RawLayout,
    arr_name: str,
    jobs: Sequence[_Job],
    results: Any,
    running: list[int],
    reasons: dict[int, str],
    seen: dict[str, Identity] | None,
) -> None:
    """Fold each chunk's pieces into their parameters' crc32c, in chunk order."""
    for job, (why, crcs, ident) in zip(jobs, results, strict=True):
        if why is not None:
            for r in job.owners:
                reasons.setdefault(
                    r, f"chunk {job.k} {why} in {arr_name!r} (file {layout.path(job.k)})"
                )
            continue
        starts, ends = job.pieces.starts, job.pieces.ends
        owners = job.owners
        if job.pieces.disjoint and len(owners) > 2:
            # disjoint sorted pieces: only the first can continue an earlier chunk's piece and
            # only the last go on into the next chunk; the middle ones are whole parameters
            deque(map(running.__setitem__, owners[1:-1], crcs[1:-1]), maxlen=0)
            ends_at = (0, len(owners) - 1)
        else:
            ends_at = range(len(owners))  # type: ignore[assignment]
        for i in ends_at:
            r, c = owners[i], crcs[i]
            prev = running[r]
            running[r] = crc32c_combine(prev, c, ends[i] - starts[i]) if prev else c
        if seen is not None and ident is not None:
            seen[layout.path(job.k)] = ident


def changed(seen: Mapping[str, Identity]) -> list[str]:
    """Return the chunk files of ``seen`` that are no longer the very files checked.

    One ``stat`` each: a file replaced, removed, or written to since (its inode, size,
    modification or change time differ).
    """
    gone = []
    for path, ident in seen.items():
        try:
            st = os.stat(path)
        except OSError:
            gone.append(path)
            continue
        if identity(st) != ident:
            gone.append(path)
    return gone
