"""Writing one packed array's chunks straight from the parameters, checksumming each byte once.

The bytes of a packed array are the parameters' bytes in order, cut into chunks of
``chunk * itemsize`` bytes (the last one zero-padded), each stored with its crc32c as a 4-byte
little-endian trailer (what zarr's ``bytes`` + ``crc32c`` codecs write:
:mod:`paramarena.storage.zarr.local`). :func:`write_packed` builds them with little Python per
parameter:

* a parameter of :data:`SMALL_BYTES` or more is a *piece* of its chunk(s) as it is: a view of its
  own memory, never copied;
* consecutive smaller parameters are copied into a staging buffer of up to :data:`STAGE_BYTES`
  by one ``numpy.concatenate`` (no Python per parameter), checksummed one slice each, and the
  buffer is a piece;
* each chunk's pieces go to a sink: on local disk :class:`ChunkFileWriters`, whose threads
  checksum the pieces (the ``crc32c`` package releases the GIL), derive the chunk's crc32c from
  theirs (:func:`~paramarena.storage.zarr.crc.crc32c_combine`), write the file with ``writev``
  and ``fsync`` it; on object stores :class:`SinkAdapter` does the same in the caller's thread
  and hands the chunk to a :class:`~paramarena.storage.zarr.local.ChunkSink`.

A large parameter's crc32c is its piece's (combined over its pieces when it spans chunks): its
bytes are checksummed once for both checksums. Staged bytes are checksummed twice, by C loops:
each small parameter's slice (in the caller), then the whole buffer (in a writer thread, which
the ``crc32c`` package lets run without the GIL); deriving the buffer's crc32c from thousands of
slices by :func:`~paramarena.storage.zarr.crc.crc32c_combine` would cost more Python than that.
"""

from __future__ import annotations

import bisect
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paramarena.storage.fileio import writeback_starter
from paramarena.storage.zarr.crc import crc32c, crc32c_combine, crc32c_slices
from paramarena.storage.zarr.local import ChunkSink

__all__ = [
    "CHUNK_WRITERS",
    "SMALL_BYTES",
    "STAGED_IN_FLIGHT",
    "STAGE_BYTES",
    "WRITEBACK_BYTES",
    "ChunkFileWriters",
    "PackedColumns",
    "PackedWrite",
    "SinkAdapter",
    "chunk_crc",
    "write_file_durably",
    "write_packed",
]

#: Parameters smaller than this are copied into staging buffers (larger ones are written from
#: their own memory).
SMALL_BYTES = 16 * 1024
#: The largest staging buffer.
STAGE_BYTES = 4 * 1024 * 1024
#: Staged bytes that may wait for a writer thread before the caller waits (peak extra memory of
#: a save of small parameters is about this plus one chunk).
STAGED_IN_FLIGHT = 64 * 1024 * 1024
#: Threads writing, checksumming and flushing chunk files (local disk).
CHUNK_WRITERS = 4
_IOV_MAX = 1024
_CRC_BYTES = 4


def _write_all(fd: int, buffers: Sequence[memoryview]) -> None:
    """Write every buffer in order with ``writev`` (batches of IOV_MAX, short writes resumed)."""
    pending = [b for b in buffers if b.nbytes]
    while pending:
        done = os.writev(fd, pending[:_IOV_MAX])
        for i, b in enumerate(pending):
            if done < b.nbytes:
                pending = [b[done:], *pending[i + 1 :]]
                break
            done -= b.nbytes
        else:
            pending = []


def chunk_crc(pieces: Sequence[memoryview], pad: int) -> tuple[list[int], int]:
    """Return the crc32c of each piece and of the chunk (the pieces, then ``pad`` zero bytes)."""
    crcs = [crc32c(p) for p in pieces]
    crc = 0
    for p, c in zip(pieces, crcs, strict=True):
        crc = crc32c_combine(crc, c, p.nbytes)
    if pad:
        crc = crc32c(bytes(pad), crc)
    return crcs, crc


