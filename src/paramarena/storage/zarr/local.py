"""Direct chunk I/O for the packed arrays of a zarr checkpoint on local disk.

A packed array whose codecs are exactly ``bytes`` (little endian) then ``crc32c`` stores chunk
``k`` in the file ``<array>/c/<k>``: the chunk's elements as raw little-endian bytes (the last
chunk padded with zeros to the full chunk length), then the crc32c of those bytes as 4
little-endian bytes. That is what zarr itself writes and reads for such an array (the group's
``zarr.json`` files are still written by zarr), so a checkpoint written here is a plain zarr v3
group for any zarr reader.

Going around zarr's codec pipeline for this one layout removes two full copies of the data: the
writer hands the parameters' own memory to ``writev`` (no staging buffer), and the reader
``readinto``-s straight into the arrays it returns. Remote stores and compressed arrays keep
using zarr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "GROUP_METADATA",
    "ChunkSink",
    "ChunkWriter",
    "LocalChunkFiles",
    "RawLayout",
    "array_metadata",
    "chunks_of",
    "metadata_bytes",
    "raw_layout",
    "read_ranges",
]

_IOV_MAX = 1024
_CRC_BYTES = 4


def _crc32c(data: Any, value: int = 0) -> int:
    import crc32c

    result: int = crc32c.crc32c(data, value=value)
    return result


def _crc32c_function() -> Any:
    """Return ``crc32c.crc32c`` itself (one call per buffer, no wrapper)."""
    import crc32c

    return crc32c.crc32c


def _write_all(fd: int, buffers: Sequence[memoryview]) -> None:
    """Write every buffer in order with ``writev`` (batches of IOV_MAX, short writes resumed)."""
    pending = [b for b in buffers if b.nbytes]
    while pending:
        pending = _advance(pending, os.writev(fd, pending[:_IOV_MAX]))


def _advance(pending: list[Any], done: int) -> list[Any]:
    """Drop the first ``done`` bytes of ``pending`` (a short transfer leaves a partial buffer).

    Buffers are memoryviews or C-contiguous numpy arrays (both have ``nbytes``); a partial
    one continues as a byte view.
    """
    for i, b in enumerate(pending):
        if done < b.nbytes:
            rest = b if done == 0 else memoryview(b).cast("B")[done:]
            return [rest, *pending[i + 1 :]]
        done -= b.nbytes
    return []


#: What zarr writes as a group's ``zarr.json``.
GROUP_METADATA: dict[str, Any] = {"attributes": {}, "zarr_format": 3, "node_type": "group"}


def array_metadata(count: int, chunk: int, dtype: np.dtype[Any]) -> dict[str, Any]:
    """Return the ``zarr.json`` zarr writes for a 1-D ``bytes`` + ``crc32c`` array, fill 0.

    Parameters
    ----------
    count, chunk : int
        Elements in the array and per chunk.
    dtype : numpy.dtype
        A little-endian integer, float or complex dtype.
    """
    codec: dict[str, Any] = {"name": "bytes"}
    if dtype.itemsize > 1:
        codec["configuration"] = {"endian": "little"}
    fill: Any = [0.0, 0.0] if dtype.kind == "c" else (0.0 if dtype.kind == "f" else 0)
    return {
        "shape": [count],
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [codec, {"name": "crc32c"}],
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def metadata_bytes(document: dict[str, Any]) -> bytes:
    """Serialize a ``zarr.json`` document as zarr does (indented JSON)."""
    return json.dumps(document, indent=2).encode()


@dataclass(frozen=True)
class RawLayout:
    """Where and how one packed array's chunks are stored."""

    directory: str
    chunk: int  # elements per chunk
    count: int  # elements in the array
    itemsize: int

    def path(self, k: int) -> str:
        """File of chunk ``k``."""
        return os.path.join(self.directory, "c", str(k))

    @property
    def chunk_bytes(self) -> int:
        """Stored data bytes of every chunk (the last one padded), without the checksum."""
        return self.chunk * self.itemsize


def raw_layout(directory: str, dtype: np.dtype[Any]) -> RawLayout | None:
    """Return the layout of the packed array in ``directory`` if it can be read directly.

    Parameters
    ----------
    directory : str
        The array's directory (holding its ``zarr.json``).
    dtype : numpy.dtype
        The storage dtype the manifest expects.

    Returns
    -------
    RawLayout or None
        None when the metadata is missing or describes anything but a 1-D array with the codecs
        ``bytes`` (little endian) + ``crc32c`` and default ``/`` chunk keys (zarr reads it then).
    """
    try:
        with open(os.path.join(directory, "zarr.json"), "rb") as f:
            meta = json.load(f)
        codecs = [c.get("name") for c in meta["codecs"]]
        endian = meta["codecs"][0].get("configuration", {}).get("endian", "little")
        keys = meta["chunk_key_encoding"]
        (chunk,) = meta["chunk_grid"]["configuration"]["chunk_shape"]
        (count,) = meta["shape"]
        stored = np.dtype(meta["data_type"])
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None
    if (
        codecs != ["bytes", "crc32c"]
        or endian != "little"
        or keys.get("name") != "default"
        or keys.get("configuration", {}).get("separator", "/") != "/"
        or stored != dtype
        or meta.get("storage_transformers")
        or int(chunk) <= 0
    ):
        return None
    return RawLayout(directory, int(chunk), int(count), dtype.itemsize)


