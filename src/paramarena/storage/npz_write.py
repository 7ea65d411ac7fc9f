"""Writing ``.npz`` archives: the zip container written directly, one pass over the data.

An uncompressed ``.npz`` is a zip archive of ``ZIP_STORED`` ``.npy`` entries. Written through
``zipfile`` and ``np.lib.format.write_array`` every array goes through Python's buffered file
layer, is copied by ``tobytes`` and has its CRC-32 computed in a separate pass per write call.
:class:`StoredZipWriter` writes the same bytes itself:

- each entry's local header, ``.npy`` header and data go to the file in one ``pwritev`` straight
  from the array's memory (no copy);
- the CRC-32 of entry ``i + 1`` is computed on the calling thread while a writer thread writes
  entry ``i`` (both release the GIL), so checksumming and copying into the page cache overlap;
- the writer thread starts the kernel's writeback of what it wrote (``sync_file_range``) so
  that the final ``fsync`` of :func:`~paramarena.storage.fileio.atomic_write` has little left.
  A durable save cannot end before the disk has written every byte, so the disk is given work
  from the first milliseconds on: the first 256 KiB are written on the calling thread and
  their writeback started at once, then in steps that double up to 8 MiB;
- the arrays' data bytes (a lower bound of the archive's size) are allocated on disk up front
  (``fallocate``, by the writer thread right after the first write): the writes then copy
  into the page cache without allocating per page.

A non-durable save (``durable=False``: no ``fsync`` follows) starts no writeback: it only
copies into the page cache, and writeback started early would make those copies wait for the
disk. The preallocation stays (it makes the copies cheaper, durable or not).

The layout is what ``zipfile`` writes with ``force_zip64=True``: every local header carries a
zip64 extra field with both sizes; central-directory records carry one only for sizes or
offsets past ``zipfile.ZIP64_LIMIT``; the zip64 end records are written when the entry count,
the central directory's offset or its size need them. ``np.load`` reads the result.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from paramarena.storage.fileio import preallocate, start_writeback

__all__ = [
    "ZIP64_LIMIT",
    "StoredZipWriter",
    "central_record",
    "end_records",
    "local_header",
    "npy_parts",
    "write_with_zipfile",
]

#: Sizes and offsets above this get zip64 fields (the limit ``zipfile`` uses).
ZIP64_LIMIT = zipfile.ZIP64_LIMIT
_COUNT_LIMIT = zipfile.ZIP_FILECOUNT_LIMIT
_ZIP64_VERSION = 45
_UTF8_FLAG = 0x800
_UNIX = 3
_EXTERNAL_ATTR = 0o600 << 16  # what ZipFile.open(name, "w") gives an entry
#: (DOS time, DOS date) of every entry: 1980-01-01 00:00, as ZipFile.open(name, "w") writes.
_WHEN = (0, 1 << 5 | 1)
#: Below this many bytes in all, a save writes on the calling thread (a thread costs more).
_THREAD_MIN_BYTES = 8 << 20
#: Writeback is started after the first write, then once at least twice as much as at the
#: last start was written since (so that the disk is fed from the start), up to this step.
_WRITEBACK_STEP = 8 << 20
#: One write call moves at most this much (Linux moves at most ~2 GiB per call).
_MAX_PIECE = 1 << 30
_IOV_MAX = 1024
#: Small entries are gathered into one write call of at least this many bytes (or 512 buffers).
_BATCH_BYTES = 1 << 20
#: The first write call is made (on the calling thread) once this much is gathered, so that
#: the disk has work from the first milliseconds of a save on: a save cannot end before the
#: disk has written everything, so every millisecond it idles at the start is added to it.
_FIRST_BATCH_BYTES = 256 << 10
#: An entry with at most this many data bytes is handed on as one ``bytes`` object (headers and
#: data copied together): one buffer per small entry instead of two.
_SMALL_ENTRY = 4096


def npy_parts(
    arr: np.ndarray, headers: dict[tuple[Any, ...], bytes] | None = None
) -> tuple[bytes, np.ndarray]:
    """Return the ``.npy`` header ``np.save`` writes for ``arr`` and the data as bytes.

    The data is a 1-D ``uint8`` view of the array's memory in the order the header states
    (C order; Fortran order for an array that is only Fortran-contiguous); a non-contiguous
    array is copied to C order first, as ``np.save`` does. Structured dtypes (whose header may
    need format version 3.0) are left to numpy: :func:`write_with_zipfile`. ``headers`` caches
    the headers by dtype, shape and order across the calls of one save.
    """
    if arr.dtype.names is not None:
        raise TypeError(f"structured dtype {arr.dtype}: write it with write_with_zipfile")
    fortran = arr.flags.f_contiguous and not arr.flags.c_contiguous
    key = (arr.dtype.str, arr.shape, fortran)
    cached = headers.get(key) if headers is not None else None
    if cached is None:
        buffer = io.BytesIO()
        meta = np.lib.format.header_data_from_array_1_0(arr)
        try:
            np.lib.format.write_array_header_1_0(buffer, meta)
        except ValueError:  # pragma: no cover - over 64 KiB: not with at most 64 dimensions
            buffer = io.BytesIO()
            np.lib.format.write_array_header_2_0(buffer, meta)
        cached = buffer.getvalue()
        if headers is not None:
            headers[key] = cached
    if fortran:
        ordered = arr.T
    elif arr.flags.c_contiguous:
        ordered = arr
    else:
        ordered = np.ascontiguousarray(arr)
    data = ordered.reshape(-1).view(np.uint8) if ordered.nbytes else np.empty(0, np.uint8)
    return cached, data


def _encoded(name: str) -> tuple[bytes, int]:
    """Return the entry name as bytes and its flag bits (UTF-8 flag unless it is ASCII)."""
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), _UTF8_FLAG


def local_header(name: bytes, flags: int, crc: int, size: int, when: tuple[int, int]) -> bytes:
    """Return a stored entry's local header, with the zip64 extra field of ``force_zip64``."""
    extra = struct.pack("<HHQQ", 1, 16, size, size)
    return (
        struct.pack(
            "<4s2B4HL2L2H",
            b"PK\x03\x04",
            _ZIP64_VERSION,
            0,
            flags,
            zipfile.ZIP_STORED,
            when[0],
            when[1],
            crc,
            0xFFFFFFFF,
            0xFFFFFFFF,
            len(name),
            len(extra),
        )
        + name
        + extra
    )


