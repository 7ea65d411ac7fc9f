"""Crash-safe, verified zarr v3 checkpoints on local disk and object storage.

Layout of a checkpoint at ``ROOT`` (a directory or an object-store prefix)::

    ROOT/COMMIT                      commit pointer (JSON), written last
    ROOT/<version>/zarr.json         a zarr v3 group
    ROOT/<version>/packed_<dtype>/   one 1-D chunked array per storage dtype (crc32c per chunk)
    ROOT/<version>/manifest.json     names, shapes, logical dtypes, offsets, crc32c per parameter

Save: write a new ``<version>`` (data, then manifest), then replace ``COMMIT`` (local: temp file,
fsync, ``os.replace``, fsync of the directory; object store: one PUT, atomic per object), then
delete older versions (on local disk in a background thread that the interpreter waits for at
exit; the list of versions to delete is fixed at commit time, so a later save is never touched).
On local disk without compression the chunk files are written and read directly
(:mod:`paramarena.storage.zarr.local`), byte-for-byte as zarr's codecs would. A crash at any point
leaves ``COMMIT`` pointing at the previous complete version, so the old checkpoint stays loadable
until the new one is committed. Load refuses a root without ``COMMIT``, a manifest whose checksum
disagrees with ``COMMIT``, missing chunks (zarr would read them as zeros, so chunk existence is
checked) and parameters whose crc32c disagrees.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from paramarena.errors import (
    ConfigurationError,
    CorruptCheckpointError,
    MissingParameterError,
    StorageError,
    UncommittedCheckpointError,
)
from paramarena.hooks.records import (
    ArrayInfo,
    ArraysLike,
    CheckpointInfo,
    LoadedArrays,
    VerifyReport,
)
from paramarena.storage.fileio import progress_reporter
from paramarena.storage.zarr import guard, validate
from paramarena.storage.zarr.local import (
    RawLayout,
    chunks_of,
    raw_layout,
    read_ranges,
)
from paramarena.storage.zarr.location import (
    Location,
    fsync_dir,
    fsync_tree,
    remote_concurrency,
    remove_versions,
)
from paramarena.storage.zarr.obstore import CLIENTS
from paramarena.storage.zarr.pack import DirectPacker, ZarrPacker
from paramarena.storage.zarr.zip import ZipLocation, is_zip_uri, save_zip

__all__ = [
    "COMMIT_MARKER",
    "FORMAT_VERSION",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "MANIFEST_FORMATS",
    "ZarrCheckpointBackend",
]

COMMIT_MARKER = "COMMIT"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
#: The manifest's ``format`` marker this version writes.
MANIFEST_FORMAT = "paramarena-zarr"
#: Every marker a reader accepts: ``paramdict-zarr`` is what versions before the rename to
#: paramarena (0.1.x) wrote; compatibility reader, kept on purpose so those checkpoints load.
MANIFEST_FORMATS = frozenset({MANIFEST_FORMAT, "paramdict-zarr"})
DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024
DEFAULT_CONCURRENCY = 4
_OPTIONS = frozenset(
    {"progress", "storage_options", "concurrency", "chunk_bytes", "compression", "client"}
)


def _crc(data: np.ndarray) -> str:
    import crc32c

    raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    return f"{crc32c.crc32c(raw.data):08x}"


def _logical_name(dtype: np.dtype[Any]) -> str:
    return "bfloat16" if dtype.name == "bfloat16" else dtype.name


def _storage_dtype(logical: str) -> np.dtype[Any]:
    if logical == "bfloat16":
        return np.dtype(np.uint16)
    if logical == "bool":
        return np.dtype(np.uint8)
    return np.dtype(logical)


def _logical_dtype(logical: str) -> np.dtype[Any]:
    if logical == "bfloat16":
        import ml_dtypes

        bf16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bf16
    return np.dtype(logical)


def _accept(
    entry: Mapping[str, Any],
    flat: np.ndarray,
    out: dict[str, np.ndarray],
    problems: list[tuple[str, str]],
    update: Any,
) -> None:
    """Check a parameter's crc32c; add its array to ``out``, or a problem when it disagrees."""
    if _crc(flat) != entry["crc32c"]:
        problems.append((entry["name"], "crc32c checksum mismatch"))
        return
    out[entry["name"]] = flat.view(_logical_dtype(entry["dtype"])).reshape(tuple(entry["shape"]))
    update(int(entry["nbytes"]))


