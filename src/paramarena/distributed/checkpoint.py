"""Sharded zarr checkpoints: every rank writes its chunks, rank 0 commits once all succeeded.

A checkpoint written here is an ordinary checkpoint of :mod:`paramarena.storage.zarr.checkpoint`
(one version directory, ``manifest.json``, ``COMMIT`` last): any single process can
``inspect``, ``verify`` and ``load`` it. Replicated parameters are packed into
``packed_<dtype>`` arrays (written by rank 0, as a single-process save does); each sharded
parameter gets its own 1-D array ``rows_<i>`` whose chunk is ``block`` rows of the layout, so
every rank's rows are whole chunks and no chunk object is written by two ranks.

The commit protocol (``docs/distributed.md``):

1. rank 0 picks the version name and broadcasts it;
2. every rank writes the chunks it owns (rank 0 also the metadata documents and the replicated
   parameters), fsyncs them on local disk, and records the crc32c of each chunk and of its
   rows of each parameter; any exception is caught and becomes this rank's report;
3. one allgather of the reports (JSON): if any rank failed, every rank raises
   :class:`~paramarena.errors.ShardedCheckpointError`, rank 0 removes the uncommitted version,
   and the previous checkpoint stays the committed one;
4. rank 0 checks that every chunk was reported by exactly one rank, combines the crc32c of the
   rows into each parameter's crc32c, and calls the single-process
   :func:`~paramarena.storage.zarr.checkpoint.commit_version` (manifest, fsync, ``COMMIT``);
5. rank 0 broadcasts the outcome: every rank returns, or every rank raises.

A rank killed during the save never reaches step 3: the launcher (``mpirun``) ends the job and
nothing is committed.

Load (:func:`load_sharded`) reads each rank's rows by byte range and verifies them: whole chunks
by their crc32c, whole parameters by theirs, and rows of a parameter split over ranks by
combining every rank's crc32c of its rows (one allgather, the same verdict on every rank).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena.distributed.crc import crc32c_concat
from paramarena.errors import (
    ConfigurationError,
    CorruptCheckpointError,
    DistributedError,
    ParamarenaError,
    ShapeMismatchError,
    ShardedCheckpointError,
    UnexpectedParameterError,
)
from paramarena.params.loading import LoadReport, collect_for_save
from paramarena.storage.zarr.checkpoint import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CONCURRENCY,
    ZarrCheckpointBackend,
    _crc,
    _logical_dtype,
    _open_root,
    _storage_dtype,
    commit_version,
    new_version,
)
from paramarena.storage.zarr.local import (
    ChunkWriter,
    LocalChunkFiles,
    RawLayout,
    chunks_of,
    raw_layout,
    read_ranges,
)
from paramarena.storage.zarr.location import Location, RemoteChunkObjects
from paramarena.storage.zarr.pack import DirectPacker

if TYPE_CHECKING:
    from paramarena.distributed.sharded import ShardedParameterDict
    from paramarena.hooks.records import Communicator

__all__ = ["load_sharded", "save_sharded"]

_SAVE_OPTIONS = frozenset({"progress", "storage_options", "concurrency", "client"})


class _IndexedSink:
    """Chunk sink numbering chunks from ``first`` and recording each one's crc32c."""

    def __init__(self, inner: Any, first: int, local_paths: RawLayout | None) -> None:
        # ``local_paths``: fsync the chunk files at the end (ranks other than 0 on local disk;
        # rank 0's files are flushed by the commit step's fsync of the whole version)
        self.inner = inner
        self.first = first
        self.layout = local_paths
        self.chunks: list[list[int]] = []

    def put(self, index: int, pieces: Sequence[memoryview]) -> None:
        k = self.first + index
        self.chunks.append([k, int.from_bytes(bytes(pieces[-1]), "little")])
        self.inner.put(k, pieces)

    def finish(self) -> None:
        self.inner.finish()
        if self.layout is not None:  # durable before this rank reports success
            for k, _ in self.chunks:
                fd = os.open(self.layout.path(k), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)


