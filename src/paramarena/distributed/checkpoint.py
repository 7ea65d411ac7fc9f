"""Sharded zarr checkpoints: every rank writes its chunks, rank 0 commits once all succeeded.

A checkpoint written here is an ordinary checkpoint of :mod:`paramarena.storage.zarr.checkpoint`
(one version directory, ``manifest.json``, ``COMMIT`` last): any single process can
``inspect``, ``verify`` and ``load`` it. Replicated parameters are packed into
``packed_<dtype>`` arrays (written by rank 0, as a single-process save does); each sharded
parameter gets its own 1-D array ``rows_<i>`` whose chunk is ``block`` rows of the layout, so
every rank's rows are whole chunks and no chunk object is written by two ranks.

The commit protocol (``docs/distributed.md``):

1. rank 0 claims a new version (held until after the commit) and broadcasts its name;
2. every rank writes the chunks it owns (rank 0 also the metadata documents and the replicated
   parameters), fsyncs them on local disk, and records the crc32c of each chunk and of its
   rows of each parameter; any exception is caught and becomes this rank's report;
3. one allgather of the reports (JSON): if any rank failed, every rank raises
   :class:`~paramarena.errors.ShardedCheckpointError`, rank 0 removes the uncommitted version,
   and the previous checkpoint stays the committed one;
4. rank 0 checks that every chunk was reported by exactly one rank, combines the crc32c of the
   rows into each parameter's crc32c, and calls the single-process
   :func:`~paramarena.storage.zarr.writer.write_manifest` and the compare-and-swap
   :func:`~paramarena.storage.zarr.commit.commit_version` (manifest, fsync, ``COMMIT``);
5. rank 0 broadcasts the outcome: every rank returns, or every rank raises.

A rank killed during the save never reaches step 3: the launcher (``mpirun``) ends the job and
nothing is committed.

Loading lives in :mod:`paramarena.distributed.sharded_load`.
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
    ShardedCheckpointError,
)
from paramarena.params.loading import collect_for_save
from paramarena.storage.zarr.commit import (
    DEFAULT_CLEANUP_GRACE,
    DEFAULT_COMMIT_TIMEOUT,
    VersionClaim,
    abandon_version,
    commit_version,
)
from paramarena.storage.zarr.local import (
    ChunkWriter,
    LocalChunkFiles,
    RawLayout,
)
from paramarena.storage.zarr.location import Location, RemoteChunkObjects
from paramarena.storage.zarr.pack import DirectPacker
from paramarena.storage.zarr.writer import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CONCURRENCY,
    claim_new_version,
    cleanup,
    write_manifest,
)
from paramarena.storage.zarr.writer import crc_hex as _crc
from paramarena.storage.zarr.writer import storage_dtype as _storage_dtype

if TYPE_CHECKING:
    from paramarena.distributed.sharded import ShardedParameterDict
    from paramarena.hooks.records import Communicator

__all__ = ["save_sharded"]

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
    report: dict[str, Any]
    plan: dict[str, Any] = {}
    loc: Location | None = None
    claim: VersionClaim | None = None
    claimed = b""
    if comm.rank == 0:  # rank 0 claims the version (held until after the commit: cleanup of
        try:  # other writers never removes it), then names it to every rank
            loc = Location(
                uri, options.get("storage_options"), str(options.get("client", "fsspec"))
            )
            version, claim = claim_new_version(loc)
            claimed = version.encode()
        except Exception as exc:
            claimed = b"!" + _describe(exc).encode()
    claimed = comm.broadcast_bytes(claimed, 0)
    if claimed.startswith(b"!"):
        raise ShardedCheckpointError(
            f"sharded save of {uri!r} failed (rank 0 could not start a new version: "
            f"{claimed[1:].decode()}); nothing was written."
        )
    version = claimed.decode()
    try:
        values = collect_for_save(sd.local.values(), strip_prefix)
        names = dict(zip(sd.local.keys(), values, strict=True))
        plan = _plan(sd, names, DEFAULT_CHUNK_BYTES)
        if loc is None:
            loc = Location(
                uri, options.get("storage_options"), str(options.get("client", "fsspec"))
            )
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
                manifest_raw = write_manifest(
                    loc, version, entries, True, {"chunk_bytes": DEFAULT_CHUNK_BYTES}
                )
                replaced = commit_version(
                    loc, version, manifest_raw, timeout=DEFAULT_COMMIT_TIMEOUT
                )
                if claim is not None:
                    claim.release()
                cleanup(loc, version, replaced, DEFAULT_CLEANUP_GRACE)
            except Exception as exc:
                outcome = f"rank 0 could not commit: {_describe(exc)}".encode()
        if outcome and loc is not None:
            abandon_version(loc, version)
        if claim is not None:
            claim.release()
    outcome = comm.broadcast_bytes(outcome, 0)
    if outcome:
        raise ShardedCheckpointError(
            f"sharded save of {uri!r} failed ({outcome.decode()}); nothing was committed and "
            f"{uri!r} still holds its previous checkpoint, if any."
        )


def _location(uri: str, options: Mapping[str, Any]) -> Location:
    return Location(uri, options.get("storage_options"), str(options.get("client", "fsspec")))
