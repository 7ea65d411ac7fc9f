"""Built-in plugin: the ``npz`` storage backend (numpy ``.npz`` archives, suffix ``.npz``).

Files are ordinary ``.npz`` archives that ``np.load`` reads: ``np.load(f).files`` is exactly the
saved names. paramarena's own metadata lives in the zip archive comment (``paramarena:`` then
a small JSON object), where numpy never looks:

- whether the arrays were saved as an unnamed list (loaded back as a list, MXNet style);
- the logical dtype of arrays numpy cannot store without pickle: ``bfloat16`` (and the other
  ``ml_dtypes`` types) are stored as unsigned-integer bit patterns of the same width and viewed
  back on load.

Files written before 0.2 kept that metadata in an extra entry, ``__paramarena__`` (or, before
the rename, ``__paramdict__``): both are still read. A metadata document too large for a zip
comment (64 KiB) is written as a ``__paramarena__`` entry. Every metadata document, ``.npy``
header and central-directory record is validated before use.

Saving is atomic (temporary file in the same directory, ``fsync``, ``os.replace``) and writes
the zip container itself (:mod:`paramarena.storage.npz_write`); loading
never unpickles (``allow_pickle=False``). Archives written by plain ``np.savez`` load as dicts.
"""

from __future__ import annotations

import contextlib
import json
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

import numpy as np

from paramarena.errors import (
    CheckpointError,
    ConfigurationError,
    CorruptCheckpointError,
    MissingParameterError,
    ParamarenaError,
    ParameterTypeError,
    ParameterValueError,
    StorageError,
)
from paramarena.hooks.records import (
    ArrayInfo,
    ArraysLike,
    CheckpointInfo,
    LoadedArrays,
    StorageSpec,
    VerifyReport,
)
from paramarena.hooks.specs import hookimpl
from paramarena.storage.fileio import atomic_write, durable_option, open_read, progress_reporter
from paramarena.storage.npz_write import StoredZipWriter, npy_parts, write_with_zipfile

__all__ = ["COMMENT_PREFIX", "META_KEY", "NpzBackend", "paramarena_storage_backends"]

#: Name of the metadata entry paramarena adds to the archive.
META_KEY = "__paramarena__"

#: The metadata entry's name in files written before the rename to paramarena (0.1.x):
#: compatibility reader, kept on purpose so that those files still load.
LEGACY_META_KEY = "__paramdict__"

#: Every entry name that holds metadata rather than an array.
_META_KEYS = (META_KEY, LEGACY_META_KEY)
_META_VERSION = 1
#: The zip archive comment that carries the metadata starts with this.
COMMENT_PREFIX = b"paramarena:"
#: A zip comment holds at most 65535 bytes; zip entry names as many.
_MAX_ZIP_FIELD = 65535
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_COMMON_OPTIONS = frozenset({"progress", "storage_options", "concurrency"})
_SAVE_OPTIONS = _COMMON_OPTIONS | {"compress", "durable"}