def central_record(
    name: bytes, flags: int, crc: int, size: int, offset: int, when: tuple[int, int]
) -> bytes:
    """Return a stored entry's central-directory record (zip64 fields only where needed)."""
    extra_values = []
    stored_size = size
    if size > ZIP64_LIMIT:
        extra_values += [size, size]
        stored_size = 0xFFFFFFFF
    stored_offset = offset
    if offset > ZIP64_LIMIT:
        extra_values.append(offset)
        stored_offset = 0xFFFFFFFF
    extra = (
        struct.pack(f"<HH{len(extra_values)}Q", 1, 8 * len(extra_values), *extra_values)
        if extra_values
        else b""
    )
    return (
        struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            _ZIP64_VERSION,
            _UNIX,
            _ZIP64_VERSION,
            0,
            flags,
            zipfile.ZIP_STORED,
            when[0],
            when[1],
            crc,
            stored_size,
            stored_size,
            len(name),
            len(extra),
            0,
            0,
            0,
            _EXTERNAL_ATTR,
            stored_offset,
        )
        + name
        + extra
    )


def end_records(count: int, cd_offset: int, cd_size: int, comment: bytes) -> bytes:
    """Return the end of the archive: zip64 end records when needed, then the end record."""
    out = b""
    if count > _COUNT_LIMIT or cd_offset > ZIP64_LIMIT or cd_size > ZIP64_LIMIT:
        out += struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset
        )
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, cd_offset + cd_size, 1)
        count = min(count, 0xFFFF)
        cd_size = min(cd_size, 0xFFFFFFFF)
        cd_offset = min(cd_offset, 0xFFFFFFFF)
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset,
                       len(comment))  # fmt: skip
    return out + comment


