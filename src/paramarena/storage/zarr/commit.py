"""How a new version of a zarr checkpoint becomes the committed one, and what may then go.

A save is composed of small steps that a multi-writer save (several ranks writing one version)
reuses in the same order:

1. :func:`new_version_name`, then :func:`claim_version`: on local disk the version directory is
   created and its writer holds an ``flock`` on it until the save ends (:class:`VersionClaim`), so
   cleanup can tell a live writer's version from one a killed save left behind;
2. write the packed arrays and ``manifest.json`` into the version;
3. :func:`commit_version`: compare-and-swap of ``COMMIT`` (local disk: an ``flock`` on the
   checkpoint root serialises committers, which re-read ``COMMIT`` under it and replace it by
   rename; S3: a conditional PUT, ``If-Match`` on the ETag read or ``If-None-Match: *`` for the
   first commit, retried on conflict). It returns the version it replaced, which is then provably
   superseded. The root ``zarr.json`` (a zarr group whose attributes name the current version)
   is rewritten after ``COMMIT``; ``COMMIT`` stays the only authority;
4. :func:`remove_superseded`: delete the replaced version, and other versions only when they are
   provably abandoned (local: nobody holds their lock; object stores: older than a grace period).
   Never the version ``COMMIT`` names.

A save that fails calls :func:`abandon_version` (removes its own version unless ``COMMIT`` names
it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

from paramarena.errors import ConcurrentWriteError, StorageError
from paramarena.storage.fileio import remove_stale_temps, try_lock
from paramarena.storage.remote import call_with_retries
from paramarena.storage.zarr.location import Location, fsync_dir

__all__ = [
    "COMMIT_MARKER",
    "DEFAULT_CLEANUP_GRACE",
    "DEFAULT_COMMIT_TIMEOUT",
    "ROOT_METADATA",
    "CommitRecord",
    "VersionClaim",
    "abandon_version",
    "claim_version",
    "commit_document",
    "commit_version",
    "committed_version",
    "is_version_name",
    "new_version_name",
    "read_commit",
    "remove_superseded",
    "root_group_metadata",
    "write_root_metadata",
]

COMMIT_MARKER = "COMMIT"
#: The root ``zarr.json``: makes the checkpoint root a zarr v3 group (informational attributes).
ROOT_METADATA = "zarr.json"
#: Seconds after which an unknown version on an object store counts as abandoned (it must exceed
#: the longest save to that path). On local disk a version is abandoned once its lock is free.
DEFAULT_CLEANUP_GRACE = 3600.0
#: Seconds a local committer waits for another committer's lock, and a remote one retries.
DEFAULT_COMMIT_TIMEOUT = 60.0
_VERSION = re.compile(r"v([0-9a-f]{1,16})-[0-9a-f]{6}")


def new_version_name() -> str:
    """Return a fresh version name: ``v<ns since the epoch, hex>-<6 random hex digits>``."""
    return f"v{time.time_ns():x}-{secrets.token_hex(3)}"


def is_version_name(name: str) -> bool:
    """Whether ``name`` is a version name this package writes (a plain name, no path)."""
    return _VERSION.fullmatch(name) is not None


def _version_age(name: str) -> float:
    """Seconds since the version ``name`` was started (from its name)."""
    match = _VERSION.fullmatch(name)
    assert match is not None
    return time.time() - int(match[1], 16) / 1e9


def commit_document(version: str, manifest_raw: bytes) -> bytes:
    """Return the bytes of ``COMMIT`` pointing at ``version`` with that manifest's crc32c."""
    from paramarena.storage.zarr.crc import crc32c

    return json.dumps(
        {"version": version, "manifest_crc32c": f"{crc32c(manifest_raw):08x}"}
    ).encode()