def _chunk_buffers(pieces: Sequence[memoryview], pad: int, crc: int) -> list[memoryview]:
    tail = [memoryview(bytes(pad))] if pad else []
    return [*pieces, *tail, memoryview(crc.to_bytes(_CRC_BYTES, "little"))]


def write_file_durably(path: str, buffers: Sequence[memoryview]) -> None:
    """Create ``path`` (it must not exist), write ``buffers`` in order and ``fsync`` it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, buffers)
        os.fsync(fd)
    finally:
        os.close(fd)


#: Bytes written before a chunk writer starts their writeback (the disk works while the rest
#: of the chunk is copied and checksummed).
WRITEBACK_BYTES = 4 * 1024 * 1024
#: The writeback starter this module uses (looked up once; tests replace it).
_START_WRITEBACK: list[Callable[[int, int, int], Any] | None] = []


def _writeback_starter() -> Callable[[int, int, int], Any] | None:
    """Return ``start(fd, offset, nbytes)`` or None (see ``fileio.writeback_starter``)."""
    if not _START_WRITEBACK:
        _START_WRITEBACK.append(writeback_starter())
    return _START_WRITEBACK[0]


def _write_started(fd: int, buffers: Sequence[memoryview]) -> int:
    """Write ``buffers`` in batches of about WRITEBACK_BYTES, starting each batch's writeback.

    Only a hint to the kernel (the ``fsync`` that follows is what makes the file durable):
    the disk writes the first megabytes while the next are copied. Returns the bytes written.
    """
    start = _writeback_starter()
    if start is None:
        _write_all(fd, buffers)
        return sum(b.nbytes for b in buffers)
    step = WRITEBACK_BYTES
    offset = 0
    batch: list[memoryview] = []
    filled = 0
    for b in buffers:
        pos = 0
        while pos < b.nbytes:
            take = min(step - filled, b.nbytes - pos)
            batch.append(b[pos : pos + take] if take != b.nbytes else b)
            filled += take
            pos += take
            if filled == step:
                _write_all(fd, batch)
                start(fd, offset, filled)
                offset += filled
                batch, filled = [], 0
    if batch:
        _write_all(fd, batch)
        start(fd, offset, filled)
        offset += filled
    return offset


def _write_chunk_file(path: str, pieces: Sequence[memoryview], pad: int) -> list[int]:
    """Write a chunk file and ``fsync`` it; return its pieces' crc32c.

    The data goes first (its writeback started batch by batch), then the pieces are
    checksummed while the disk works, then the 4-byte crc32c trailer is appended.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_started(fd, [*pieces, memoryview(bytes(pad))] if pad else pieces)
        crcs, crc = chunk_crc(pieces, pad)
        _write_all(fd, [memoryview(crc.to_bytes(_CRC_BYTES, "little"))])
        os.fsync(fd)
    finally:
        os.close(fd)
    return crcs


Result = Callable[[], list[int]]


