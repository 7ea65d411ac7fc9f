"""Reading parameters of a packed array into their own arrays (local uncompressed zarr).

:func:`read_scattered` reads each chunk file once, straight into the parameters' arrays, and
checks what it read: the chunk's crc32c when the parameters cover the chunk, and each
parameter's crc32c (computed once per byte, window by window while in cache; the chunk's is
derived from the parts' when they are few). After a check pass
(:mod:`~paramarena.storage.zarr.checkpass`) it can read the very files that pass found intact
without checksumming them again.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from paramarena.storage.session import Identity, identity
from paramarena.storage.zarr.crc import crc32c_combine
from paramarena.storage.zarr.local import (
    _CRC_BYTES,
    RawLayout,
    _covers,
    _crc32c_function,
    _read_all,
    _read_chunk,
    open_chunk,
    read_part,
    whole_size_problem,
)

__all__ = [
    "COMBINE_PIECES",
    "READ_THREADS",
    "READ_WINDOW",
    "Identity",
    "identity",
    "read_scattered",
]

#: Chunks read as at most this many parts get their crc32c derived from the parts' crc32c
#: (:func:`~paramarena.storage.zarr.crc.crc32c_combine`) instead of a second pass over the bytes.
COMBINE_PIECES = 64

#: Bytes read at once from a chunk file whose parts are checksummed as they arrive.
READ_WINDOW = 1 << 20


def _windows(ordered: Sequence[tuple[Any, ...]]) -> list[list[tuple[Any, int]]]:
    """Cut ``(offset, destination, owner)`` parts into batches of about :data:`READ_WINDOW`."""
    batches: list[list[tuple[Any, int]]] = []
    batch: list[tuple[Any, int]] = []
    size = 0
    for part in ordered:
        view, owner = part[1], part[2]
        nbytes = view.nbytes
        if nbytes > READ_WINDOW:
            flat = memoryview(view).cast("B")
            pieces = [(flat[a : a + READ_WINDOW], owner) for a in range(0, nbytes, READ_WINDOW)]
        else:
            pieces = [(view, owner)]
        for piece in pieces:
            batch.append(piece)
            size += piece[0].nbytes
            if size >= READ_WINDOW:
                batches.append(batch)
                batch, size = [], 0
    if batch:
        batches.append(batch)
    return batches


def read_scattered(
    layout: RawLayout,
    offsets: np.ndarray,
    sizes: np.ndarray,
    dests: Sequence[np.ndarray],
    running: list[int] | None = None,
    verified: Mapping[str, Identity] | None = None,
    trusted: set[int] | None = None,
) -> dict[int, str]:
    """Read parameters of a packed array into their own arrays: ``read_ranges`` for many.

    Parameter ``i`` (elements ``[offsets[i], offsets[i] + sizes[i])``) goes to ``dests[i]``
    (C-contiguous, of the storage itemsize, ``sizes[i]`` elements, any shape). A parameter inside
    one chunk is handed to ``readv`` as it is (no per-parameter view); chunks covered
    completely are read in one ``readv`` each and their crc32c checked, as by
    :func:`~paramarena.storage.zarr.local.read_ranges`. Returns the same problem description
    per failed chunk.

    With ``running`` (one ``0`` per parameter), ``running[i]`` becomes the crc32c of what was
    read into ``dests[i]``, computed window by window while the bytes are in cache (chunks are
    read in order, so a parameter spanning chunks is checksummed in order).

    With ``verified`` (chunk file path -> :data:`Identity` of the files a check pass read and
    found intact; needs ``running`` and ``trusted``), a chunk file listed there is read without
    checksumming it again if it still is that very file (same device, inode, size,
    modification and change time), and fails before any byte of it is read if not. ``trusted``
    receives the parameters read only from such files: their ``running`` is not computed.
    """
    c, isz = layout.chunk, layout.itemsize
    by_chunk: dict[int, list[tuple[int, Any, int]]] = {}
    if len(dests):
        first = offsets // c
        last = (offsets + np.maximum(sizes, 1) - 1) // c
        nonempty = sizes > 0
        single = np.flatnonzero(nonempty & (first == last))
        if single.size:
            order = single[np.argsort(first[single], kind="stable")]
            ks = first[order]
            at = ((offsets[order] - ks * c) * isz).tolist()
            owners = order.tolist()
            picked = [dests[j] for j in owners]
            cuts = [0, *(np.flatnonzero(np.diff(ks)) + 1).tolist(), len(picked)]
            for a, b in itertools.pairwise(cuts):
                by_chunk[int(ks[a])] = list(zip(at[a:b], picked[a:b], owners[a:b], strict=True))
        for j in np.flatnonzero(nonempty & (first != last)).tolist():
            lo, end = int(offsets[j]), int(offsets[j]) + int(sizes[j])
            buf = memoryview(dests[j]).cast("B")  # type: ignore[arg-type]
            for k in range(int(first[j]), int(last[j]) + 1):
                a, b = max(lo, k * c), min(end, (k + 1) * c)
                part = buf[(a - lo) * isz : (b - lo) * isz]
                by_chunk.setdefault(k, []).append(((a - k * c) * isz, part, j))
    problems: dict[int, str] = {}
    checked: set[int] = set()  # parameters with bytes from a verified file
    summed: set[int] = set()  # parameters with bytes checksummed here
    plain: list[tuple[int, str, list[tuple[Any, ...]], int, Identity]] = []
    for k, parts in sorted(by_chunk.items()):
        valid = min(c, layout.count - k * c) * isz
        path = layout.path(k)
        expect = verified.get(path) if verified else None
        if running is None:
            why = _read_chunk(path, parts, layout, valid)
        elif expect is not None:  # read below, several chunk files at once
            plain.append((k, path, sorted(parts, key=_first), valid, expect))
            checked.update(p[2] for p in parts)
            continue
        else:
            why = _read_chunk_owned(path, sorted(parts, key=_first), layout, valid, running)
            summed.update(p[2] for p in parts)
        if why is not None:
            problems[k] = f"chunk {k} {why}"
    for k, why in _read_verified(layout, plain):
        if why is not None:
            problems[k] = f"chunk {k} {why}"
    if trusted is not None:
        trusted.update(checked - summed)
    return problems


#: Threads reading verified chunk files at once (plain copies into disjoint arrays; chunks are
#: handed out one at a time).
READ_THREADS = max(1, min(4, os.cpu_count() or 1))


def _read_verified(
    layout: RawLayout, jobs: Sequence[tuple[int, str, list[tuple[Any, ...]], int, Identity]]
) -> list[tuple[int, str | None]]:
    """Read chunk files a check pass verified, on up to :data:`READ_THREADS` threads."""

    def one(job: tuple[int, str, list[tuple[Any, ...]], int, Identity]) -> tuple[int, str | None]:
        k, path, ordered, valid, expect = job
        return k, _read_chunk_verified(path, ordered, layout, valid, expect)

    workers = min(READ_THREADS, len(jobs))
    if workers <= 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(workers, thread_name_prefix="paramarena-read") as pool:
        try:
            return list(pool.map(one, jobs))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _first(part: tuple[Any, ...]) -> Any:
    return part[0]


_CHANGED = "changed since it was checked (replaced or modified between the passes)"


def _read_chunk_verified(
    path: str, ordered: Sequence[tuple[Any, ...]], layout: RawLayout, valid: int, expect: Identity
) -> str | None:
    """Read ``ordered`` parts of a chunk file that a check pass found intact, not checksumming.

    Nothing is read unless the file still is the very one checked (its :func:`identity`).
    """
    fd = open_chunk(path)
    if isinstance(fd, str):
        return fd
    try:
        st = os.fstat(fd)
        if identity(st) != expect:
            return _CHANGED
        size = st.st_size
        if _covers(ordered, valid):
            if not _read_all(fd, [v for _, v, _ in ordered]):
                return "short read (truncated)"
            return None
        for offset, view, _ in ordered:
            why = read_part(fd, size, offset, view)
            if why is not None:
                return why
    finally:
        os.close(fd)
    return None


def _read_chunk_owned(
    path: str,
    ordered: Sequence[tuple[Any, ...]],
    layout: RawLayout,
    valid: int,
    running: list[int],
) -> str | None:
    """Read ``ordered`` parts of a chunk file, adding each to its owner's crc32c.

    As ``local._read_chunk`` (the whole file read and its crc32c checked when the parts cover
    the chunk), each part checksummed once, window by window while in cache; a chunk of at
    most :data:`COMBINE_PIECES` parts derives its own crc32c from theirs (no second pass over
    the bytes).
    """
    crc = _crc32c_function()
    whole = _covers(ordered, valid)
    fd = open_chunk(path)
    if isinstance(fd, str):
        return fd
    try:
        size = os.fstat(fd).st_size
        if whole:
            expected = layout.chunk_bytes + _CRC_BYTES
            why = whole_size_problem(size, expected)
            if why is not None:
                return why
            combine = len(ordered) <= COMBINE_PIECES
            parts = [0] * len(ordered)
            chunk_crc = 0
            for batch in _windows([(o, v, i) for i, (o, v, _) in enumerate(ordered)]):
                if not _read_all(fd, [v for v, _ in batch]):
                    return "short read (truncated)"
                for view, i in batch:
                    if not combine:
                        chunk_crc = crc(view, chunk_crc)
                    parts[i] = crc(view, parts[i])
            tail = memoryview(bytearray(expected - valid))
            if not _read_all(fd, [tail]):
                return "short read (truncated)"
            if combine:
                for (_, view, _), c in zip(ordered, parts, strict=True):
                    chunk_crc = crc32c_combine(chunk_crc, c, view.nbytes)
            chunk_crc = crc(tail[:-_CRC_BYTES], chunk_crc)
            if int.from_bytes(tail[-_CRC_BYTES:], "little") != chunk_crc:
                return "crc32c checksum of the chunk failed"
            for (_, view, owner), c in zip(ordered, parts, strict=True):
                running[owner] = crc32c_combine(running[owner], c, view.nbytes)
            return None
        for offset, view, owner in ordered:
            why = read_part(fd, size, offset, view)
            if why is not None:
                return why
            running[owner] = crc(view, running[owner])
    finally:
        os.close(fd)
    return None