def _pieces(buffers: Sequence[Any]) -> list[memoryview]:
    """Byte views of ``buffers``, large ones cut into pieces a single write call can take."""
    out: list[memoryview] = []
    for b in buffers:
        if isinstance(b, bytes) and len(b) <= _MAX_PIECE:
            out.append(memoryview(b))
            continue
        view = memoryview(b).cast("B") if not isinstance(b, bytes) else memoryview(b)
        for start in range(0, view.nbytes, _MAX_PIECE):
            out.append(view[start : start + _MAX_PIECE])
    return out


def _pwrite_all(fd: int, buffers: list[memoryview], offset: int) -> int:
    """Write ``buffers`` at ``offset`` with ``pwritev`` (short writes resumed); return the end."""
    pending = [b for b in buffers if b.nbytes]
    while pending:
        done = os.pwritev(fd, pending[:_IOV_MAX], offset)
        if done <= 0:  # pragma: no cover - a regular file never writes 0 bytes without error
            raise OSError("pwritev wrote nothing")
        offset += done
        while pending and done >= pending[0].nbytes:
            done -= pending[0].nbytes
            pending.pop(0)
        if pending and done:
            pending[0] = pending[0][done:]
    return offset


def _preallocate(fd: int, nbytes: int) -> None:
    preallocate(fd, nbytes)


@dataclass
class _Entry:
    name: bytes
    flags: int
    crc: int
    size: int
    offset: int