def _write_array_part(
    loc: Location,
    version: str,
    array: str,
    count: int,
    chunk: int,
    sdtype: np.dtype[Any],
    first_chunk: int,
    parts: Sequence[np.ndarray],
    concurrency: int,
    fsync: bool = True,
) -> list[list[int]]:
    """Write ``parts`` (in order) as chunks ``first_chunk, ...`` of ``array``; return their crcs."""
    layout = RawLayout(loc.join(version, array), chunk, count, sdtype.itemsize)
    inner: Any = (
        LocalChunkFiles(layout)
        if loc.local
        else RemoteChunkObjects(loc, version, array, concurrency)
    )
    sink = _IndexedSink(inner, first_chunk, layout if loc.local and fsync else None)
    writer = ChunkWriter(layout, sink)
    for part in parts:
        writer.add(part)
    writer.close()
    return sink.chunks


def _equal_chunk(count: int, chunk_bytes: int, itemsize: int) -> int:
    """Return the single-process save's chunk: equal chunks of at most ``chunk_bytes``."""
    limit = max(1, min(chunk_bytes // itemsize, max(count, 1)))
    return max(1, -(-count // -(-count // limit))) if count else 1


def _plan(sd: ShardedParameterDict, names: Mapping[str, str], chunk_bytes: int) -> dict[str, Any]:
    """Arrays of the checkpoint: name -> (count, chunk, storage dtype) and entry placements."""
    arrays: dict[str, tuple[int, int, np.dtype[Any]]] = {}
    place: dict[str, tuple[str, int]] = {}  # parameter -> (array, offset)
    packed: dict[str, int] = {}
    for i, s in enumerate(sd.layout):
        if s.replicated:
            name = f"packed_{s.dtype}"
            place[s.name] = (name, packed.get(name, 0))
            packed[name] = packed.get(name, 0) + math.prod(s.shape)
        else:
            name = f"rows_{i:04d}"
            arrays[name] = (math.prod(s.shape), s.block * s.row_elements, _storage_dtype(s.dtype))
            place[s.name] = (name, 0)
    for name, count in packed.items():
        sdtype = _storage_dtype(name.removeprefix("packed_"))
        arrays[name] = (count, _equal_chunk(count, chunk_bytes, sdtype.itemsize), sdtype)
    return {"arrays": arrays, "place": place, "names": dict(names)}


def _write_own(
    sd: ShardedParameterDict,
    loc: Location,
    version: str,
    plan: Mapping[str, Any],
    values: Mapping[str, np.ndarray],
    concurrency: int,
) -> dict[str, Any]:
    """Write this rank's chunks; return its report (crc32c of its rows and of its chunks)."""
    rank = sd.comm.rank
    arrays = plan["arrays"]
    report: dict[str, Any] = {"ok": True, "params": {}, "chunks": {}}
    if rank == 0:
        packer = DirectPacker(loc, version, concurrency)
        for name, (count, chunk, sdtype) in arrays.items():
            packer.array(name, count, chunk, sdtype)
    packed_parts: dict[str, list[np.ndarray]] = {}
    for s in sd.layout:
        stored = plan["names"][s.name]
        array, _offset = plan["place"][s.name]
        count, chunk, sdtype = arrays[array]
        flat = np.ascontiguousarray(values[stored]).reshape(-1).view(sdtype)
        if s.replicated:
            if rank == 0:
                packed_parts.setdefault(array, []).append(flat)
                report["params"][s.name] = [int(_crc(flat), 16), int(flat.nbytes)]
            continue
        lo, _hi = s.elements(rank)
        report["params"][s.name] = [int(_crc(flat), 16), int(flat.nbytes)]
        if flat.size:
            report["chunks"][array] = _write_array_part(
                loc,
                version,
                array,
                count,
                chunk,
                sdtype,
                lo // chunk,
                [flat],
                concurrency,
                fsync=rank != 0,
            )
    for array, parts in packed_parts.items():
        count, chunk, sdtype = arrays[array]
        report["chunks"][array] = _write_array_part(
            loc, version, array, count, chunk, sdtype, 0, parts, concurrency, fsync=False
        )
    return report


def _entries(
    sd: ShardedParameterDict, plan: Mapping[str, Any], reports: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Check chunk coverage and build the manifest entries (rank 0)."""
    arrays = plan["arrays"]
    owners: dict[str, dict[int, int]] = {name: {} for name in arrays}
    for rank, rep in enumerate(reports):
        for array, chunks in rep["chunks"].items():
            for k, _crc32c in chunks:
                if k in owners[array]:
                    raise ShardedCheckpointError(
                        f"chunk {k} of array {array!r} was written by ranks {owners[array][k]} "
                        f"and {rank}."
                    )
                owners[array][k] = rank
    for array, (count, chunk, _sdtype) in arrays.items():
        missing = sorted(set(range(-(-count // chunk))) - set(owners[array]))
        if missing:
            raise ShardedCheckpointError(
                f"chunk(s) {missing[:5]} of array {array!r} were written by no rank."
            )
    entries = []
    for s in sd.layout:
        array, offset = plan["place"][s.name]
        ranks = [0] if s.replicated else range(sd.comm.size)
        parts = [tuple(reports[r]["params"][s.name]) for r in ranks]
        size = math.prod(s.shape)
        itemsize = _storage_dtype(s.dtype).itemsize
        entries.append(
            {
                "name": plan["names"][s.name],
                "shape": list(s.shape),
                "dtype": s.dtype,
                "array": array,
                "offset": offset,
                "size": size,
                "nbytes": size * itemsize,
                "crc32c": f"{crc32c_concat((c, n) for c, n in parts if n):08x}",
            }
        )
    return entries


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _gather_reports(comm: Communicator, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(r) for r in comm.allgather_bytes(json.dumps(report).encode())]


def save_sharded(
    sd: ShardedParameterDict, filename: Any, *, strip_prefix: str = "", **options: Any
) -> None:
    """Write one zarr checkpoint from every rank's rows (see the module docstring).

    Raises
    ------
    paramarena.errors.ShardedCheckpointError
        On every rank, when any rank failed to write (the message names the rank and why) or
        the commit failed; nothing is committed.
    paramarena.errors.ConfigurationError
        An option the sharded save does not take (``compression``, ``chunk_bytes``: the
        layout fixes the chunks), or a ``.zarr.zip`` path.
    """
    comm = sd.comm
    uri = os.fspath(filename)
    unknown = set(options) - _SAVE_OPTIONS - {"format"}
    if unknown or options.get("format", "zarr") != "zarr" or uri.endswith(".zip"):
        raise ConfigurationError(
            f"a sharded save writes a zarr checkpoint directory or prefix; got {uri!r} with "
            f"options {sorted(options)} (valid: {sorted(_SAVE_OPTIONS)})."
        )
    concurrency = int(options.get("concurrency", DEFAULT_CONCURRENCY))
    version = comm.broadcast_bytes(new_version().encode() if comm.rank == 0 else None, 0).decode()
    report: dict[str, Any]
    plan: dict[str, Any] = {}
    loc: Location | None = None
    try:
        values = collect_for_save(sd.local.values(), strip_prefix)
        names = dict(zip(sd.local.keys(), values, strict=True))
        plan = _plan(sd, names, DEFAULT_CHUNK_BYTES)
        loc = Location(uri, options.get("storage_options"), str(options.get("client", "fsspec")))
        report = _write_own(sd, loc, version, plan, values, concurrency)
    except Exception as exc:  # reported to every rank below: nobody is left waiting
        report = {"ok": False, "error": _describe(exc)}
    reports = _gather_reports(comm, report)
    failed = [(r, rep["error"]) for r, rep in enumerate(reports) if not rep["ok"]]
    outcome = b""
    if comm.rank == 0:
        if failed:
            outcome = "; ".join(f"rank {r}: {why}" for r, why in failed).encode()
        else:
            try:
                assert loc is not None
                entries = _entries(sd, plan, reports)
                commit_version(loc, version, entries, named=True, chunk_bytes=DEFAULT_CHUNK_BYTES)
            except Exception as exc:
                outcome = f"rank 0 could not commit: {_describe(exc)}".encode()
        if outcome and loc is not None:
            _remove_quietly(loc, version)
    outcome = comm.broadcast_bytes(outcome, 0)
    if outcome:
        raise ShardedCheckpointError(
            f"sharded save of {uri!r} failed ({outcome.decode()}); nothing was committed and "
            f"{uri!r} still holds its previous checkpoint, if any."
        )


def _remove_quietly(loc: Location, version: str) -> None:
    try:
        loc.remove_tree(version)
    except Exception:  # the uncommitted version is garbage either way; the next save drops it
        return


# --- load -----------------------------------------------------------------------------------


def _read_local(
    loc: Any, version: str, array: str, wanted: Sequence[tuple[Mapping[str, Any], int, np.ndarray]]
) -> bool:
    """Read ``(entry, first element, destination)`` ranges of a local packed array directly.

    Returns False when the array cannot be read directly (compressed: zarr reads it).
    Chunks the ranges cover completely are checked against their crc32c here.
    """
    layout = raw_layout(loc.join(version, array), _storage_dtype(wanted[0][0]["dtype"]))
    if layout is None:
        return False
    ranges = [(int(e["offset"]) + lo, dest) for e, lo, dest in wanted if dest.size]
    bad = read_ranges(layout, ranges)
    for e, lo, dest in wanted:
        start = int(e["offset"]) + lo
        failed = [bad[k] for k in chunks_of(layout, start, dest.size) if k in bad]
        if failed:
            raise CorruptCheckpointError(
                f"zarr checkpoint {loc.uri!r}: parameter {e['name']!r}: {'; '.join(failed)} in "
                f"{array!r}."
            )
    return True


def _read_zarr(
    loc: Any, version: str, array: str, wanted: Sequence[tuple[Mapping[str, Any], int, np.ndarray]]
) -> None:
    """Read the ranges through zarr (object stores, compressed arrays): each chunk once."""
    try:
        zarr_array = loc.open_group(version)[array]
        chunk, count = int(zarr_array.chunks[0]), int(zarr_array.shape[0])
        cache: dict[int, np.ndarray] = {}
        for e, lo, dest in wanted:
            a = int(e["offset"]) + lo
            b = a + dest.size
            flat = dest.reshape(-1)
            for c in range(a // chunk, -(-b // chunk)) if dest.size else ():
                if c not in cache:
                    hi = min((c + 1) * chunk, count)
                    cache[c] = np.asarray(zarr_array[c * chunk : hi]).view(dest.dtype)
                s0, s1 = max(a, c * chunk), min(b, (c + 1) * chunk)
                flat[s0 - a : s1 - a] = cache[c][s0 - c * chunk : s1 - c * chunk]
    except Exception as exc:  # zarr raises codec errors on a crc32c mismatch
        raise CorruptCheckpointError(
            f"zarr checkpoint {loc.uri!r}: array {array!r} cannot be read: {_describe(exc)}"
        ) from exc


def _zarr_slices(
    sd: ShardedParameterDict, uri: str, restore_prefix: str, ignore_extra: bool, options: Any
) -> tuple[dict[str, np.ndarray], dict[str, list[Any]]]:
    """Read this rank's rows of every parameter: only the byte ranges that hold them.

    Returns the arrays and, for each parameter read in part, ``[crc32c, nbytes, expected]``:
    the ranks combine these into the parameter's crc32c (:func:`load_sharded`).
    """
    loc = _open_root(uri, options)
    version, manifest = ZarrCheckpointBackend()._committed(loc)
    by_name = {e["name"]: e for e in manifest["parameters"]}
    own = {s.name[len(restore_prefix) :]: s for s in sd.layout}
    extra = [n for n in by_name if n not in own]
    if extra and not ignore_extra:
        raise UnexpectedParameterError(
            f"Parameter {extra[0]!r} loaded from file {uri!r} is not present in the sharded "
            "ParameterDict; set ignore_extra=True to skip it."
        )
    rank = sd.comm.rank
    by_array: dict[str, list[tuple[Mapping[str, Any], int, np.ndarray]]] = {}
    out: dict[str, np.ndarray] = {}
    for stored, s in own.items():
        entry = by_name.get(stored)
        if entry is None:
            continue  # load_dict reports it (or allow_missing skips it)
        if tuple(entry["shape"]) != s.shape:
            raise ShapeMismatchError(
                f"Parameter {s.name!r}: {uri!r} stores shape {tuple(entry['shape'])}, the "
                f"sharded dict expects the full shape {s.shape}."
            )
        lo, hi = s.elements(rank) if not s.replicated else (0, math.prod(s.shape))
        dest = np.empty(hi - lo, _storage_dtype(entry["dtype"]))
        by_array.setdefault(entry["array"], []).append((entry, lo, dest))
        out[stored] = dest
    for array, wanted in by_array.items():
        if not (loc.local and _read_local(loc, version, array, wanted)):
            _read_zarr(loc, version, array, wanted)
    parts: dict[str, list[Any]] = {}
    for wanted in by_array.values():
        for entry, lo, dest in wanted:
            whole = lo == 0 and dest.size == int(entry["size"])
            if whole and _crc(dest) != entry["crc32c"]:
                raise CorruptCheckpointError(
                    f"zarr checkpoint {uri!r}: parameter {entry['name']!r}: crc32c checksum "
                    "mismatch."
                )
            if not whole:
                parts[entry["name"]] = [int(_crc(dest), 16), int(dest.nbytes), entry["crc32c"]]
            s = own[entry["name"]]
            out[entry["name"]] = dest.view(_logical_dtype(entry["dtype"])).reshape(
                s.local_shape(rank)
            )
    return out, parts


def _check_parts(uri: str, reports: Sequence[Mapping[str, Any]]) -> None:
    """Combine every rank's crc32c of its rows into each parameter's; raise on a mismatch."""
    names: dict[str, str] = {}
    for rep in reports:
        for name, (_crc32c, _n, expected) in rep["parts"].items():
            names[name] = expected
    for name, expected in names.items():
        pieces = [
            (int(rep["parts"][name][0]), int(rep["parts"][name][1]))
            for rep in reports
            if name in rep["parts"] and rep["parts"][name][1]
        ]
        if f"{crc32c_concat(pieces):08x}" != expected:
            raise CorruptCheckpointError(
                f"zarr checkpoint {uri!r}: parameter {name!r}: crc32c checksum mismatch "
                "(the rows read by all ranks, combined)."
            )


def _other_slices(sd: ShardedParameterDict, uri: str, restore_prefix: str, options: Any) -> Any:
    """Read a format without byte ranges (``.params``, ``.npz``) whole; keep this rank's rows."""
    from paramarena import storage

    loaded = storage.load(uri, **options)
    if not isinstance(loaded, dict):
        return loaded
    rank = sd.comm.rank
    out: dict[str, np.ndarray] = {}
    for name, value in loaded.items():
        own = restore_prefix + name.split(":", 1)[-1]
        if own in sd.local and not sd.layout[own].replicated:
            s = sd.layout[own]
            if tuple(value.shape) != s.shape:
                raise ShapeMismatchError(
                    f"Parameter {own!r}: {uri!r} stores shape {tuple(value.shape)}, the "
                    f"sharded dict expects the full shape {s.shape}."
                )
            start, stop = s.rows(rank)
            value = value[start:stop]
        out[name] = value
    return out


def load_sharded(
    sd: ShardedParameterDict,
    filename: Any,
    *,
    ctx: Any = None,
    allow_missing: bool = False,
    ignore_extra: bool = False,
    restore_prefix: str = "",
    **options: Any,
) -> LoadReport:
    """Load every rank's rows (see :meth:`ShardedParameterDict.load`)."""
    from paramarena import storage

    uri = os.fspath(filename)
    comm = sd.comm
    failure: BaseException | None = None
    parts: dict[str, list[Any]] = {}
    arrays: Any = None
    try:
        spec = storage.resolve(uri, "r", options.get("format"))
        if spec.name == "zarr":
            rest = {k: v for k, v in options.items() if k != "format"}
            arrays, parts = _zarr_slices(sd, uri, restore_prefix, ignore_extra, rest)
        else:
            arrays = _other_slices(sd, uri, restore_prefix, options)
    except (ParamarenaError, OSError, ValueError, KeyError) as exc:
        failure = exc
    mine = {"error": None if failure is None else _describe(failure), "parts": parts}
    reports = _gather_reports(comm, mine)
    if failure is not None:
        raise failure
    bad = [(r, rep["error"]) for r, rep in enumerate(reports) if rep["error"] is not None]
    if bad:
        raise DistributedError(
            f"loading {uri!r} failed on rank {bad[0][0]}: {bad[0][1]} (every rank raises)."
        )
    _check_parts(uri, reports)  # the same verdict on every rank
    report = sd.local.load_dict(
        arrays,
        ctx,
        allow_missing=allow_missing,
        ignore_extra=ignore_extra,
        restore_prefix=restore_prefix,
        filename=uri,
    )
    assert report is not None
    return report