def committed_version(raw: bytes | None) -> str | None:
    """Return the version a ``COMMIT`` document names, or None (absent or not readable)."""
    if raw is None:
        return None
    try:
        version = json.loads(raw).get("version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, str) and is_version_name(version) else None


def root_group_metadata(version: str) -> bytes:
    """Return the root ``zarr.json``: a zarr v3 group whose attributes name ``version``."""
    document = {
        "attributes": {
            "paramarena": {
                "current_version": version,
                "commit_marker": COMMIT_MARKER,
                "note": "COMMIT is authoritative; the versions are the subgroups",
            }
        },
        "zarr_format": 3,
        "node_type": "group",
    }
    return json.dumps(document, indent=2).encode()


# -- claims ---------------------------------------------------------------------------------------


class VersionClaim:
    """A writer's hold on its version directory (local disk): a lock held until released."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def release(self) -> None:
        """Release the lock (the version becomes removable unless committed)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> VersionClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_version(loc: Location, version: str) -> VersionClaim:
    """Create ``version``'s directory and lock it (local disk; object stores: nothing to do).

    The lock tells :func:`remove_superseded` of other writers that this version is being
    written. The directory is created under a name cleanup ignores (``.claim-<version>``),
    locked, and only then renamed to ``version``: cleanup never sees it unlocked.
    """
    if not loc.local:
        return VersionClaim(None)
    if sys.platform == "win32":  # pragma: no cover - no flock, directories cannot be opened
        try:
            os.makedirs(loc.join(version))
        except OSError as exc:
            raise StorageError(
                f"cannot create version {version!r} of zarr checkpoint {loc.uri!r}: {exc}"
            ) from exc
        return VersionClaim(None)
    staging = loc.join(f"{_CLAIM_PREFIX}{version}")
    try:
        os.makedirs(loc.path, exist_ok=True)
        os.mkdir(staging)
        fd = os.open(staging, os.O_RDONLY)
    except OSError as exc:
        raise StorageError(
            f"cannot create version {version!r} of zarr checkpoint {loc.uri!r}: {exc}"
        ) from exc
    try:
        try_lock(fd)
        os.rename(staging, loc.join(version))
    except BaseException as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.rmdir(staging)
        if isinstance(exc, OSError):
            raise StorageError(
                f"cannot create version {version!r} of zarr checkpoint {loc.uri!r}: {exc}"
            ) from exc
        raise
    return VersionClaim(fd)


# -- compare-and-swap of COMMIT ---------------------------------------------------------------


@dataclass(frozen=True)
class CommitRecord:
    """``COMMIT`` as read: its bytes (None: absent) and the store's ETag (None: not known)."""

    raw: bytes | None
    etag: str | None = None


def _cas_kind(loc: Location) -> str:
    """``local``, ``s3fs``, ``obstore`` or ``none`` (a store without conditional writes)."""
    if loc.local:
        return "local"
    if loc.client == "obstore":
        return "obstore"
    # s3fs's filesystem, or the subclass with the network policy (storage/remote.py)
    if any(cls.__name__ == "S3FileSystem" for cls in type(loc.fs).__mro__):
        return "s3fs"
    return "none"


def _bucket_key(loc: Location, *parts: str) -> tuple[str, str]:
    bucket, _, key = loc.join(*parts).partition("/")
    return bucket, key


def _obstore_store(loc: Location, bucket: str) -> Any:
    from paramarena.storage.zarr.obstore import obstore_object_store

    return obstore_object_store(loc.storage_options, loc.uri, bucket)


def _precondition_failed(exc: BaseException) -> bool:
    """Whether an error says a conditional write lost (412 / 409 conflict / already exists)."""
    if isinstance(exc, FileExistsError):
        return True
    for err in (exc, exc.__cause__, exc.__context__):
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return True
    name = type(exc).__name__
    return name in ("PreconditionError", "AlreadyExistsError")


def read_commit(loc: Location) -> CommitRecord:
    """Read ``COMMIT`` with the ETag a conditional write compares against.

    Remote requests run with the network policy of the location's filesystem (timeouts,
    retries: :func:`paramarena.storage.remote.call_with_retries`).
    """
    kind = _cas_kind(loc)
    bucket, key = _bucket_key(loc, COMMIT_MARKER)
    what = f"get_object {loc.join(COMMIT_MARKER)!r}"
    if kind == "s3fs":

        async def get() -> CommitRecord:
            response = await loc.fs._call_s3("get_object", Bucket=bucket, Key=key)
            body = response["Body"]
            try:
                data = await body.read()
            finally:
                body.close()
            return CommitRecord(bytes(data), str(response["ETag"]))

        try:
            record: CommitRecord = call_with_retries(loc.fs, get, what)
        except FileNotFoundError:
            return CommitRecord(None)
        return record
    if kind == "obstore":
        store = _obstore_store(loc, bucket)

        async def get_obstore() -> CommitRecord:
            result = await store.get_async(key)
            data = await result.bytes_async()
            return CommitRecord(bytes(data), result.meta.get("e_tag"))

        try:
            return call_with_retries(loc.fs, get_obstore, what)
        except FileNotFoundError:
            return CommitRecord(None)
    return CommitRecord(loc.read_bytes(COMMIT_MARKER))


def _put_commit(loc: Location, data: bytes, expected: CommitRecord) -> bool:
    """Write ``COMMIT`` if it is still ``expected``; False when another commit came first.

    The conditional PUT is retried like every request (network policy of the location). A
    retry of a PUT that landed the first time is refused (412): ``COMMIT`` is then re-read, and
    when it holds exactly ``data`` (a document naming this writer's own new version) the write
    succeeded.
    """
    kind = _cas_kind(loc)
    bucket, key = _bucket_key(loc, COMMIT_MARKER)
    what = f"conditional put_object {loc.join(COMMIT_MARKER)!r}"
    try:
        if kind == "s3fs":
            condition = (
                {"IfNoneMatch": "*"}
                if expected.raw is None
                else ({"IfMatch": expected.etag} if expected.etag else {})
            )
            call_with_retries(
                loc.fs,
                lambda: loc.fs._call_s3(
                    "put_object", Bucket=bucket, Key=key, Body=data, **condition
                ),
                what,
            )
        elif kind == "obstore":
            store = _obstore_store(loc, bucket)
            mode: Any = (
                "create"
                if expected.raw is None
                else ({"e_tag": expected.etag} if expected.etag else "overwrite")
            )
            call_with_retries(loc.fs, lambda: store.put_async(key, data, mode=mode), what)
        else:  # no conditional writes: one PUT, atomic per object (weaker, see the docs)
            loc.write_bytes(data, COMMIT_MARKER)
    except Exception as exc:
        if _precondition_failed(exc):
            # lost to another writer, or this very PUT landed before a retry of it
            return read_commit(loc).raw == data
        raise
    return True


@contextlib.contextmanager
def _root_lock(loc: Location, timeout: float) -> Any:
    """Hold an exclusive ``flock`` on the checkpoint root directory (local committers)."""
    if sys.platform == "win32":  # pragma: no cover - no flock: committers not serialised
        yield
        return
    fd = os.open(loc.path, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while (locked := try_lock(fd)) is False:
            if time.monotonic() > deadline:
                raise ConcurrentWriteError(
                    f"zarr checkpoint {loc.uri!r}: another writer held the commit lock for "
                    f"{timeout:g} s; this save was not committed."
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        del locked  # None: no flock here; committers are then not serialised (see the docs)
        yield
    finally:
        os.close(fd)


def _check_intact(loc: Location, version: str, manifest_raw: bytes) -> None:
    """Raise if ``version``'s manifest is gone (another writer's cleanup removed the version).

    Local disk: the manifest this writer wrote and fsync'd must still be there with its size
    (its bytes are not read again: a manifest of 100k parameters is 20 MB); object stores: the
    manifest is read and compared.
    """
    if loc.local:
        try:
            intact = os.stat(loc.join(version, "manifest.json")).st_size == len(manifest_raw)
        except OSError:
            intact = False
    else:
        intact = loc.read_bytes(version, "manifest.json") == manifest_raw
    if not intact:
        raise ConcurrentWriteError(
            f"zarr checkpoint {loc.uri!r}: version {version!r} was removed by another writer "
            "before it could be committed (a save longer than cleanup_grace?); save again."
        )


def commit_version(
    loc: Location,
    version: str,
    manifest_raw: bytes,
    *,
    timeout: float = DEFAULT_COMMIT_TIMEOUT,
) -> str | None:
    """Point ``COMMIT`` at ``version`` by compare-and-swap; return the version it replaced.

    Every committer learns exactly which version its commit replaced (two concurrent saves
    both commit, one after the other, and the later one replaces the earlier): that version is
    provably superseded. The root ``zarr.json`` is rewritten after ``COMMIT``.

    Raises
    ------
    paramarena.errors.ConcurrentWriteError
        The version vanished before its commit, or the commit kept losing to other writers
        for ``timeout`` seconds. ``COMMIT`` then names another complete version.
    """
    document = commit_document(version, manifest_raw)
    if loc.local:
        with _root_lock(loc, timeout):
            _check_intact(loc, version, manifest_raw)
            previous = loc.read_bytes(COMMIT_MARKER)
            loc.write_bytes(document, COMMIT_MARKER)
            write_root_metadata(loc, version)
        return committed_version(previous)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        _check_intact(loc, version, manifest_raw)
        expected = read_commit(loc)
        if _put_commit(loc, document, expected):
            break
        if time.monotonic() > deadline:
            raise ConcurrentWriteError(
                f"zarr checkpoint {loc.uri!r}: other writers committed first for {timeout:g} s; "
                f"version {version!r} was not committed."
            )
        time.sleep(delay * (1 + secrets.randbelow(100) / 100))
        delay = min(delay * 2, 0.5)
    write_root_metadata(loc, version)
    return committed_version(expected.raw)


def write_root_metadata(loc: Location, version: str) -> None:
    """Write the root ``zarr.json`` naming ``version`` (best effort, informational).

    On object stores a concurrent commit may land in between: the document is rewritten once
    if ``COMMIT`` meanwhile names another version.
    """
    with contextlib.suppress(OSError):
        loc.write_bytes(root_group_metadata(version), ROOT_METADATA)
        if not loc.local:
            now = committed_version(loc.read_bytes(COMMIT_MARKER))
            if now is not None and now != version:
                loc.write_bytes(root_group_metadata(now), ROOT_METADATA)


# -- cleanup -------------------------------------------------------------------------------------


_CLAIM_PREFIX = ".claim-"
#: A writer keeps its version under the staging name for microseconds (mkdir, lock, rename):
#: one older than this was left by a killed writer.
_CLAIM_STAGING_AGE = 60.0


def _remove_if_abandoned(loc: Location, name: str, grace: float) -> bool:
    """Remove a local version (or claim staging directory) nobody holds a lock on."""
    path = loc.join(name)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        locked = try_lock(fd)
        age = _version_age(name.removeprefix(_CLAIM_PREFIX))
        if locked is False or (locked is None and age <= grace):
            return False
        # its writer let go, so it committed already or never will: COMMIT read now is final
        if committed_version(loc.read_bytes(COMMIT_MARKER)) == name:
            return False
        loc.remove_tree(name)  # still holding the lock: a writer cannot claim it meanwhile
        return True
    finally:
        os.close(fd)


def remove_superseded(
    loc: Location,
    current: str,
    replaced: str | None,
    grace: float = DEFAULT_CLEANUP_GRACE,
) -> list[str]:
    """Delete versions that are provably superseded or abandoned; return their names.

    ``replaced`` (the version ``current``'s commit replaced) always goes. Any other version goes
    when it is abandoned: on local disk when no writer holds its lock (its writer finished or
    died), on object stores when it is older than ``grace`` seconds. The version ``COMMIT`` names
    is never deleted (it is re-read before each deletion). Errors are ignored (best effort).
    """
    removed: list[str] = []
    try:
        listed = loc.list_dir()
        names = [n for n in listed if is_version_name(n) and n != current]
        if loc.local:
            remove_stale_temps(loc.join(COMMIT_MARKER))
            remove_stale_temps(loc.join(ROOT_METADATA))
            for staging in listed:  # a writer killed between creating and naming its version
                claimed = staging.removeprefix(_CLAIM_PREFIX)
                if (
                    staging.startswith(_CLAIM_PREFIX)
                    and is_version_name(claimed)
                    and _version_age(claimed) > _CLAIM_STAGING_AGE  # not one being locked now
                ):
                    _remove_if_abandoned(loc, staging, grace)
        for name in names:
            if committed_version(loc.read_bytes(COMMIT_MARKER)) == name:
                continue
            if name == replaced:
                loc.remove_tree(name)
                removed.append(name)
            elif loc.local:
                if _remove_if_abandoned(loc, name, grace):
                    removed.append(name)
            elif _version_age(name) > grace:
                loc.remove_tree(name)
                removed.append(name)
        if loc.local and removed:
            fsync_dir(loc.path)
    except OSError:
        pass
    return removed


def abandon_version(loc: Location, version: str) -> None:
    """Remove the version of a failed save, unless ``COMMIT`` names it (best effort)."""
    try:
        if committed_version(loc.read_bytes(COMMIT_MARKER)) == version:
            return
        loc.remove_tree(version)
    except Exception:
        pass