#: Threads writing and flushing chunk files while the caller cuts (and checksums) the next.
CHUNK_WRITERS = 2


class LocalChunkFiles:
    """Chunk sink writing each chunk as a file with one ``writev`` (local disk).

    Chunks are written by :data:`CHUNK_WRITERS` threads, each file flushed to disk
    (``fsync``) by the thread that wrote it: writing, checksumming the next chunk (the caller)
    and waiting for the disk overlap. The pieces are views of the caller's arrays, which stay
    untouched until :meth:`finish` returns; at most ``2 * CHUNK_WRITERS`` chunks are in flight.
    """

    def __init__(self, layout: RawLayout, writers: int = CHUNK_WRITERS) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.layout = layout
        os.makedirs(os.path.join(layout.directory, "c"), exist_ok=True)
        self._limit = 2 * max(1, writers)
        self._pool = ThreadPoolExecutor(max(1, writers), thread_name_prefix="paramarena-chunks")
        self._pending: list[Any] = []

    def _write(self, index: int, pieces: Sequence[memoryview]) -> None:
        fd = os.open(self.layout.path(index), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, pieces)
            os.fsync(fd)
        finally:
            os.close(fd)

    def put(self, index: int, pieces: Sequence[memoryview]) -> None:
        """Queue chunk ``index`` for writing (waits while too many chunks are in flight).

        A write that failed (disk full, ...) is raised here once every other write in flight
        has ended, so that the failed save's cleanup never races a thread still creating files.
        """
        while len(self._pending) >= self._limit:
            first = self._pending.pop(0)
            try:
                first.result()
            except BaseException:
                self._stop()
                raise
        self._pending.append(self._pool.submit(self._write, index, list(pieces)))

    def _stop(self) -> None:
        """Cancel the queued writes and wait for the running ones to end."""
        self._pending = []
        self._pool.shutdown(wait=True, cancel_futures=True)

    def finish(self) -> None:
        """Wait until every chunk is written and flushed; raise the first error."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._stop()


class ChunkSink(Protocol):
    """Where :class:`ChunkWriter` sends each complete chunk (its bytes, padding and crc32c)."""

    def put(self, index: int, pieces: Sequence[memoryview]) -> None:
        """Store chunk ``index``, whose bytes are ``pieces`` in order."""
        ...

    def finish(self) -> None:
        """Store whatever is still pending."""
        ...


class ChunkWriter:
    """Cut a packed array into chunks as zarr stores them, from the parameters' own memory.

    Call :meth:`add` with each parameter's bytes in order, then :meth:`close`. Each complete
    chunk (the last one zero-padded, each followed by its crc32c) goes to the sink as a list of
    views of the parameters' memory: nothing is copied here.
    """

    def __init__(self, layout: RawLayout, sink: ChunkSink | None = None) -> None:
        self.layout = layout
        self.sink: ChunkSink = LocalChunkFiles(layout) if sink is None else sink
        self._pieces: list[memoryview] = []
        self._filled = 0
        self._crc = 0
        self._index = 0

    def add(self, data: np.ndarray) -> None:
        """Append the bytes of ``data`` (C-contiguous) to the array."""
        view = np.ascontiguousarray(data).reshape(-1).view(np.uint8).data
        limit = self.layout.chunk_bytes
        pos = 0
        while pos < view.nbytes:
            take = min(limit - self._filled, view.nbytes - pos)
            piece = view[pos : pos + take]
            self._pieces.append(piece)
            self._crc = _crc32c(piece, self._crc)
            self._filled += take
            pos += take
            if self._filled == limit:
                self._flush()

    def _flush(self) -> None:
        pad = self.layout.chunk_bytes - self._filled
        if pad:
            zeros = memoryview(bytes(pad))
            self._pieces.append(zeros)
            self._crc = _crc32c(zeros, self._crc)
        self._pieces.append(memoryview(self._crc.to_bytes(_CRC_BYTES, "little")))
        self.sink.put(self._index, self._pieces)
        self._pieces, self._filled, self._crc = [], 0, 0
        self._index += 1

    def close(self) -> None:
        """Send the last (zero-padded) chunk and let the sink store what it still holds."""
        if self._filled:
            self._flush()
        self.sink.finish()


def _read_all(fd: int, buffers: Sequence[Any]) -> bool:
    """Fill ``buffers`` in order from the file position with ``readv``; False at end of file."""
    pending = [b for b in buffers if b.nbytes]
    while pending:
        got = os.readv(fd, pending[:_IOV_MAX])
        if got == 0:
            return False
        pending = _advance(pending, got)
    return True


def open_chunk(path: str) -> int | str:
    """Open a chunk file for reading: its descriptor, or why not (``"missing"``, ...)."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def _covers(ordered: Sequence[tuple[Any, ...]], valid: int) -> bool:
    """Whether parts ``(offset, view, ...)``, sorted by offset, cover ``[0, valid)`` exactly."""
    pos = 0
    for part in ordered:
        if part[0] != pos:
            return False
        pos = part[0] + part[1].nbytes
    return pos == valid


