"""Load a sharded dict's rows from any checkpoint, at any world size.

A zarr checkpoint (saved by any number of ranks, by one process, or converted from ``.params``)
is read by byte range: each rank reads only its rows. Everything read is verified before any
parameter changes: chunks covered completely by their crc32c, parameters read whole by theirs,
and the rows of a parameter split over ranks by combining every rank's crc32c of its rows (one
allgather that also carries every rank's status, so every rank reaches the same verdict).
Formats without byte ranges (``.params``, ``.npz``) are read whole and sliced.
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
    CorruptCheckpointError,
    DistributedError,
    ParamarenaError,
    ShapeMismatchError,
    UnexpectedParameterError,
)
from paramarena.params.loading import LoadReport
from paramarena.storage.zarr.checkpoint import (
    ZarrCheckpointBackend,
    _logical_dtype,
    _open_root,
)
from paramarena.storage.zarr.local import chunks_of, raw_layout, read_ranges
from paramarena.storage.zarr.writer import crc_hex as _crc
from paramarena.storage.zarr.writer import storage_dtype as _storage_dtype

if TYPE_CHECKING:
    from paramarena.distributed.sharded import ShardedParameterDict
    from paramarena.hooks.records import Communicator

__all__ = ["load_sharded"]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _gather_reports(comm: Communicator, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(r) for r in comm.allgather_bytes(json.dumps(report).encode())]


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
