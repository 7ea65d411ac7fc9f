"""Reading a checkpoint's parameters into flat buffers by element offsets (``load_packed``).

:func:`read_packed` serves :func:`paramarena.storage.columns.load_packed` for zarr: a whole
packed array of many small parameters on local disk without compression is streamed into its
buffer chunk file by chunk file (:mod:`paramarena.storage.zarr.gather`); anything else is read
by :func:`paramarena.storage.zarr.reader.read` into views of the buffers.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paramarena.errors import ParameterValueError
from paramarena.storage.fileio import progress_reporter
from paramarena.storage.zarr import checkpass, reader
from paramarena.storage.zarr.checkpass import Identity
from paramarena.storage.zarr.gather import gatherable, places_problem, read_gathered
from paramarena.storage.zarr.local import raw_layout
from paramarena.storage.zarr.reader import (
    LARGE_PARAMETER_BYTES,
    Problems,
    _by_array,
    logical_dtype,
    read,
)
from paramarena.storage.zarr.validate import Manifest
from paramarena.storage.zarr.writer import storage_dtype

__all__ = ["read_packed"]


def read_packed(
    loc: Any,
    version: str,
    record: Manifest,
    targets: Sequence[Any],
    progress: bool | None,
    check_first: bool = False,
) -> tuple[dict[str, np.ndarray], Problems]:
    """Read the arrays of ``targets`` (:class:`~paramarena.storage.columns.PackedTarget`).

    Returns the arrays whose stored shape or dtype differ from their target's (read into new
    arrays) and the problems. A whole packed array of small parameters whose target is one
    buffer (local, uncompressed) is streamed chunk file by chunk file into it
    (:func:`~paramarena.storage.zarr.gather.read_gathered`): every chunk's crc32c and every
    parameter's crc32c are checked. Anything else is read by :func:`read` into views of the
    buffers.

    ``check_first`` (buffers that hold live values, all or nothing): every parameter is first
    checked without writing anything (every chunk's and every parameter's crc32c, each chunk
    file's identity recorded: a packed array of small parameters by a gather that writes
    nothing, anything else by :func:`~paramarena.storage.zarr.reader.check`), every checked
    chunk file is ``stat``-ed again, and only then are the very files checked read into the
    buffers (not checksummed again). Any problem found before the read (including a stored
    shape or dtype that differs from its target's) is returned with nothing written.
    """
    problems: Problems = []
    other: list[int] = []  # manifest positions read into new arrays
    views: dict[str, np.ndarray] = {}
    rest: list[int] = []  # manifest positions read by ``read`` into ``views``
    located: list[tuple[Any, np.ndarray, Sequence[tuple[int, ...]], Sequence[str]]] = []
    for t in targets:
        names = tuple(t.names)
        if names == record.names:
            located.append((t, np.arange(len(names), dtype=np.intp), record.shapes, record.dtypes))
        else:
            index = record.index
            where = list(map(index.__getitem__, names))
            located.append(
                (
                    t,
                    np.array(where, dtype=np.intp),
                    list(map(record.shapes.__getitem__, where)),
                    list(map(record.dtypes.__getitem__, where)),
                )
            )
    total = int(sum(int(record.nbytes[pos].sum()) for _, pos, _, _ in located))
    placed_all: list[tuple[Any, np.ndarray, np.ndarray]] = []  # (target, positions, fits)
    for t, pos, stored_shapes, stored_dtypes in located:
        n = len(pos)
        if list(stored_shapes) == list(t.shapes):
            fits = np.ones(n, dtype=bool)
        else:
            fits = np.fromiter(map(operator.eq, stored_shapes, t.shapes), dtype=bool, count=n)
        wanted = t.buffer.dtype
        for d in set(stored_dtypes):
            if logical_dtype(d) != wanted:
                fits &= np.fromiter(map(d.__ne__, stored_dtypes), dtype=bool, count=n)
        placed = pos[fits]
        why = places_problem(t.offsets[fits], record.sizes[placed], t.buffer.size)
        if why is not None:
            raise ParameterValueError(f"load_packed: {why} (loading {loc.uri!r}).")
        other.extend(pos[~fits].tolist())
        placed_all.append((t, pos, fits))
    verified: dict[str, Identity] | None = None
    if check_first:
        verified = {}
        found = _check_first(loc, version, record, placed_all, other, verified)
        if found:
            return {}, found
    with progress_reporter(total, f"load {loc.uri}", progress) as update:
        for t, pos, fits in placed_all:
            inv = np.full(len(record.names), -1, dtype=np.intp)  # position -> index in t
            inv[pos[fits]] = np.flatnonzero(fits)
            for arr_name, idx in _by_array(record, np.sort(pos[fits]).tolist()).items():
                at = np.asarray(idx, dtype=np.intp)
                mine = inv[at]
                if not _gather_raw(loc, version, record, arr_name, at, t, mine, problems, verified):
                    rest.extend(idx)
                    pairs = zip(idx, mine.tolist(), strict=True)
                    views.update((record.names[i], t.view(j)) for i, j in pairs)
                    continue
                update(int(record.nbytes[at].sum()))
    if rest:
        out, found = read(loc, version, record, sorted(rest), None, views, verified)
        problems.extend(found)
        for name, a in out.items():
            if a is not views[name]:
                np.copyto(views[name], a)
    leftovers: dict[str, np.ndarray] = {}
    if other:
        out, found = read(loc, version, record, sorted(other), None)
        problems.extend(found)
        leftovers.update(out)
    return leftovers, problems


def _check_first(
    loc: Any,
    version: str,
    record: Manifest,
    placed: Sequence[tuple[Any, np.ndarray, np.ndarray]],
    other: Sequence[int],
    verified: dict[str, Identity],
) -> Problems:
    """Run the check pass of ``check_first`` (see :func:`read_packed`); return its problems."""
    if other:
        return [
            (
                record.names[i],
                "stored with another shape or dtype than the load was planned for (the "
                "checkpoint changed since it was inspected); nothing was written",
            )
            for i in other
        ]
    found: Problems = []
    rest: list[int] = []  # checked by ``reader.check``
    for t, pos, fits in placed:
        inv = np.full(len(record.names), -1, dtype=np.intp)  # position -> index in t
        inv[pos[fits]] = np.flatnonzero(fits)
        for arr_name, idx in _by_array(record, np.sort(pos[fits]).tolist()).items():
            at = np.asarray(idx, dtype=np.intp)
            if not _gather_raw(
                loc, version, record, arr_name, at, t, inv[at], found, check_only=verified
            ):
                rest.extend(idx)
    if rest:
        found.extend(reader.check(loc, version, record, sorted(rest), verified))
    if found:
        return found
    moved = checkpass.changed(verified)
    return [
        (
            path,
            f"chunk file changed between the check and the read ({len(moved)} in all); "
            "nothing was written",
        )
        for path in moved[:3]
    ]


def _gather_raw(
    loc: Any,
    version: str,
    record: Manifest,
    arr_name: str,
    at: np.ndarray,
    target: Any,
    mine: np.ndarray,
    problems: Problems,
    verified: Mapping[str, Identity] | None = None,
    check_only: dict[str, Identity] | None = None,
) -> bool:
    """Read the whole packed array ``arr_name`` into ``target`` if it can; False if not.

    ``verified``: the chunk files were checked (see :func:`read_packed`); only those very
    files are read, without checksums. ``check_only``: check every chunk and parameter as the
    read would, write nothing, and record the identity of each chunk file that passed.
    """
    if not loc.local or len(at) * LARGE_PARAMETER_BYTES <= int(record.nbytes[at].sum()):
        return False  # few large parameters: read straight into their places (``read``)
    sdtype = storage_dtype(record.dtypes[int(at[0])])
    layout = raw_layout(loc.join(version, arr_name), sdtype)
    if layout is None or layout.itemsize != target.buffer.itemsize:
        return False
    offsets, sizes = record.offsets[at], record.sizes[at]
    dest = target.offsets[mine]
    if not gatherable(offsets, sizes, layout.count):
        return False
    crcs, bad = read_gathered(layout, offsets, sizes, target.buffer, dest, verified, check_only)
    wrong = np.flatnonzero(crcs != record.crcs[at]) if verified is None else np.empty(0, np.intp)
    failed: dict[int, str] = {}
    if bad:
        first = offsets // layout.chunk
        last = (offsets + np.maximum(sizes, 1) - 1) // layout.chunk
        for k, why in bad.items():
            for r in np.flatnonzero((first <= k) & (last >= k) & (sizes > 0)).tolist():
                failed.setdefault(r, f"{why} in {arr_name!r} (file {version}/{arr_name}/c/{k})")
    for r in wrong.tolist():
        failed.setdefault(r, "crc32c checksum mismatch")
    for r in sorted(failed):
        problems.append((record.names[int(at[r])], failed[r]))
    return True