def _read_chunk(
    path: str,
    parts: Sequence[tuple[Any, ...]],
    layout: RawLayout,
    valid: int,
) -> str | None:
    """Read ``parts`` (byte offset in the chunk, destination[, owner]) of one chunk file.

    When the parts cover the chunk's ``valid`` data bytes exactly and in order, the whole file is
    read (padding and crc32c trailer included) and the chunk's crc32c is checked; otherwise
    each part is read on its own. Returns a problem description, or None.
    """
    ordered = sorted(parts, key=lambda p: p[0])
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
            tail = memoryview(bytearray(expected - valid))
            if not _read_all(fd, [v for _, v in ordered] + [tail]):
                return "short read (truncated)"
            crc, update = 0, _crc32c_function()
            for _, view in ordered:
                crc = update(view, crc)
            crc = update(tail[:-_CRC_BYTES], crc)
            if int.from_bytes(tail[-_CRC_BYTES:], "little") != crc:
                return "crc32c checksum of the chunk failed"
            return None
        for offset, view in ordered:
            why = read_part(fd, size, offset, view)
            if why is not None:
                return why
    finally:
        os.close(fd)
    return None


def whole_size_problem(size: int, expected: int) -> str | None:
    """Say why a chunk file of ``size`` bytes is not the whole chunk of ``expected`` bytes."""
    if size != expected:
        return f"has {size} bytes, expected {expected} (truncated or damaged)"
    return None


def read_part(fd: int, size: int, offset: int, view: Any) -> str | None:
    """Read ``view.nbytes`` bytes at ``offset`` of a chunk file of ``size`` bytes, or say why."""
    if offset + view.nbytes > size - _CRC_BYTES:
        return f"has {size} bytes, too short for the requested range (truncated)"
    os.lseek(fd, offset, os.SEEK_SET)
    if not _read_all(fd, [view]):
        return "short read (truncated)"
    return None


def chunks_of(layout: RawLayout, lo: int, size: int) -> range:
    """Return the chunk indices holding elements ``[lo, lo + size)``."""
    return range(lo // layout.chunk, -(-(lo + size) // layout.chunk)) if size else range(0)


def read_ranges(layout: RawLayout, ranges: Sequence[tuple[int, np.ndarray]]) -> dict[int, str]:
    """Read element ranges of a packed array into the given arrays.

    Parameters
    ----------
    layout : RawLayout
        The array.
    ranges : sequence of (int, numpy.ndarray)
        ``(first element, destination)``: the destination (C-contiguous, of the storage
        itemsize) receives ``destination.size`` elements from that position. A chunk that the
        ranges cover completely (one range or many adjacent ones) is read in one ``readv`` and
        checked against its stored crc32c; a partly read chunk is not (the caller checks each
        parameter's own crc32c).

    Returns
    -------
    dict of int to str
        For each chunk that could not be read (missing, truncated, checksum failure), why;
        empty when every range was read.
    """
    isz = layout.itemsize
    # chunk -> [(byte offset in chunk, destination view)]
    by_chunk: dict[int, list[tuple[int, memoryview]]] = {}
    for lo, dest in ranges:
        buf = dest.reshape(-1).view(np.uint8).data
        end = lo + dest.size
        for k in chunks_of(layout, lo, dest.size):
            a, b = max(lo, k * layout.chunk), min(end, (k + 1) * layout.chunk)
            part = buf[(a - lo) * isz : (b - lo) * isz]
            by_chunk.setdefault(k, []).append(((a - k * layout.chunk) * isz, part))
    problems: dict[int, str] = {}
    for k, parts in sorted(by_chunk.items()):
        valid = min(layout.chunk, layout.count - k * layout.chunk) * isz
        why = _read_chunk(layout.path(k), parts, layout, valid)
        if why is not None:
            problems[k] = f"chunk {k} {why}"
    return problems
