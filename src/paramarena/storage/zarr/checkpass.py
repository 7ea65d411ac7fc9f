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

import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
    return buf


def _contiguous(pieces: Sequence[tuple[int, int]], valid: int) -> bool:
    """Whether ``pieces`` (sorted ``(start, end)`` byte ranges) tile ``[0, valid)`` exactly."""
    pos = 0
    for a, b in pieces:
        if a != pos:
            return False
        pos = b
    return pos == valid


#: A checked chunk: what is wrong (or None), each piece's crc32c, the file's identity.
ChunkResult = tuple[str | None, list[int], Identity | None]


def check_chunk(
    path: str, cb: int, valid: int, pieces: Sequence[tuple[int, int]], need: int, whole: bool
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
    pieces : sequence of (int, int)
        Byte ranges of the data, sorted by start.
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
        n = len(pieces)
        combine = whole and n <= COMBINE_PIECES and _contiguous(pieces, valid)
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
                we = pos + data
                while p < n and pieces[p][1] <= pos:
                    p += 1
                q = p
                while q < n and pieces[q][0] < we:
                    a, b = max(pieces[q][0], pos), min(pieces[q][1], we)
                    if b > a:
                        crcs[q] = crc32c(dv[a - pos : b - pos], crcs[q])
                    q += 1
                if combine and we > valid:  # the zero padding of the last chunk
                    pad_crc = crc32c(dv[max(valid, pos) - pos :], pad_crc)
            if data < got:
                trailer += bytes(view[data:])
            pos += got
        if whole:
            if combine:
                for (a, b), c in zip(pieces, crcs, strict=True):
                    chunk_crc = crc32c_combine(chunk_crc, c, b - a)
                chunk_crc = crc32c_combine(chunk_crc, pad_crc, cb - valid)
            if int.from_bytes(trailer[:_CRC_BYTES], "little") != chunk_crc:
                return "crc32c checksum of the chunk failed", [], None
        return None, crcs, identity(st)
    finally:
        os.close(fd)


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
    n = len(lo)
    total = layout.count * isz
    jobs: list[tuple[int, int, int, list[tuple[int, int]], list[int], int, bool]] = []
    j = 0  # first parameter not finished before the current chunk
    for k in _needed(lo, hi, cb):
        start, stop = k * cb, (k + 1) * cb
        while j < n and hi[j] <= start:
            j += 1
        pieces: list[tuple[int, int]] = []
        owners: list[int] = []
        covered = need = 0
        e = j
        while e < n and lo[e] < stop:
            if hi[e] > start:
                a, b = max(lo[e], start) - start, min(hi[e], stop) - start
                if b > a:
                    pieces.append((a, b))
                    owners.append(e)
                    covered += b - a
                need = max(need, b)
            e += 1
        valid = min(total - start, cb)
        jobs.append((k, j, e, pieces, owners, need, covered == valid))
    running = [0] * n
    reasons: dict[int, str] = {}

    def one(job: tuple[int, int, int, list[tuple[int, int]], list[int], int, bool]) -> ChunkResult:
        k, _j, _e, pieces, _owners, need, whole = job
        valid = min(total - k * cb, cb)
        return check_chunk(layout.path(k), cb, valid, pieces, need, whole)

    workers = min(CHECK_THREADS if threads is None else max(1, threads), len(jobs))
    if workers <= 1:
        results: Any = map(one, jobs)
        _collect(layout, arr_name, jobs, results, lo, hi, running, reasons, seen)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="paramarena-check") as pool:
            try:
                results = pool.map(one, jobs)
                _collect(layout, arr_name, jobs, results, lo, hi, running, reasons, seen)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return running, reasons


def _needed(lo: Sequence[int], hi: Sequence[int], cb: int) -> list[int]:
    """Return the chunks holding a byte of ``[lo[r], hi[r])`` for some ``r``, in order."""
    lo_a = np.asarray(lo, dtype=np.int64)
    hi_a = np.asarray(hi, dtype=np.int64)
    full = hi_a > lo_a
    first, last = lo_a[full] // cb, (hi_a[full] - 1) // cb
    spans = [
        np.arange(f, g + 1) for f, g in zip(first.tolist(), last.tolist(), strict=True) if g > f
    ]
    needed: list[int] = np.unique(np.concatenate([first, *spans])).tolist() if first.size else []
    return needed


def _collect(
    layout: RawLayout,
    arr_name: str,
    jobs: Sequence[tuple[int, int, int, list[tuple[int, int]], list[int], int, bool]],
    results: Any,
    lo: Sequence[int],
    hi: Sequence[int],
    running: list[int],
    reasons: dict[int, str],
    seen: dict[str, Identity] | None,
) -> None:
    """Fold each chunk's pieces into their parameters' crc32c, in chunk order."""
    cb = layout.chunk * layout.itemsize
    for job, (why, crcs, ident) in zip(jobs, results, strict=True):
        k, j, e, pieces, owners = job[0], job[1], job[2], job[3], job[4]
        if why is not None:
            start = k * cb
            for r in range(j, e):
                if hi[r] > start:
                    reasons.setdefault(r, f"chunk {k} {why} in {arr_name!r}")
            continue
        for (a, b), c, r in zip(pieces, crcs, owners, strict=True):
            running[r] = crc32c_combine(running[r], c, b - a)
        if seen is not None and ident is not None:
            seen[layout.path(k)] = ident


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