def _check_options(uri: str, options: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigurationError(
            f"npz storage of {uri!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(allowed))}"
        )


def _stored_view(name: str, arr: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Return the array numpy stores for ``arr`` and the logical dtype name to record."""
    if arr.dtype.hasobject:
        raise ParameterTypeError(
            f"cannot save {name!r} to npz: object arrays would need pickle (dtype {arr.dtype})"
        )
    if type(arr.dtype).__module__.startswith("ml_dtypes") or (
        arr.dtype.type.__module__.startswith("ml_dtypes")
    ):
        bits = np.dtype(f"<u{arr.dtype.itemsize}")
        c_order = arr if arr.flags.c_contiguous else arr.copy(order="C")
        return c_order.view(bits), arr.dtype.name
    return arr, None


def _read_header(
    member: IO[bytes], version: tuple[int, int]
) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Parse a ``.npy`` header (versions 1.0, 2.0 and 3.0) without reading the data."""
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version in ((2, 0), (3, 0)):
        # 3.0 differs from 2.0 only in allowing UTF-8 field names inside the header dict.
        return np.lib.format.read_array_header_2_0(member)
    raise ValueError(f"unsupported .npy format version {version}")


def _logical_dtype(name: str) -> np.dtype[Any]:
    import ml_dtypes

    try:
        dtype: np.dtype[Any] = np.dtype(getattr(ml_dtypes, name))
    except (AttributeError, TypeError):
        raise CheckpointError(f"unknown logical dtype {name!r}") from None
    return dtype


def _zip_of(uri: str, npz: np.lib.npyio.NpzFile) -> zipfile.ZipFile:
    if npz.zip is None:  # pragma: no cover - only after close()
        raise StorageError(f"npz {uri!r} is closed")
    return npz.zip


#: What reading a damaged archive can raise inside zipfile / numpy.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    EOFError,
    OSError,
    NotImplementedError,
    KeyError,
    zlib.error,
    UnicodeDecodeError,
    struct.error,
    OverflowError,
    RuntimeError,  # e.g. zipfile: "File ... is encrypted, password required"
    SyntaxError,  # numpy parses the .npy header dict as a Python literal
    tokenize.TokenError,
)
#: deflate cannot expand data by more than about 1032:1.
_MAX_DEFLATE_RATIO = 1100


@contextlib.contextmanager
def _guarded(uri: str, what: str) -> Iterator[None]:
    """Turn low-level read errors into a CorruptCheckpointError naming the file and ``what``."""
    try:
        yield
    except _READ_ERRORS as exc:
        if isinstance(exc, ParamarenaError):
            raise
        raise CorruptCheckpointError(
            f"npz {uri!r}: {what} (corrupt or truncated): {type(exc).__name__}: {exc}"
        ) from exc


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _check_entries(uri: str, zf: zipfile.ZipFile, archive_size: int, head: bytes) -> None:
    """Check the central directory: every entry listed, once, ``.npy`` only, sizes that fit."""
    infos = zf.infolist()
    if head == b"PK\x03\x04" and not any(info.header_offset == 0 for info in infos):
        raise CorruptCheckpointError(
            f"npz {uri!r}: the archive starts with an entry that its central directory does "
            f"not list ({len(infos)} entries listed): the central directory is damaged"
        )
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise CorruptCheckpointError(f"npz {uri!r}: the central directory lists an entry twice")
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise CorruptCheckpointError(
                f"npz {uri!r}: entry {info.filename!r} is not an .npy array"
            )
        if info.flag_bits & 0x1:
            raise CorruptCheckpointError(
                f"npz {uri!r}: entry {info.filename!r} is encrypted, which npz never is"
            )
        stored = info.compress_type == zipfile.ZIP_STORED
        if (
            info.compress_size > archive_size
            or (stored and info.compress_size != info.file_size)
            or info.file_size > info.compress_size * _MAX_DEFLATE_RATIO + 1024
        ):
            raise CorruptCheckpointError(
                f"npz {uri!r}: entry {info.filename!r} claims {info.file_size} bytes "
                f"({info.compress_size} stored) in a {archive_size}-byte archive"
            )


def _entry_header(
    uri: str, npz: np.lib.npyio.NpzFile, name: str
) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Parse an entry's ``.npy`` header and check it against the entry size.

    Returns ``(shape, dtype, header length)``; raises before numpy allocates anything for a
    header that claims more data than the entry holds.
    """
    zf = _zip_of(uri, npz)
    info = zf.getinfo(name + ".npy")
    with zf.open(info) as member:
        version = np.lib.format.read_magic(member)
        shape, _fortran, dtype = _read_header(member, version)
        header_len = member.tell()
    if dtype.hasobject:
        raise CorruptCheckpointError(
            f"npz {uri!r}: array {name!r} has dtype {dtype}, which would need pickle"
        )
    claimed = header_len + _count(shape) * dtype.itemsize
    if claimed != info.file_size:
        raise CorruptCheckpointError(
            f"npz {uri!r}: array {name!r} claims shape {tuple(shape)} {dtype} ({claimed} bytes "
            f"with its header) but its entry holds {info.file_size} bytes"
        )
    return tuple(int(d) for d in shape), np.dtype(dtype), header_len


def _read_stored(
    uri: str, name: str, info: zipfile.ZipInfo, fh: IO[bytes], archive_size: int
) -> np.ndarray:
    """Read an uncompressed entry straight into its array (one copy), checking its CRC-32.

    Equivalent to ``np.load(...)[name]`` for ``ZIP_STORED`` entries, without zipfile's
    intermediate buffers. Every size is checked before the array is allocated.
    """
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise CorruptCheckpointError(f"npz {uri!r}: entry {info.filename!r} has no local header")
    flags, name_len, extra_len = (
        struct.unpack("<H", local[6:8])[0],
        *struct.unpack("<HH", local[26:30]),
    )
    stored_name = fh.read(name_len).decode("utf-8" if flags & 0x800 else "cp437")
    if stored_name != info.orig_filename:
        raise CorruptCheckpointError(
            f"npz {uri!r}: entry {info.filename!r} is named {stored_name!r} in its local header"
        )
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > archive_size:
        raise CorruptCheckpointError(
            f"npz {uri!r}: entry {info.filename!r} runs past the end of the archive"
        )
    fh.seek(start)
    version = np.lib.format.read_magic(fh)
    shape, fortran, dtype = _read_header(fh, version)
    header_len = fh.tell() - start
    if dtype.hasobject:
        raise CorruptCheckpointError(
            f"npz {uri!r}: array {name!r} has dtype {dtype}, which would need pickle"
        )
    count = _count(shape)
    if header_len + count * dtype.itemsize != info.file_size:
        raise CorruptCheckpointError(
            f"npz {uri!r}: array {name!r} claims shape {tuple(shape)} {dtype} "
            f"({header_len + count * dtype.itemsize} bytes with its header) but its entry "
            f"holds {info.file_size} bytes"
        )
    fh.seek(start)
    crc = zlib.crc32(fh.read(header_len))
    arr = np.empty(count, dtype=dtype)
    if arr.nbytes:
        view = arr.view(np.uint8).data
        got = 0
        while got < arr.nbytes:
            n = fh.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                break
            got += n
        if got != arr.nbytes:
            raise CorruptCheckpointError(f"npz {uri!r}: array {name!r} is truncated")
        crc = zlib.crc32(view, crc)
    if crc != info.CRC:
        raise CorruptCheckpointError(
            f"npz {uri!r}: array {name!r}: Bad CRC-32 (stored 0x{info.CRC:08x}, data 0x{crc:08x})"
        )
    if fortran:
        return arr.reshape(shape[::-1]).transpose()
    return arr.reshape(shape)


def _validated_meta(uri: str, where: str, raw: bytes, names: Collection[str]) -> dict[str, Any]:
    """Parse and check paramarena's metadata document (version, named, dtypes)."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptCheckpointError(f"npz {uri!r}: {where} is not UTF-8 JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CorruptCheckpointError(f"npz {uri!r}: {where} is not a JSON object")
    version = meta.get("version", _META_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CorruptCheckpointError(f"npz {uri!r}: {where}: bad 'version' {version!r}")
    if version > _META_VERSION:
        raise CorruptCheckpointError(
            f"npz {uri!r}: {where} has version {version}, newer than this paramarena reads "
            f"({_META_VERSION}); upgrade paramarena"
        )
    named = meta.get("named", True)
    if not isinstance(named, bool):
        raise CorruptCheckpointError(f"npz {uri!r}: {where}: 'named' must be true or false")
    dtypes = meta.get("dtypes", {})
    if not isinstance(dtypes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in dtypes.items()
    ):
        raise CorruptCheckpointError(
            f"npz {uri!r}: {where}: 'dtypes' must map array names to dtype names"
        )
    unknown = sorted(set(dtypes) - set(names))
    if unknown:
        raise CorruptCheckpointError(
            f"npz {uri!r}: {where} records dtypes of arrays the archive lacks: {unknown[:5]}"
        )
    return {"version": version, "named": named, "dtypes": dtypes}


class NpzBackend:
    """Read and write ``.npz`` archives (see the module docstring for the layout)."""

    # ----------------------------------------------------------------- saving

    def save(self, uri: str, arrays: ArraysLike, **options: Any) -> None:
        """Write ``arrays`` to ``uri`` atomically.

        Parameters
        ----------
        uri : str
            Destination path or URL.
        arrays : dict of str to numpy.ndarray, or list of numpy.ndarray
            A list is stored as ``arr_0``, ``arr_1``, ... and loaded back as a list.
        **options
            ``compress`` (bool, default False: deflate the entries), ``durable`` (bool,
            default True; False skips the ``fsync`` of the file and its directory and the
            early writeback: the save stays atomic, see
            :func:`~paramarena.storage.fileio.atomic_write`), ``progress``,
            ``storage_options``.
        """
        _check_options(uri, options, _SAVE_OPTIONS)
        durable = durable_option(uri, options)
        named = isinstance(arrays, Mapping)
        items: list[tuple[str, np.ndarray]] = (
            list(arrays.items())
            if isinstance(arrays, Mapping)
            else [(f"arr_{i}", a) for i, a in enumerate(arrays)]
        )
        stored: list[tuple[str, np.ndarray]] = []
        dtypes: dict[str, str] = {}
        for name, arr in items:
            if name in _META_KEYS:
                raise ParameterValueError(
                    f"cannot save an array named {name!r} to npz {uri!r}: "
                    "the name is reserved for paramarena's metadata"
                )
            if "\x00" in name:
                raise ParameterValueError(
                    f"cannot save {name!r} to npz {uri!r}: zip entry names cannot contain NUL"
                )
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise ParameterValueError(
                    f"cannot save {name!r} to npz {uri!r}: the name is not valid UTF-8 text"
                ) from None
            if len(name.encode("utf-8")) + 4 > _MAX_ZIP_FIELD:
                raise ParameterValueError(
                    f"cannot save {name[:40]!r}... to npz {uri!r}: the name is "
                    f"{len(name.encode('utf-8'))} bytes of UTF-8, over the zip limit of "
                    f"{_MAX_ZIP_FIELD - 4}"
                )
            view, logical = _stored_view(name, np.asarray(arr))
            if logical is not None:
                dtypes[name] = logical
            stored.append((name, view))
        meta = {"version": _META_VERSION, "named": named, "dtypes": dtypes}
        meta_text = json.dumps(meta, separators=(",", ":")).encode()
        in_comment = len(COMMENT_PREFIX) + len(meta_text) <= _MAX_ZIP_FIELD
        if not in_comment:  # too large for the comment: an entry, as before 0.2
            stored.append((META_KEY, np.frombuffer(meta_text, dtype=np.uint8)))
        comment = COMMENT_PREFIX + meta_text if in_comment else b""
        total = sum(a.nbytes for _, a in stored)
        with (
            progress_reporter(total, f"save {uri}", options.get("progress")) as update,
            atomic_write(uri, options.get("storage_options"), durable=durable) as fh,
        ):
            if options.get("compress") or any(a.dtype.names is not None for _, a in stored):
                compression = (
                    zipfile.ZIP_DEFLATED if options.get("compress") else zipfile.ZIP_STORED
                )
                with write_with_zipfile(fh, stored, compression, update) as zf:
                    zf.comment = comment
                return
            writer = StoredZipWriter(fh, total, preallocate=total, durable=durable)
            headers: dict[tuple[Any, ...], bytes] = {}
            try:
                for name, arr in stored:
                    writer.add(name + ".npy", *npy_parts(arr, headers))
                    update(arr.nbytes)
                writer.finish(comment)
            except BaseException:
                writer.close(abort=True)
                raise

    # ----------------------------------------------------------------- reading

    def _open(self, uri: str, fh: IO[bytes], size: int) -> np.lib.npyio.NpzFile:
        head = fh.read(4)
        fh.seek(0)
        if head not in _ZIP_MAGICS:
            raise CheckpointError(
                f"{uri!r} is not an npz archive (it does not start with a zip header; "
                f"first bytes {head!r})"
            )
        try:
            npz = np.load(fh, allow_pickle=False)
        except _READ_ERRORS as exc:
            if isinstance(exc, ParamarenaError):
                raise
            raise CheckpointError(
                f"{uri!r} is not a readable npz archive (truncated or corrupt?): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(npz, np.lib.npyio.NpzFile):  # pragma: no cover - guarded above
            raise CheckpointError(f"{uri!r} is not an npz archive")
        try:
            _check_entries(uri, _zip_of(uri, npz), size, head)
        except CheckpointError:
            npz.close()
            raise
        return npz

    def _meta(self, uri: str, npz: np.lib.npyio.NpzFile) -> dict[str, Any]:
        """Return the validated metadata: from the zip comment, else a metadata entry."""
        comment = _zip_of(uri, npz).comment
        if comment.startswith(COMMENT_PREFIX):
            where = "the metadata in the zip comment"
            raw = comment[len(COMMENT_PREFIX) :]
        else:
            key = next((k for k in _META_KEYS if k in npz.files), None)
            if key is None:
                return {"named": True, "dtypes": {}}
            where = f"the {key!r} metadata entry"
            with _guarded(uri, f"{where} cannot be read"):
                shape, dtype, _len = _entry_header(uri, npz, key)
                if dtype != np.uint8 or len(shape) != 1:
                    raise CorruptCheckpointError(
                        f"npz {uri!r}: {where} is {dtype} {shape}, expected 1-D uint8 JSON"
                    )
                raw = bytes(npz[key])
        return _validated_meta(uri, where, raw, self._array_names(npz))

    def _read(
        self,
        uri: str,
        npz: np.lib.npyio.NpzFile,
        name: str,
        dtypes: Mapping[str, str],
        source: tuple[IO[bytes], int],
    ) -> np.ndarray:
        with _guarded(uri, f"array {name!r} cannot be read"):
            info = _zip_of(uri, npz).getinfo(name + ".npy")
            if info.compress_type == zipfile.ZIP_STORED:
                arr = _read_stored(uri, name, info, *source)
            else:
                _entry_header(uri, npz, name)  # sizes checked before numpy allocates
                arr = npz[name]
        logical = dtypes.get(name)
        if logical is not None:
            try:
                dtype = _logical_dtype(logical)
            except CheckpointError as exc:
                raise CorruptCheckpointError(f"npz {uri!r}: array {name!r}: {exc}") from None
            if arr.dtype.itemsize != dtype.itemsize:
                raise CorruptCheckpointError(
                    f"npz {uri!r}: array {name!r} is recorded as {logical} but is stored as "
                    f"{arr.dtype} ({arr.dtype.itemsize} bytes per item)"
                )
            arr = arr.view(dtype)
        return arr

    def _array_names(self, npz: np.lib.npyio.NpzFile) -> list[str]:
        return [n for n in npz.files if n not in _META_KEYS]

    def load(
        self, uri: str, *, names: Collection[str] | None = None, **options: Any
    ) -> LoadedArrays:
        """Read ``uri``; with ``names`` only those entries are decompressed and read.

        Returns
        -------
        dict or list
            A list when the archive was saved from a list by paramarena.
        """
        _check_options(uri, options, _COMMON_OPTIONS)
        with open_read(uri, options.get("storage_options")) as (fh, size):
            npz = self._open(uri, fh, size)
            with npz:
                meta = self._meta(uri, npz)
                available = self._array_names(npz)
                if names is not None:
                    missing = [n for n in names if n not in available]
                    if missing:
                        raise MissingParameterError(
                            f"npz {uri!r} has no array named {', '.join(map(repr, missing))}"
                        )
                    wanted = [n for n in available if n in set(names)]
                else:
                    wanted = available
                zf = _zip_of(uri, npz)
                total = sum(int(zf.getinfo(n + ".npy").file_size) for n in wanted)
                out: dict[str, np.ndarray] = {}
                with progress_reporter(total, f"load {uri}", options.get("progress")) as update:
                    for name in wanted:
                        out[name] = self._read(uri, npz, name, meta.get("dtypes", {}), (fh, size))
                        update(out[name].nbytes)
        if names is None and meta.get("named") is False:
            return list(out.values())
        return out

    def _headers(self, uri: str, npz: np.lib.npyio.NpzFile) -> Iterator[ArrayInfo]:
        dtypes = self._meta(uri, npz).get("dtypes", {})
        for name in self._array_names(npz):
            with _guarded(uri, f"the header of array {name!r} cannot be read"):
                shape, dtype, _header_len = _entry_header(uri, npz, name)
            logical = dtypes.get(name, dtype.name)
            yield ArrayInfo(name, shape, logical, _count(shape) * dtype.itemsize)

    def inspect(self, uri: str, **options: Any) -> CheckpointInfo:
        """Describe the archive from the ``.npy`` headers only (no array data is read)."""
        _check_options(uri, options, _COMMON_OPTIONS)
        with (
            open_read(uri, options.get("storage_options")) as (fh, size),
            self._open(uri, fh, size) as npz,
        ):
            named = self._meta(uri, npz).get("named", True) is not False
            arrays = tuple(self._headers(uri, npz))
        return CheckpointInfo(
            uri=uri,
            format="npz",
            committed=True,
            named=named,
            arrays=arrays,
            metadata={"file_size": size},
        )

    def verify(self, uri: str, **options: Any) -> VerifyReport:
        """Re-read every array, checking each entry's CRC-32 and that its header parses.

        Raises
        ------
        paramarena.errors.StorageError
            The file is missing or is not an npz archive at all.
        """
        _check_options(uri, options, _COMMON_OPTIONS)
        problems: list[tuple[str, str]] = []
        checked = 0
        with (
            open_read(uri, options.get("storage_options")) as (fh, size),
            self._open(uri, fh, size) as npz,
        ):
            try:
                dtypes = self._meta(uri, npz).get("dtypes", {})
            except CheckpointError as exc:
                problems.append((META_KEY, str(exc)))
                dtypes = {}
            for name in self._array_names(npz):
                checked += 1
                try:
                    self._read(uri, npz, name, dtypes, (fh, size))
                except (CheckpointError, StorageError) as exc:
                    problems.append((name, str(exc)))
        return VerifyReport(uri=uri, checked=checked, problems=tuple(problems))


#: The backend instance registered by this plugin.
BACKEND = NpzBackend()


@hookimpl
def paramarena_storage_backends() -> Iterator[StorageSpec]:
    """Yield the npz storage backend (suffix ``.npz``)."""
    yield StorageSpec(
        "npz",
        BACKEND,
        suffixes=(".npz",),
        description="numpy .npz archive (bfloat16 kept via a small metadata entry)",
    )