def _fitting(array: Any, entry: Mapping[str, Any]) -> np.ndarray | None:
    """Return ``array`` if a parameter's stored bytes can be read straight into it, else None."""
    if (
        isinstance(array, np.ndarray)
        and array.flags.c_contiguous
        and array.flags.writeable
        and array.shape == tuple(entry["shape"])
        and array.dtype == _logical_dtype(entry["dtype"])
    ):
        return array
    return None


def _packed(group: Any, name: str) -> Any:
    import zarr

    node = guard.zarr_node(group, name)
    if not isinstance(node, zarr.Array):
        raise KeyError(name)
    return node


_Root = Location | ZipLocation


def _open_root(uri: str, options: Mapping[str, Any]) -> _Root:
    """Open a checkpoint root for reading: a ``.zarr.zip`` archive, a directory or a URL."""
    if is_zip_uri(uri):
        return ZipLocation(uri)
    return Location(uri, options.get("storage_options"), _client(uri, options))


def _client(uri: str, options: Mapping[str, Any]) -> str:
    """Return the ``client`` option: ``"fsspec"`` (default) or ``"obstore"`` for remote URLs."""
    client = options.get("client", "fsspec")
    if client not in CLIENTS:
        raise ConfigurationError(
            f"client must be one of {', '.join(map(repr, CLIENTS))}, got {client!r} for zarr "
            f"checkpoint {uri!r}."
        )
    return str(client)


def _concurrency(uri: str, options: Mapping[str, Any]) -> int:
    """Return the ``concurrency`` option: chunk requests in flight at once (remote stores)."""
    value = options.get("concurrency", DEFAULT_CONCURRENCY)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"concurrency must be a positive int, got {value!r} for zarr checkpoint {uri!r}."
        )
    return value


