"""Crash-safe, verified zarr v3 checkpoints on local disk and object storage.

Layout of a checkpoint at ``ROOT`` (a directory or an object-store prefix)::

    ROOT/COMMIT                      commit pointer (JSON), written last: the authority
    ROOT/zarr.json                   root zarr v3 group; attributes name the current version
    ROOT/<version>/zarr.json         a zarr v3 group
    ROOT/<version>/packed_<dtype>/   one 1-D chunked array per storage dtype (crc32c per chunk)
    ROOT/<version>/manifest.json     names, shapes, logical dtypes, offsets, crc32c per parameter
                                     (+ optional "init_key": 16 hex digits, the initializer key)

Save (:mod:`~paramarena.storage.zarr.writer`, :mod:`~paramarena.storage.zarr.commit`): claim a
new ``<version>``, write data then manifest, replace ``COMMIT`` by compare-and-swap (local: under
an ``flock`` of the root, temp file, fsync, ``os.replace``; S3: conditional PUT), rewrite the root
``zarr.json``, then delete the replaced version and provably abandoned ones (on local disk in a
background thread that the interpreter waits for at exit). Several writers may save one path at
once (docs/checkpoints.md, "Concurrency"); a load, verify or inspect whose version a concurrent
commit removed starts again from the new ``COMMIT``.
On local disk without compression the chunk files are written and read directly
(:mod:`paramarena.storage.zarr.local`), byte-for-byte as zarr's codecs would. A crash at any point
leaves ``COMMIT`` pointing at the previous complete version, so the old checkpoint stays loadable
until the new one is committed. Load refuses a root without ``COMMIT``, a manifest whose checksum
disagrees with ``COMMIT``, missing chunks (zarr would read them as zeros, so chunk existence is
checked) and parameters whose crc32c disagrees.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from paramarena.errors import (
    ConfigurationError,
    CorruptCheckpointError,
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
from paramarena.storage import session
from paramarena.storage.columns import StoredColumns
from paramarena.storage.failures import describe_local
from paramarena.storage.fileio import durable_option
from paramarena.storage.sniff import is_local_zip_file
from paramarena.storage.zarr import checkpass, guard, manifest_scan, packed_read, reader, validate
from paramarena.storage.zarr.commit import COMMIT_MARKER, commit_version
from paramarena.storage.zarr.location import Location, remote_concurrency
from paramarena.storage.zarr.obstore import client_option
from paramarena.storage.zarr.racing import retrying
from paramarena.storage.zarr.writer import (
    FORMAT_VERSION,
    MANIFEST,
    MANIFEST_FORMAT,
    MANIFEST_FORMATS,
    claim_new_version,
    cleanup,
    save_failed,
    save_items,
    save_settings,
    write_manifest,
    write_version,
)
from paramarena.storage.zarr.writer import concurrency_option as _concurrency
from paramarena.storage.zarr.zip import ZipLocation, is_zip_uri, save_zip, save_zip_streamed

__all__ = [
    "COMMIT_MARKER",
    "FORMAT_VERSION",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "MANIFEST_FORMATS",
    "ZarrCheckpointBackend",
]

_OPTIONS = frozenset(
    {
        "progress",
        "storage_options",
        "concurrency",
        "chunk_bytes",
        "compression",
        "client",
        "cleanup_grace",
        "commit_timeout",
        "init_keys",  # name -> 64-bit key the values were drawn with (Parameter.init_key)
        "check_first",  # load: check everything before reading into out= (all or nothing)
    }
)


_Root = Location | ZipLocation
#: Kept here for :mod:`paramarena.distributed.sharded_load`.
_logical_dtype = reader.logical_dtype


def _open_root(uri: str, options: Mapping[str, Any]) -> _Root:
    """Open a checkpoint root for reading: a ``.zarr.zip`` archive, a directory or a URL."""
    if is_zip_uri(uri) or is_local_zip_file(uri):  # a zarr zip under any name (issue 12)
        return ZipLocation(uri)
    return Location(uri, options.get("storage_options"), client_option(uri, options))


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
        """Return the committed version and its manifest (validated), entries as dicts."""
        version, header, record = self._committed_record(loc)
        entries = [
            {
                "name": e.name,
                "shape": list(e.shape),
                "dtype": e.dtype,
                "array": e.array,
                "offset": e.offset,
                "size": e.size,
                "nbytes": e.nbytes,
                "crc32c": e.crc32c,
            }
            for e in record.entries
        ]
        return version, {**header, "parameters": entries}

    def _committed_record(self, loc: _Root) -> tuple[str, dict[str, Any], validate.Manifest]:
        """Return the committed version, its manifest's header fields and its record.

        The header holds every top-level field of the manifest but ``parameters``.
        """
        raw = loc.read_bytes(COMMIT_MARKER)
        # a read that fails re-reads COMMIT to see if it moved (racing.retrying)
        loc.seen_commit = raw
        if raw is None:
            names = loc.list_dir()
            if not names and isinstance(loc, Location) and loc.local and os.path.lexists(loc.path):
                raise StorageError(
                    f"{loc.uri!r} is not a zarr checkpoint: it is {describe_local(loc.path)}."
                )
            if not names:
                raise StorageError(f"zarr checkpoint {loc.uri!r} does not exist.")
            if not any(name.startswith("v") for name in names):
                raise StorageError(
                    f"{loc.uri!r} is not a paramarena zarr checkpoint (not a checkpoint of this "
                    "package: no commit marker and no version directories)."
                )
            raise UncommittedCheckpointError(
                f"zarr checkpoint {loc.uri!r} has no commit marker {COMMIT_MARKER!r}: its save "
                f"never finished. Refusing to load it."
            )
        where = f"zarr checkpoint {loc.uri!r}: commit marker {COMMIT_MARKER!r}"
        commit = validate.commit(validate.parse_json(raw, where), where)
        version = commit.version
        shared = session.memo()
        key = ("zarr-manifest", loc.uri, version)
        hit = shared.get(key) if shared is not None else None
        # a local manifest is known by its identity (device, inode, size, modification and
        # change time, taken before it was read): the same unchanged file is not read again
        ident = (
            session.file_identity(loc.join(version, MANIFEST))
            if shared is not None and isinstance(loc, Location) and loc.local
            else None
        )
        if hit is not None and ident is not None and hit[0] == (ident, commit.manifest_crc32c):
            return version, hit[1], hit[2]
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
        # remote bytes validated before are known by their SHA-256 (~10 ms for the 18 MB
        # manifest of 100k parameters): keeping them for a comparison would hold that much
        # more memory
        digest: Any = (
            (ident, commit.manifest_crc32c)
            if ident is not None
            else hashlib.sha256(manifest_raw).digest()
            if shared is not None
            else b""
        )
        if hit is not None and ident is None and hit[0] == digest:  # the very bytes
            return version, hit[1], hit[2]
        where = f"zarr checkpoint {loc.uri!r}: {version}/{MANIFEST}"
        header, record = manifest_scan.read_manifest(
            manifest_raw, where, MANIFEST_FORMATS, FORMAT_VERSION
        )
        if shared is not None:
            shared[key] = (digest, header, record)
        return version, header, record

    # -- save ----------------------------------------------------------------------------------

    def save(self, uri: str, arrays: ArraysLike, **options: Any) -> None:
        """Write ``arrays`` as a new version and commit it (see module docstring).

        The steps are separate functions (:mod:`paramarena.storage.zarr.writer`,
        :mod:`paramarena.storage.zarr.commit`) that a save by several writers (ranks) composes.

        Raises
        ------
        paramarena.errors.StorageError
            Any ``OSError`` while writing (disk full, ...), naming the checkpoint: what the save
            wrote is removed and the previous checkpoint stays committed.
        paramarena.errors.ConcurrentWriteError
            Another writer removed this save's version or held the commit lock too long.
        paramarena.errors.ConfigurationError
            ``durable=False``: a zarr save is always durable (``durable=True`` is accepted).
        """
        if not durable_option(uri, options):
            raise ConfigurationError(
                f"zarr checkpoint {uri!r} cannot be saved with durable=False: its commit "
                "protocol flushes every chunk, document and directory before COMMIT (that is "
                "what keeps the previous checkpoint after a power loss) and has no "
                "non-durable mode; durable=False is an option of the single-file formats "
                "(npz, mxnet .params)"
            )
        options = {key: value for key, value in options.items() if key != "durable"}
        self._check_options(uri, options)
        settings = save_settings(uri, options)
        items, named = save_items(uri, arrays)
        progress = options.get("progress")
        if is_zip_uri(uri):
            if settings["compression"] in (None, "none"):  # chunks streamed into the archive
                save_zip_streamed(
                    uri, lambda loc: self._save_to(loc, items, named, settings, progress)
                )
            else:  # zarr encodes into a temporary directory checkpoint first
                save_zip(uri, lambda directory: self.save(directory, arrays, **options))
            return
        loc = Location(uri, options.get("storage_options"), client_option(uri, options))
        if loc.local and os.path.lexists(loc.path) and not os.path.isdir(loc.path):
            raise StorageError(
                f"cannot save zarr checkpoint {uri!r}: {describe_local(loc.path)}. Remove it or "
                "choose another path."
            )
        self._save_to(loc, items, named, settings, progress)

    @staticmethod
    def _save_to(
        loc: Location,
        items: Sequence[tuple[str, np.ndarray]],
        named: bool,
        settings: Mapping[str, Any],
        progress: bool | None,
    ) -> None:
        """Claim, write, commit and clean up one new version at ``loc``."""
        version, claim = claim_new_version(loc)
        try:
            try:
                entries = write_version(loc, version, items, settings, progress, named)
                manifest_raw = write_manifest(loc, version, entries, named, settings)
                replaced = commit_version(
                    loc, version, manifest_raw, timeout=settings["commit_timeout"]
                )
            except BaseException as exc:
                error = save_failed(loc, version, exc)
                if error is None:
                    raise
                raise error from exc
        finally:
            claim.release()
        cleanup(loc, version, replaced, settings["cleanup_grace"])

    # -- load ----------------------------------------------------------------------------------

    #: ``load`` takes ``out=``: arrays to read into (see :func:`paramarena.storage.load`).
    accepts_out = True
    #: ``load`` takes ``check_first=True``: with ``out=`` arrays read in place, every selected
    #: array is checked first, and the read then takes the very files checked (all or nothing).
    checks_first = True

    def load(
        self,
        uri: str,
        *,
        names: Collection[str] | None = None,
        out: Mapping[str, np.ndarray] | None = None,
        **options: Any,
    ) -> LoadedArrays:
        """Read the committed version; with ``names``, only those parameters' byte ranges.

        Arrays in ``out`` that fit are filled in place (local uncompressed checkpoints). With
        the option ``check_first=True`` and such arrays, every selected parameter is first
        checked like :meth:`check` (every chunk's and parameter's crc32c), and the read that
        follows, of the same committed version in the same attempt, reads only the very chunk
        files checked (same device, inode, size, modification and change time) and checks
        every crc32c again: a damaged, missing or unreadable chunk raises before any ``out``
        array is written.
        """
        self._check_options(uri, options)
        return retrying(
            _open_root, uri, options, lambda loc: self._load_once(loc, uri, names, out, options)
        )

    def _load_once(
        self,
        loc: _Root,
        uri: str,
        names: Collection[str] | None,
        into: Mapping[str, np.ndarray] | None,
        options: Mapping[str, Any],
    ) -> LoadedArrays:
        version, _manifest, record = self._committed_record(loc)
        guard.check_version(loc, version, record)  # zarr metadata and stored sizes, before reading
        picked = reader.select(loc.uri, record, names)
        verified: dict[str, Any] | None = None
        with remote_concurrency(loc.local, _concurrency(uri, options)):
            if into and loc.local and options.get("check_first"):
                verified = {}  # chunk file -> identity, of every chunk file that passed
                problems = reader.check(loc, version, record, picked, verified)
                if problems:
                    detail = "; ".join(f"{n!r}: {why}" for n, why in problems)
                    raise CorruptCheckpointError(f"zarr checkpoint {uri!r} is corrupt: {detail}.")
                moved_files = checkpass.changed(verified)
                if moved_files:
                    raise CorruptCheckpointError(
                        f"zarr checkpoint {uri!r}: chunk file(s) {moved_files[:3]} changed "
                        f"between the check and the read ({len(moved_files)} in all); no array "
                        "given in out= was written."
                    )
            out, problems = reader.read(
                loc, version, record, picked, options.get("progress"), into, verified
            )
        if problems:
            detail = "; ".join(f"{n!r}: {why}" for n, why in problems)
            raise CorruptCheckpointError(f"zarr checkpoint {uri!r} is corrupt: {detail}.")
        stored = record.names
        keys = stored if len(picked) == len(stored) else [stored[i] for i in picked]
        ordered = dict(zip(keys, map(out.__getitem__, keys), strict=True))
        if not record.named and names is None:
            return list(ordered.values())
        return ordered

    def load_packed(
        self, uri: str, targets: Sequence[Any], **options: Any
    ) -> dict[str, np.ndarray]:
        """Read into flat buffers: :func:`paramarena.storage.columns.load_packed`.

        The committed version's parameters named in ``targets`` are read into their places
        (local uncompressed arrays of many small parameters chunk file by chunk file; every
        chunk's and every parameter's crc32c checked) and any failure raises as :meth:`load`.
        """
        self._check_options(uri, options)
        return retrying(
            _open_root, uri, options, lambda loc: self._load_packed_once(loc, uri, targets, options)
        )

    def _load_packed_once(
        self, loc: _Root, uri: str, targets: Sequence[Any], options: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        version, _manifest, record = self._committed_record(loc)
        guard.check_version(loc, version, record)
        for t in targets:
            reader.select(loc.uri, record, t.names)  # every name stored
        with remote_concurrency(loc.local, _concurrency(uri, options)):
            other, problems = packed_read.read_packed(
                loc,
                version,
                record,
                targets,
                options.get("progress"),
                loc.local and bool(options.get("check_first")),
            )
        if problems:
            raise CorruptCheckpointError(
                f"zarr checkpoint {uri!r} is corrupt: {reader.describe(problems)}."
            )
        return other

    def check(self, uri: str, *, names: Collection[str] | None = None, **options: Any) -> None:
        """Read and check ``names`` (all if None) as :meth:`load` does, keeping nothing.

        Raises what :meth:`load` would raise for them; memory: a 1 MiB window (local
        uncompressed checkpoints) or one batch of
        :data:`~paramarena.storage.zarr.reader.CHECK_BATCH_BYTES`.
        """
        self._check_options(uri, options)
        retrying(_open_root, uri, options, lambda loc: self._check_once(loc, uri, names, options))

    def _check_once(
        self, loc: _Root, uri: str, names: Collection[str] | None, options: Mapping[str, Any]
    ) -> None:
        version, _manifest, record = self._committed_record(loc)
        guard.check_version(loc, version, record)
        picked = reader.select(loc.uri, record, names)
        with remote_concurrency(loc.local, _concurrency(uri, options)):
            problems = reader.check(loc, version, record, picked)
        if problems:
            detail = "; ".join(f"{n!r}: {why}" for n, why in problems)
            raise CorruptCheckpointError(f"zarr checkpoint {uri!r} is corrupt: {detail}.")

    def inspect(self, uri: str, **options: Any) -> CheckpointInfo:
        """Describe the checkpoint from its manifest (uncommitted: ``committed=False``)."""
        self._check_options(uri, options)
        return retrying(_open_root, uri, options, lambda loc: self._inspect_once(loc, uri))

    def _inspect_once(self, loc: _Root, uri: str) -> CheckpointInfo:
        found = self._described(loc, uri)
        if found is None:
            return CheckpointInfo(uri, "zarr", committed=False, named=True, arrays=())
        record, meta = found
        arrays = tuple(
            map(ArrayInfo, record.names, record.shapes, record.dtypes, record.nbytes.tolist())
        )
        return CheckpointInfo(uri, "zarr", True, record.named, arrays, meta)

    def inspect_columns(self, uri: str, **options: Any) -> StoredColumns:
        """:meth:`inspect` as columns: those of the validated manifest, no object per entry."""
        self._check_options(uri, options)
        return retrying(_open_root, uri, options, lambda loc: self._columns_once(loc, uri))

    def _columns_once(self, loc: _Root, uri: str) -> StoredColumns:
        found = self._described(loc, uri, keys=False)
        if found is None:
            return StoredColumns((), (), (), True)
        record, meta = found
        keys = record.init_key_values
        if isinstance(keys, np.ndarray):  # one for each parameter: the column itself
            return StoredColumns(
                record.names, record.shapes, record.dtypes, record.named, meta, keys
            )
        meta["init_keys"] = record.init_keys()
        return StoredColumns(record.names, record.shapes, record.dtypes, record.named, meta)

    def _described(
        self, loc: _Root, uri: str, keys: bool = True
    ) -> tuple[validate.Manifest, dict[str, Any]] | None:
        """Return the committed manifest's record and metadata, None if uncommitted.

        ``keys``: put the init keys in the metadata (``{name: key}``).
        """
        try:
            version, header, record = self._committed_record(loc)
        except UncommittedCheckpointError:
            if not any(name.startswith("v") for name in loc.list_dir()):
                raise StorageError(
                    f"{uri!r} is not a paramarena zarr checkpoint (no commit marker and no "
                    f"version directories)."
                ) from None
            return None
        meta: dict[str, Any] = {
            "version": version,
            "created": header.get("created"),
            "format_version": header.get("format_version"),
        }
        if keys:
            meta["init_keys"] = record.init_keys()
        return record, meta

    def verify(self, uri: str, **options: Any) -> VerifyReport:
        """Re-read every parameter and check its chunks and crc32c."""
        self._check_options(uri, options)
        return retrying(
            _open_root,
            uri,
            options,
            lambda loc: self._verify_once(loc, uri, options),
            lambda r: not r.ok,
        )

    def _verify_once(self, loc: _Root, uri: str, options: Mapping[str, Any]) -> VerifyReport:
        version, _manifest, record = self._committed_record(loc)
        picked = reader.select(loc.uri, record, None)
        try:
            guard.check_version(loc, version, record)
            with remote_concurrency(loc.local, _concurrency(uri, options)):
                _out, problems = reader.read(loc, version, record, picked, options.get("progress"))
        except CorruptCheckpointError as exc:
            problems = [("*", str(exc))]
        return VerifyReport(uri, len(picked), tuple(problems))