class ChunkFileWriters:
    """Threads that checksum, write and ``fsync`` chunk files (local disk).

    The pieces are views of the caller's arrays (or of staging buffers), untouched until
    :meth:`finish` returns. At most ``2 * writers`` chunks, and about :data:`STAGED_IN_FLIGHT`
    staged bytes, wait at once; :meth:`submit` waits for the oldest beyond that. A write that
    failed (disk full, ...) is raised once every write in flight has ended, so that the failed
    save's cleanup never races a thread still creating files.
    """

    def __init__(self, writers: int = CHUNK_WRITERS, staged_limit: int = STAGED_IN_FLIGHT) -> None:
        self._pool = ThreadPoolExecutor(max(1, writers), thread_name_prefix="paramarena-chunks")
        self._limit = 2 * max(1, writers)
        self._staged_limit = staged_limit
        self._staged = 0
        self._pending: deque[tuple[Future[Any], int]] = deque()

    def _wait_oldest(self) -> None:
        future, staged = self._pending.popleft()
        self._staged -= staged
        try:
            future.result()
        except BaseException:
            self.stop()
            raise

    def run(self, fn: Callable[..., Any], *args: Any, staged: int = 0) -> Future[Any]:
        """Run ``fn(*args)`` in a writer thread (after waiting while too much is in flight)."""
        while self._pending and (
            len(self._pending) >= self._limit or self._staged + staged > self._staged_limit
        ):
            self._wait_oldest()
        future = self._pool.submit(fn, *args)
        self._pending.append((future, staged))
        self._staged += staged
        return future

    def submit(self, path: str, pieces: Sequence[memoryview], pad: int, staged: int) -> Result:
        """Queue a chunk file; return the getter of its pieces' crc32c (valid after finish)."""
        return self.run(_write_chunk_file, path, list(pieces), pad, staged=staged).result

    def stop(self) -> None:
        """Cancel the queued writes and wait for the running ones to end."""
        self._pending.clear()
        self._staged = 0
        self._pool.shutdown(wait=True, cancel_futures=True)

    def finish(self) -> None:
        """Wait until every queued write has ended; raise the first error."""
        try:
            while self._pending:
                self._wait_oldest()
        finally:
            self.stop()


class SinkAdapter:
    """Checksums each chunk in the caller's thread and hands it to a ``ChunkSink`` (remote)."""

    def __init__(self, sink: ChunkSink) -> None:
        self.sink = sink

    def submit(self, index: int, pieces: Sequence[memoryview], pad: int) -> Result:
        """Store chunk ``index``; return the getter of its pieces' crc32c."""
        crcs, crc = chunk_crc(pieces, pad)
        self.sink.put(index, _chunk_buffers(pieces, pad, crc))
        return lambda: crcs


@dataclass
class PackedColumns:
    """One packed array's parameters, in their order: element offset, size, bytes, crc32c.

    ``pending``: positions whose crc32c is filled in by :meth:`PackedWrite.finish` (parameters
    written from their own memory, checksummed by the writer threads).
    """

    offsets: list[int]
    sizes: list[int]
    nbytes: list[int]
    crcs: list[int]
    pending: list[int] = field(default_factory=list)


class PackedWrite:
    """A packed array whose chunks were all submitted: :meth:`finish` completes its columns."""

    def __init__(
        self,
        columns: PackedColumns,
        results: list[Result],
        spans: dict[int, list[tuple[int, int, int]]],
    ) -> None:
        self.columns = columns
        self._results = results
        self._spans = spans

    def finish(self) -> PackedColumns:
        """Wait for the chunks; set the crc32c of the parameters written from their memory."""
        results = [r() for r in self._results]
        for i, placed in self._spans.items():
            crc = 0
            for k, piece, length in placed:
                crc = crc32c_combine(crc, results[k][piece], length)
            self.columns.crcs[i] = crc
        return self.columns


class _Cutter:
    """Cuts a stream of byte pieces into chunks and submits each complete chunk."""

    def __init__(self, submit: Callable[[int, list[memoryview], int, int], Result], size: int):
        self.submit = submit
        self.size = size  # bytes per chunk
        self.results: list[Result] = []
        self._pieces: list[memoryview] = []
        self._filled = 0
        self._staged = 0

    def feed(self, view: memoryview, staged: bool) -> list[tuple[int, int, int]]:
        """Append ``view``; return where its parts went: ``(chunk, piece, length)``."""
        placed = []
        pos, end = 0, view.nbytes
        while pos < end:
            take = min(self.size - self._filled, end - pos)
            placed.append((len(self.results), len(self._pieces), take))
            self._pieces.append(view[pos : pos + take] if take != end else view)
            self._filled += take
            if staged:
                self._staged += take
            pos += take
            if self._filled == self.size:
                self._flush()
        return placed

    def _flush(self) -> None:
        pad = self.size - self._filled
        index = len(self.results)
        self.results.append(self.submit(index, self._pieces, pad, self._staged))
        self._pieces, self._filled, self._staged = [], 0, 0

    def close(self) -> None:
        if self._filled:
            self._flush()