class ZarrCheckpointBackend:
    """The ``zarr`` storage backend (see the module docstring for the layout)."""

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _check_options(uri: str, options: Mapping[str, Any]) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ConfigurationError(
                f"Unknown option(s) {sorted(unknown)} for zarr checkpoint {uri!r}; "
                f"valid: {sorted(_OPTIONS)}."
            )

    def _committed(self, loc: _Root) -> tuple[str, dict[str, Any]]:
        raw = loc.read_bytes(COMMIT_MARKER)
        if raw is None:
            if not loc.list_dir():
                raise StorageError(f"zarr checkpoint {loc.uri!r} does not exist.")
            raise UncommittedCheckpointError(
                f"zarr checkpoint {loc.uri!r} has no commit marker {COMMIT_MARKER!r}: its save "
                f"never finished. Refusing to load it."
            )
        where = f"zarr checkpoint {loc.uri!r}: commit marker {COMMIT_MARKER!r}"
        commit = validate.commit(validate.parse_json(raw, where), where)
        version = commit.version
        manifest_raw = loc.read_bytes(version, MANIFEST)
        if manifest_raw is None:
            raise CorruptCheckpointError(
                f"zarr checkpoint {loc.uri!r}: manifest of committed version {version!r} "
                "is missing."
            )
        import crc32c

        if f"{crc32c.crc32c(manifest_raw):08x}" != commit.manifest_crc32c:
            raise CorruptCheckpointError(
                f"zarr checkpoint {loc.uri!r}: manifest checksum disagrees with the commit marker."
            )
        where = f"zarr checkpoint {loc.uri!r}: {version}/{MANIFEST}"
        manifest = validate.parse_json(manifest_raw, where)
        validate.manifest(manifest, where, MANIFEST_FORMATS, FORMAT_VERSION)
        return version, manifest

    @staticmethod
    def _check_stored(loc: _Root, version: str, manifest: Mapping[str, Any]) -> None:
        """Validate the version's zarr metadata and stored sizes before reading (guard)."""
        where = f"zarr checkpoint {loc.uri!r}: {version}/{MANIFEST}"
        record = validate.manifest(manifest, where, MANIFEST_FORMATS, FORMAT_VERSION)
        guard.check_version(loc, version, record)

    # -- save ----------------------------------------------------------------------------------

    def save(self, uri: str, arrays: ArraysLike, **options: Any) -> None:
        """Write ``arrays`` as a new version and commit it (see module docstring)."""
        self._check_options(uri, options)
        if is_zip_uri(uri):
            save_zip(uri, lambda directory: self.save(directory, arrays, **options))
            return
        concurrency = _concurrency(uri, options)
        chunk_bytes = int(options.get("chunk_bytes", DEFAULT_CHUNK_BYTES))
        if chunk_bytes <= 0:
            raise ConfigurationError(f"chunk_bytes must be positive, got {chunk_bytes}.")
        compression = options.get("compression")
        if compression not in (None, "none", "zstd"):
            raise ConfigurationError(
                f"compression must be None or 'zstd', got {compression!r} for {uri!r}."
            )
        named = isinstance(arrays, Mapping)
        items = (
            list(arrays.items())
            if isinstance(arrays, Mapping)
            else [(f"arr_{i}", a) for i, a in enumerate(arrays)]
        )
        for name, value in items:
            if (
                isinstance(value, np.ndarray)
                and value.dtype.kind not in "biufc"
                and (value.dtype.name != "bfloat16")
            ):
                raise StorageError(
                    f"cannot save {name!r} to {uri!r}: dtype {value.dtype} is not supported "
                    f"(numeric, bool and bfloat16 only)."
                )
            if not isinstance(value, np.ndarray):
                raise StorageError(
                    f"cannot save {name!r} to {uri!r}: expected a numpy array, got "
                    f"{type(value).__name__}."
                )
        loc = Location(uri, options.get("storage_options"), _client(uri, options))
        version = f"v{time.time_ns():x}-{secrets.token_hex(3)}"
        groups: dict[str, list[int]] = {}
        for i, (_name, a) in enumerate(items):
            groups.setdefault(_logical_name(a.dtype), []).append(i)
        entries: list[dict[str, Any]] = [{} for _ in items]
        total = sum(int(a.nbytes) for _, a in items)

        packer: DirectPacker | ZarrPacker = (
            DirectPacker(loc, version, concurrency)
            if compression in (None, "none")
            else ZarrPacker(loc, version, concurrency)
        )
        with (
            remote_concurrency(loc.local, concurrency),
            progress_reporter(total, f"save {uri}", options.get("progress")) as update,
        ):
            for logical, idx in groups.items():
                sdtype = _storage_dtype(logical)
                count = sum(int(items[i][1].size) for i in idx)
                limit = max(1, min(chunk_bytes // sdtype.itemsize, max(count, 1)))
                # equal chunks no larger than the limit: the last chunk is not padded out
                chunk = max(1, -(-count // -(-count // limit))) if count else 1
                arr_name = f"packed_{logical}"
                writer = packer.array(arr_name, count, chunk, sdtype)
                offset = 0
                for i in idx:
                    name, a = items[i]
                    flat = np.ascontiguousarray(a).reshape(-1).view(sdtype)
                    entries[i] = {
                        "name": name,
                        "shape": list(a.shape),
                        "dtype": logical,
                        "array": arr_name,
                        "offset": offset,
                        "size": int(a.size),
                        "nbytes": int(a.nbytes),
                        "crc32c": _crc(flat),
                    }
                    offset += int(a.size)
                    writer.add(flat)
                    update(int(a.nbytes))
                writer.close()
        manifest = {
            "format": MANIFEST_FORMAT,
            "format_version": FORMAT_VERSION,
            "named": named,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "chunk_bytes": chunk_bytes,
            "parameters": entries,
        }
        manifest_raw = json.dumps(manifest, indent=1).encode()
        loc.write_bytes(manifest_raw, version, MANIFEST)
        if loc.local:
            fsync_tree(loc.join(version))
            fsync_dir(loc.path)
        import crc32c

        commit = {"version": version, "manifest_crc32c": f"{crc32c.crc32c(manifest_raw):08x}"}
        loc.write_bytes(json.dumps(commit).encode(), COMMIT_MARKER)
        superseded = [v for v in loc.list_dir() if v.startswith("v") and v != version]
        if loc.local and superseded:
            # the new version is committed: deleting the old ones can overlap the caller's work
            # (a non-daemon thread, so the interpreter finishes it before exiting)
            threading.Thread(
                target=remove_versions, args=(loc, superseded), name="paramarena-zarr-cleanup"
            ).start()
        else:
            remove_versions(loc, superseded)

    # -- load ----------------------------------------------------------------------------------

    def _entries(
        self, loc: _Root, manifest: Mapping[str, Any], names: Collection[str] | None
    ) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = list(manifest["parameters"])
        if names is None:
            return entries
        by_name = {e["name"]: e for e in entries}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise MissingParameterError(
                f"zarr checkpoint {loc.uri!r} has no parameter(s) {missing}; it contains "
                f"{len(by_name)} parameters."
            )
        wanted = set(names)
        return [e for e in entries if e["name"] in wanted]

    def _read(
        self,
        loc: _Root,
        version: str,
        entries: Sequence[Mapping[str, Any]],
        progress: bool | None,
        into: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
        group: Any = None
        out: dict[str, np.ndarray] = {}
        problems: list[tuple[str, str]] = []
        by_array: dict[str, list[Mapping[str, Any]]] = {}
        for e in entries:
            by_array.setdefault(e["array"], []).append(e)
        total = sum(int(e["nbytes"]) for e in entries)
        with progress_reporter(total, f"load {loc.uri}", progress) as update:
            for arr_name, group_entries in by_array.items():
                layout = (
                    raw_layout(
                        loc.join(version, arr_name), _storage_dtype(group_entries[0]["dtype"])
                    )
                    if loc.local
                    else None
                )
                if layout is not None:
                    self._read_raw(
                        layout, arr_name, group_entries, out, problems, update, into or {}
                    )
                    continue
                if group is None:
                    group = guard.open_group(loc, version)
                try:
                    zarr_array = _packed(group, arr_name)
                except KeyError:
                    for e in group_entries:
                        problems.append((e["name"], f"packed array {arr_name!r} is missing"))
                    continue
                chunk = int(zarr_array.chunks[0])
                present = set(loc.list_dir(version, arr_name, "c"))
                whole = sum(int(e["size"]) for e in group_entries) == int(zarr_array.shape[0])
                packed = None
                cache: dict[int, np.ndarray] = {}
                n_chunks = -(-int(zarr_array.shape[0]) // chunk)
                if whole and all(str(i) in present for i in range(n_chunks)):
                    # one read for the whole array; on a checksum failure fall back to
                    # per-parameter reads so that only the damaged parameters are reported
                    with contextlib.suppress(CorruptCheckpointError):
                        packed = self._read_range(
                            loc, zarr_array, 0, int(zarr_array.shape[0]), arr_name
                        )
                for e in group_entries:
                    lo, size = int(e["offset"]), int(e["size"])
                    need = range(lo // chunk, -(-(lo + size) // chunk)) if size else range(0)
                    absent = [c for c in need if str(c) not in present]
                    if absent:
                        problems.append(
                            (e["name"], f"chunk(s) {absent} of {arr_name!r} are missing")
                        )
                        continue
                    try:
                        flat = (
                            packed[lo : lo + size]
                            if packed is not None
                            else self._from_chunks(
                                loc, zarr_array, cache, lo, size, _storage_dtype(e["dtype"])
                            )
                        )
                    except CorruptCheckpointError as exc:
                        problems.append((e["name"], f"chunk checksum failed: {exc}"))
                        continue
                    _accept(e, flat, out, problems, update)
        return out, problems

    @staticmethod
    def _read_raw(
        layout: RawLayout,
        arr_name: str,
        entries: Sequence[Mapping[str, Any]],
        out: dict[str, np.ndarray],
        problems: list[tuple[str, str]],
        update: Any,
        into: Mapping[str, np.ndarray],
    ) -> None:
        """Read ``entries`` of one packed array straight from its chunk files (local disk).

        An entry named in ``into`` whose array fits (C-contiguous, writable, same shape and
        dtype) is read into that array; the others get new arrays.
        """
        sdtype = _storage_dtype(entries[0]["dtype"])
        given = [_fitting(into.get(e["name"]), e) for e in entries]
        if not any(g is not None for g in given) and (
            sum(int(e["size"]) for e in entries) == layout.count
        ):
            # the whole array: one buffer, every chunk read whole and its crc32c checked
            packed = np.empty(layout.count, dtype=sdtype)
            bad = read_ranges(layout, [(0, packed)])
            targets = [
                packed[int(e["offset"]) : int(e["offset"]) + int(e["size"])] for e in entries
            ]
        else:
            targets = [
                g.reshape(-1).view(sdtype) if g is not None else np.empty(int(e["size"]), sdtype)
                for g, e in zip(given, entries, strict=True)
            ]
            bad = read_ranges(
                layout, [(int(e["offset"]), t) for e, t in zip(entries, targets, strict=True)]
            )
        reasons: dict[int, str] = {}
        for r, e in enumerate(entries):
            failed = [
                bad[k] for k in chunks_of(layout, int(e["offset"]), int(e["size"])) if k in bad
            ]
            if failed:
                reasons[r] = "; ".join(failed)
        for r, (e, flat) in enumerate(zip(entries, targets, strict=True)):
            if r in reasons:
                problems.append((e["name"], f"{reasons[r]} in {arr_name!r}"))
                continue
            _accept(e, flat, out, problems, update)

    def _from_chunks(
        self,
        loc: _Root,
        zarr_array: Any,
        cache: dict[int, np.ndarray],
        lo: int,
        size: int,
        dtype: np.dtype[Any],
    ) -> np.ndarray:
        """Assemble elements ``[lo, lo + size)`` reading each chunk at most once."""
        chunk = int(zarr_array.chunks[0])
        end = lo + size
        parts = []
        for c in range(lo // chunk, -(-end // chunk)):
            if c not in cache:
                hi = min((c + 1) * chunk, int(zarr_array.shape[0]))
                cache[c] = self._read_range(loc, zarr_array, c * chunk, hi, zarr_array.path)
            parts.append(
                cache[c][max(lo, c * chunk) - c * chunk : min(end, (c + 1) * chunk) - c * chunk]
            )
        if not parts:
            return np.empty(0, dtype=dtype)
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)

    @staticmethod
    def _read_range(loc: _Root, zarr_array: Any, lo: int, hi: int, arr_name: str) -> Any:
        try:
            return np.asarray(zarr_array[lo:hi])
        except Exception as exc:  # zarr raises codec errors on crc32c mismatch
            raise CorruptCheckpointError(
                f"zarr checkpoint {loc.uri!r}: array {arr_name!r} elements [{lo}, {hi}) cannot "
                f"be read: {type(exc).__name__}: {exc}"
            ) from exc

    #: ``load`` takes ``out=``: arrays to read into (see :func:`paramarena.storage.load`).
    accepts_out = True

    def load(
        self,
        uri: str,
        *,
        names: Collection[str] | None = None,
        out: Mapping[str, np.ndarray] | None = None,
        **options: Any,
    ) -> LoadedArrays:
        """Read the committed version; with ``names``, only those parameters' byte ranges.

        Arrays in ``out`` that fit are filled in place (local uncompressed checkpoints).
        """
        self._check_options(uri, options)
        loc = _open_root(uri, options)
        version, manifest = self._committed(loc)
        self._check_stored(loc, version, manifest)
        entries = self._entries(loc, manifest, names)
        with remote_concurrency(loc.local, _concurrency(uri, options)):
            out, problems = self._read(loc, version, entries, options.get("progress"), out)
        if problems:
            detail = "; ".join(f"{n!r}: {why}" for n, why in problems)
            raise CorruptCheckpointError(f"zarr checkpoint {uri!r} is corrupt: {detail}.")
        ordered = {e["name"]: out[e["name"]] for e in entries}
        if not manifest.get("named", True) and names is None:
            return list(ordered.values())
        return ordered

    def inspect(self, uri: str, **options: Any) -> CheckpointInfo:
        """Describe the checkpoint from its manifest (uncommitted: ``committed=False``)."""
        self._check_options(uri, options)
        loc = _open_root(uri, options)
        try:
            version, manifest = self._committed(loc)
        except UncommittedCheckpointError:
            if not any(name.startswith("v") for name in loc.list_dir()):
                raise StorageError(
                    f"{uri!r} is not a paramarena zarr checkpoint (no commit marker and no "
                    f"version directories)."
                ) from None
            return CheckpointInfo(uri, "zarr", committed=False, named=True, arrays=())
        arrays = tuple(
            ArrayInfo(e["name"], tuple(e["shape"]), e["dtype"], int(e["nbytes"]))
            for e in manifest["parameters"]
        )
        meta = {
            "version": version,
            "created": manifest.get("created"),
            "format_version": manifest.get("format_version"),
        }
        return CheckpointInfo(uri, "zarr", True, bool(manifest.get("named", True)), arrays, meta)

    def verify(self, uri: str, **options: Any) -> VerifyReport:
        """Re-read every parameter and check its chunks and crc32c."""
        self._check_options(uri, options)
        loc = _open_root(uri, options)
        version, manifest = self._committed(loc)
        entries = self._entries(loc, manifest, None)
        try:
            self._check_stored(loc, version, manifest)
            with remote_concurrency(loc.local, _concurrency(uri, options)):
                _out, problems = self._read(loc, version, entries, options.get("progress"))
        except CorruptCheckpointError as exc:
            problems = [("*", str(exc))]
        return VerifyReport(uri, len(entries), tuple(problems))