class StoredZipWriter:
    """Write a zip archive of ``ZIP_STORED`` entries to ``fh``, starting at offset 0.

    Parameters
    ----------
    fh : binary file
        A local file (written with ``pwritev`` on its descriptor; its buffer must be empty) or
        any other binary file object (``write`` calls, e.g. the in-memory buffer of a remote
        save).
    total_bytes : int
        About how many bytes will be written: large archives are written by a writer thread.
    preallocate : int, optional
        Bytes the archive will reach at least (e.g. the arrays' data bytes): that much of the
        file is allocated on disk up front (:func:`~paramarena.storage.fileio.preallocate`,
        by the writer thread once the first write is made), which makes the writes cheaper.
        Never more than will be written: the file is that long from then on. Only archives
        written by a writer thread (``total_bytes`` large, a local file) are preallocated.
    durable : bool, default True
        Whether an ``fsync`` follows (:func:`~paramarena.storage.fileio.atomic_write`): only
        then is the kernel's writeback started as the data goes.

    Use :meth:`add` for every entry, then :meth:`finish`; :meth:`close` (also after an error)
    waits for the writes in flight.
    """

    def __init__(
        self, fh: IO[bytes], total_bytes: int, preallocate: int = 0, *, durable: bool = True
    ) -> None:
        self._fh = fh
        self._durable = durable
        self._fd: int | None = None
        if not isinstance(fh, io.BytesIO) and hasattr(os, "pwritev"):  # not on Windows
            try:
                fh.flush()
                fd = fh.fileno()
                if fh.seekable() and fh.tell() == 0:
                    self._fd = fd
            except (OSError, ValueError, AttributeError):
                self._fd = None
        self._end = 0  # bytes added so far: the next entry's offset
        self._batch: list[memoryview] = []  # added, not yet handed to a write
        self._batch_offset = 0
        self._batch_bytes = 0
        self._entries: list[_Entry] = []
        self._header_crcs: dict[bytes, int] = {}  # CRC-32 of each distinct .npy header
        self._when = _WHEN
        self._pool = (
            ThreadPoolExecutor(1, "paramarena-npz")
            if self._fd is not None and total_bytes >= _THREAD_MIN_BYTES
            else None
        )
        self._futures: list[Future[None]] = []
        self._failed = threading.Event()
        self._synced = 0  # writeback started up to here
        self._step = 1  # writeback is started after the first write, then in doubling steps
        self._first = True  # the first write is still to come
        self._preallocate = preallocate if self._pool is not None else 0

    def _write(self, buffers: list[memoryview], offset: int) -> None:
        if self._failed.is_set():
            return  # an earlier write failed: the save is abandoned
        try:
            if self._fd is None:
                for b in buffers:
                    self._fh.write(b)
                return
            end = _pwrite_all(self._fd, buffers, offset)
            if self._durable and end - self._synced >= self._step:
                start_writeback(self._fd, self._synced, end - self._synced)
                self._step = min(2 * (end - self._synced), _WRITEBACK_STEP)
                self._synced = end
        except BaseException:
            self._failed.set()
            raise

    def _submit(self, buffers: Sequence[Any]) -> None:
        for piece in _pieces(buffers):
            if piece.nbytes:
                self._batch.append(piece)
                self._batch_bytes += piece.nbytes
        self._end = self._batch_offset + self._batch_bytes
        limit = _FIRST_BATCH_BYTES if self._first else _BATCH_BYTES
        if self._batch_bytes >= limit or len(self._batch) >= _IOV_MAX // 2:
            self._flush()

    def _flush(self) -> None:
        """Hand the gathered buffers to one write (on the writer thread when there is one)."""
        pieces, offset = self._batch, self._batch_offset
        self._batch_offset += self._batch_bytes
        self._batch, self._batch_bytes = [], 0
        if not pieces:
            return
        first, self._first = self._first, False
        if self._pool is None or (first and self._batch_offset - offset <= 2 * _BATCH_BYTES):
            self._write(pieces, offset)  # a small first write: the disk need not wait for a thread
            if first:
                self._start_preallocation()
            return
        if first:
            self._start_preallocation()
        self._futures.append(self._pool.submit(self._write, pieces, offset))
        if self._failed.is_set():
            self._raise_failure()

    def _start_preallocation(self) -> None:
        """Have the writer thread allocate the file's blocks.

        Called right after the first write: the disk already has work, and starting the thread
        does not delay it.
        """
        if self._pool is not None and self._fd is not None and self._preallocate > 0:
            self._futures.append(self._pool.submit(_preallocate, self._fd, self._preallocate))

    def _raise_failure(self) -> None:
        for future in self._futures:
            if future.done() and future.exception() is not None:
                future.result()

    def add(self, name: str, npy_header: bytes, data: np.ndarray) -> None:
        """Append the entry ``name`` (``.npy`` header, then the bytes of ``data``)."""
        encoded, flags = _encoded(name)
        nbytes = data.nbytes
        size = len(npy_header) + nbytes
        header_crc = self._header_crcs.get(npy_header)
        if header_crc is None:
            header_crc = self._header_crcs[npy_header] = zlib.crc32(npy_header)
        crc = zlib.crc32(data.data, header_crc) if nbytes else header_crc
        self._entries.append(_Entry(encoded, flags, crc, size, self._end))
        head = local_header(encoded, flags, crc, size, self._when)
        if nbytes > _SMALL_ENTRY:
            self._submit([head + npy_header, data])
        else:
            self._submit([b"".join((head, npy_header, data.data))])

    def finish(self, comment: bytes) -> None:
        """Write the central directory and the end records with the archive ``comment``."""
        directory = b"".join(
            central_record(e.name, e.flags, e.crc, e.size, e.offset, self._when)
            for e in self._entries
        )
        cd_offset = self._end
        self._submit([directory + end_records(len(self._entries), cd_offset,
                                              len(directory), comment)])  # fmt: skip
        self._flush()
        self.close()
        for future in self._futures:
            future.result()

    def close(self, abort: bool = False) -> None:
        """Wait for the writes in flight; with ``abort`` (or after a failed write) drop the rest.

        A save that fails (or is interrupted) on the calling thread closes with ``abort=True``:
        the writes not yet started are skipped, the one in progress is waited for, so that the
        temporary file can be removed as soon as this returns.
        """
        if abort:
            self._failed.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=self._failed.is_set())


def write_with_zipfile(
    fh: IO[bytes],
    stored: Sequence[tuple[str, np.ndarray]],
    compression: int,
    update: Callable[[int], None],
) -> zipfile.ZipFile:
    """Write the entries through ``zipfile`` and numpy (deflated archives, exotic headers).

    Returns the open :class:`zipfile.ZipFile`; the caller sets its comment and closes it.
    """
    zf = zipfile.ZipFile(fh, "w", compression=compression, allowZip64=True)
    try:
        for name, arr in stored:
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)
            update(arr.nbytes)
    except BaseException:
        zf.close()
        raise
    return zf