def _stage_dtype(arrays: Sequence[np.ndarray], logical: str) -> np.dtype[Any]:
    """Return the native little-endian dtype the parameters of ``logical`` are copied as."""
    return arrays[0].dtype if logical == "bfloat16" else np.dtype(logical).newbyteorder("<")


def _own_bytes(a: np.ndarray, dtype: np.dtype[Any]) -> memoryview:
    """Return the bytes of ``a`` as stored (C order, little endian), not copied if possible."""
    if not a.flags.c_contiguous or a.dtype.byteorder == ">":
        a = np.ascontiguousarray(a, dtype=dtype)
    return a.reshape(-1).view(np.uint8).data


def write_packed(
    arrays: Sequence[np.ndarray],
    sizes: list[int],
    logical: str,
    chunk_bytes: int,
    submit: Callable[[int, list[memoryview], int, int], Result],
    update: Callable[[int], Any],
) -> PackedWrite:
    """Submit ``arrays`` (one logical dtype) as one packed array's chunks.

    Parameters
    ----------
    arrays : sequence of numpy.ndarray
        The parameters, in order.
    sizes : list of int
        Their sizes (elements).
    logical : str
        Their logical dtype name (``float32``, ``bfloat16``, ...).
    chunk_bytes : int
        Bytes per chunk (elements per chunk times the storage itemsize).
    submit : callable
        ``submit(chunk index, pieces, padding bytes, staged bytes)`` stores one chunk and returns
        the getter of its pieces' crc32c (called once every chunk was submitted).
    update : callable
        Called with the bytes of parameters handed on (progress).

    Returns
    -------
    PackedWrite
        Its ``columns`` hold the offsets (elements), sizes, bytes and crc32c of the parameters,
        complete once :meth:`PackedWrite.finish` returned (``pending`` lists the crc32c filled
        in then).
    """
    n = len(arrays)
    dtype = _stage_dtype(arrays, logical) if n else np.dtype(np.uint8)
    itemsize = dtype.itemsize
    nb = np.asarray(sizes, dtype=np.int64) * itemsize
    nbytes = nb.tolist()
    ends = np.cumsum(nb)
    offsets_b = ends - nb
    ends_list = ends.tolist()  # bisect on a list: no GIL hand-off to the writer threads
    crcs = [0] * n
    cutter = _Cutter(submit, chunk_bytes)
    spans: dict[int, list[tuple[int, int, int]]] = {}
    big = np.flatnonzero(nb >= SMALL_BYTES).tolist()
    start = 0
    for stop in [*big, n]:
        while start < stop:  # the small parameters [start, stop): staging buffers
            base = ends_list[start] - nbytes[start]
            cut = bisect.bisect_right(ends_list, base + STAGE_BYTES, start, stop)
            cut = max(cut, start + 1)
            buf = np.empty((ends_list[cut - 1] - base) // itemsize, dtype=dtype)
            np.concatenate(arrays[start:cut], axis=None, out=buf)
            view = buf.view(np.uint8).data
            bounds = (np.append(offsets_b[start:cut], ends[cut - 1]) - base).tolist()
            crcs[start:cut] = crc32c_slices(view, bounds)
            if view.nbytes:
                cutter.feed(view, staged=True)
            update(view.nbytes)
            start = cut
        if stop < n:  # a large parameter: its own memory
            spans[stop] = cutter.feed(_own_bytes(arrays[stop], dtype), staged=False)
            update(nbytes[stop])
            start = stop + 1
    cutter.close()
    offsets = (offsets_b // itemsize).tolist() if n else []
    return PackedWrite(PackedColumns(offsets, sizes, nbytes, crcs, big), cutter.results, spans)
