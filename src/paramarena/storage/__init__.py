"""The functional storage API: save, load, inspect and verify checkpoints in any format.

The backend is chosen through the plugin manager (:func:`resolve`): an explicit ``format=``,
then the ``paramarena_resolve_storage`` hook, then (reading a local path) the content, as
MXNet loads any file name (:mod:`paramarena.storage.sniff`, plugins'
``paramarena_sniff_format``), then the longest matching path suffix (``.npz``, ``.params``,
``.zarr``, ``.zarr.zip``, ...), then the URL scheme (``s3://`` ...). Saving to a local name
with no known suffix writes MXNet's format, as MXNet's ``nd.save`` does.
:func:`dumps` / :func:`loads` do the same in memory (MXNet's ``nd.load_frombuffer``).

>>> import numpy as np, paramarena.storage as storage
>>> storage.save("weights.npz", {"w": np.ones((2, 3), "float32")})      # doctest: +SKIP
>>> storage.load("weights.npz")["w"].shape                              # doctest: +SKIP
(2, 3)

Options common to every backend: ``progress`` (``None`` = automatic), ``storage_options``
(a dict for fsspec, remote URLs only) and ``concurrency`` (int, where the backend does
parallel I/O). Other keyword options are backend-specific and passed through, among them the
save option ``durable`` (default True): ``durable=False`` makes an npz or MXNet ``.params``
save skip its fsyncs (still atomic, not durable); a zarr checkpoint refuses it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from itertools import repeat
from operator import is_
from typing import Any

import numpy as np

from paramarena.errors import (
    MissingParameterError,
    ParameterTypeError,
    ShapeMismatchError,
    UnknownNameError,
)
from paramarena.hooks import manager
from paramarena.hooks.records import (
    ArraysLike,
    CheckpointInfo,
    LoadedArrays,
    StorageSpec,
    VerifyReport,
)
from paramarena.storage import sniff
from paramarena.storage.checking import CHECK_BATCH_BYTES, check
from paramarena.storage.failures import api_errors
from paramarena.storage.fileio import split_scheme
from paramarena.storage.inputs import normalize as _normalize

__all__ = [
    "CHECK_BATCH_BYTES",
    "check",
    "dumps",
    "inspect",
    "load",
    "loads",
    "resolve",
    "save",
    "verify",
]

PathLike = str | os.PathLike[str]

_MODES = ("r", "w")


def _uri(path_or_url: PathLike) -> str:
    if isinstance(path_or_url, os.PathLike):
        return os.fspath(path_or_url)
    if isinstance(path_or_url, str):
        return path_or_url
    raise ParameterTypeError(
        f"a checkpoint path must be a str or os.PathLike; got {type(path_or_url).__name__}"
    )


def _suffix_key(uri: str) -> str:
    """Return the part of ``uri`` whose ending selects a backend (lower-case, no slash)."""
    _scheme, rest = split_scheme(uri)
    rest = rest.split("?", 1)[0].split("#", 1)[0] if _scheme else rest
    return rest.rstrip("/\\").lower()


def _describe_formats(specs: Mapping[str, StorageSpec]) -> str:
    parts = []
    for name in sorted(specs):
        spec = specs[name]
        handles = [*spec.suffixes, *(f"{s}://" for s in spec.schemes)]
        parts.append(f"{name} ({', '.join(handles)})" if handles else name)
    return ", ".join(parts) or "(none)"


def resolve(path_or_url: PathLike, mode: str = "r", format: str | None = None) -> StorageSpec:
    """Choose the storage backend for ``path_or_url``.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        A local path or a URL.
    mode : {"r", "w"}
        ``"r"`` for load/inspect/verify, ``"w"`` for save (passed to the hook).
    format : str, optional
        A format name (``"npz"``, ``"mxnet"``, ``"zarr"``, ...); wins over everything else.

    Returns
    -------
    StorageSpec
        The chosen backend record. Reading a local file or directory, its content decides
        when it is recognized (the suffix is only a hint); writing to a local name whose
        suffix no backend claims gives the ``mxnet`` backend.

    Raises
    ------
    paramarena.errors.UnknownNameError
        Unknown ``format`` name, or no backend handles the suffix or scheme; the message lists
        the registered formats and, for known third-party formats, the package to install.
    paramarena.errors.ConfigurationError
        ``mode`` is not ``"r"`` or ``"w"``.
    """
    uri = _uri(path_or_url)
    if mode not in _MODES:
        from paramarena.errors import ConfigurationError

        raise ConfigurationError(f"storage mode must be 'r' or 'w'; got {mode!r}")
    if format is not None:
        return manager.get_storage_spec(format)
    hooked = manager.get_plugin_manager().hook.paramarena_resolve_storage(uri=uri, mode=mode)
    if hooked is not None:
        if not isinstance(hooked, StorageSpec):
            from paramarena.errors import PluginError

            raise PluginError(
                f"paramarena_resolve_storage returned {type(hooked).__name__} for {uri!r}; "
                "expected a StorageSpec or None"
            )
        return hooked
    specs = manager.storage_specs()
    if mode == "r":
        detected = sniff.detect_local(uri, _plugin_sniffer)
        if detected is not None and detected in specs:
            return specs[detected]
        if detected in manager.INSTALL_HINTS:
            raise UnknownNameError(
                f"{uri!r} holds a {detected} file, and no installed backend reads that format: "
                f"{manager.INSTALL_HINTS[detected]}."
            )
    key = _suffix_key(uri)
    best: tuple[int, StorageSpec] | None = None
    for spec in specs.values():
        for suffix in spec.suffixes:
            if key.endswith(suffix.lower()) and (best is None or len(suffix) > best[0]):
                best = (len(suffix), spec)
    if best is not None:
        return best[1]
    scheme, _rest = split_scheme(uri)
    if scheme:
        for spec in specs.values():
            if scheme in spec.schemes:
                return spec
    if mode == "w" and scheme in ("", "file") and "mxnet" in specs and not _plugin_suffix(key):
        return specs["mxnet"]
    raise _unresolvable(uri, key, scheme, specs)


def _plugin_suffix(key: str) -> bool:
    """Whether ``key`` ends in a suffix of a known third-party format (not installed)."""
    base = key.replace("\\", "/").rsplit("/", 1)[-1]
    return "." in base and base.rsplit(".", 1)[1] in manager.INSTALL_HINTS


def _plugin_sniffer(head: bytes, uri: str) -> str | None:
    """Ask the plugins' ``paramarena_sniff_format`` hooks; check what they answer."""
    found = manager.get_plugin_manager().hook.paramarena_sniff_format(head=head, uri=uri)
    if found is not None and not isinstance(found, str):
        from paramarena.errors import PluginError

        raise PluginError(
            f"paramarena_sniff_format returned {type(found).__name__} for {uri!r}; expected "
            "a format name (str) or None"
        )
    return found


def _unresolvable(
    uri: str, key: str, scheme: str, specs: Mapping[str, StorageSpec]
) -> UnknownNameError:
    base = key.replace("\\", "/").rsplit("/", 1)[-1]
    suffix = "." + base.split(".", 1)[1] if "." in base else ""
    last_suffix = "." + base.rsplit(".", 1)[1] if "." in base else ""
    if suffix:
        what = f"suffix {suffix!r}"
    elif scheme:
        what = f"URL scheme {scheme + '://'!r}"
    else:
        what = "a path without a suffix"
    message = (
        f"Cannot choose a storage format for {uri!r}: no registered backend handles {what}. "
        f"Registered formats: {_describe_formats(specs)}. Pass format=NAME to choose one."
    )
    for candidate in (last_suffix.lstrip("."), suffix.lstrip("."), scheme):
        hint = manager.INSTALL_HINTS.get(candidate) if candidate else None
        if hint:
            message += f" {candidate!r} is provided by a plugin: {hint}."
            break
    return UnknownNameError(message)


def _options(progress: bool | None, options: dict[str, Any]) -> dict[str, Any]:
    if progress is not None:
        options["progress"] = progress
    return options


def save(
    path_or_url: PathLike,
    arrays: ArraysLike | np.ndarray,
    *,
    format: str | None = None,
    progress: bool | None = None,
    **options: Any,
) -> None:
    """Write ``arrays`` to ``path_or_url`` atomically.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        Destination; its suffix or scheme picks the format unless ``format`` is given.
    arrays : dict of str to array, list of arrays, or one array
        A dict keeps its names and order; a list (or a single array) is stored unnamed, as
        MXNet's ``nd.save`` does (formats that need names use ``arr_0``, ``arr_1``, ...).
    format : str, optional
        Format name (``"npz"``, ``"mxnet"``, ``"zarr"``, ...).
    progress : bool, optional
        Show a progress bar; ``None`` shows one for large transfers on a terminal.
    **options
        ``storage_options``, ``concurrency`` and backend-specific options, e.g.
        ``durable=False`` (npz, ``.params``: no fsync of the file and its directory; the
        save stays atomic, but a power loss may lose it: docs/storage.md).

    Raises
    ------
    paramarena.errors.ParameterTypeError
        ``arrays`` is not a dict str -> array or a list of arrays.
    paramarena.errors.ParameterValueError
        A name is not valid Unicode text (a lone surrogate), or the format cannot store it
        (npz: over 64 KiB of UTF-8, or a NUL).
    paramarena.errors.StorageError
        The write failed (the previous file, if any, is left as it was); the message names
        the path or URL. :class:`~paramarena.errors.NetworkError` when an object store stays
        unreachable after the retries, :class:`~paramarena.errors.RemoteStorageError` when it
        refuses (missing bucket, access denied), :class:`~paramarena.errors.MissingDependencyError`
        when the client package for the URL is not installed.
    """
    uri = _uri(path_or_url)
    normalized = _normalize(arrays)
    spec = resolve(uri, "w", format)
    with api_errors(uri, "save"):
        spec.backend.save(uri, normalized, **_options(progress, options))


def load(
    path_or_url: PathLike,
    *,
    names: Collection[str] | None = None,
    format: str | None = None,
    progress: bool | None = None,
    out: Mapping[str, np.ndarray] | None = None,
    **options: Any,
) -> LoadedArrays:
    """Read a checkpoint.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        Source; its suffix or scheme picks the format unless ``format`` is given.
    names : collection of str, optional
        Read only these arrays (the others are not read). Unnamed files use ``arr_0``, ...
        With ``names`` the result is always a dict.
    format : str, optional
        Format name.
    progress : bool, optional
        Show a progress bar; ``None`` shows one for large transfers on a terminal.
    out : mapping of str to numpy.ndarray, optional
        Arrays to load into, by name (same shape and dtype as stored). A backend that can
        reads straight into them (zarr on local disk); for the others they are filled by a
        copy. The result holds these very arrays for their names. Requires ``names``.
        After an error: with npz, MXNet, safetensors, ``.zarr.zip``, remote or compressed zarr
        checkpoints every ``out`` array is untouched (they are filled only once everything
        was read and checked); with uncompressed zarr on local disk, which reads in place, the
        contents of every ``out`` array are unspecified (they may hold some of the stored
        bytes, including damaged ones). See ``docs/storage.md``.
    **options
        ``storage_options``, ``concurrency`` and backend-specific options.

    Returns
    -------
    dict of str to numpy.ndarray, or list of numpy.ndarray
        A dict in stored order; a list for unnamed files (MXNet ``nd.save`` of a list).

    Raises
    ------
    paramarena.errors.MissingParameterError
        A name in ``names`` is not in the checkpoint.
    paramarena.errors.StorageError
        The file is missing or unreadable; :class:`~paramarena.errors.CheckpointError` when it
        is malformed, corrupt or uncommitted.
    """
    uri = _uri(path_or_url)
    wanted = None if names is None else list(dict.fromkeys(names))
    if wanted is not None and not all(map(isinstance, wanted, repeat(str))):
        n = next(n for n in wanted if not isinstance(n, str))
        raise ParameterTypeError(f"names must be strings; got {n!r} loading {uri!r}")
    spec = resolve(uri, "r", format)
    if out:
        if wanted is None or not set(out) <= set(wanted):
            raise ParameterTypeError(
                f"out= needs names= listing every array it fills (loading {uri!r})"
            )
        if getattr(spec.backend, "accepts_out", False):
            options = {**options, "out": out}
    with api_errors(uri, "load"):
        result = spec.backend.load(uri, names=wanted, **_options(progress, options))
    if out:
        assert isinstance(result, dict)  # names= was given
        _fill_out(uri, result, out)
    if wanted is not None:
        if isinstance(result, list):
            result = {f"arr_{i}": a for i, a in enumerate(result)}
        if not all(map(result.__contains__, wanted)):
            missing = [n for n in wanted if n not in result]
            raise MissingParameterError(
                f"checkpoint {uri!r} has no array named {', '.join(map(repr, missing))}"
            )
        result = dict(zip(wanted, map(result.__getitem__, wanted), strict=True))
    return result


def _fill_out(uri: str, result: dict[str, Any], out: Mapping[str, np.ndarray]) -> None:
    """Make ``result`` hold the ``out`` arrays, copying into those the backend did not fill.

    Every shape and dtype is checked before the first copy, so a mismatch leaves all of ``out``
    untouched.
    """
    if all(map(is_, map(result.get, out), out.values())):
        return  # the backend read straight into every one of them
    for name, dest in out.items():
        got = result.get(name)
        if (
            got is not None
            and got is not dest
            and (got.shape != dest.shape or got.dtype != dest.dtype)
        ):
            raise ShapeMismatchError(
                f"out[{name!r}] has shape {dest.shape} and dtype {dest.dtype}; {uri!r} stores "
                f"{got.shape} {got.dtype}"
            )
    for name, dest in out.items():
        got = result.get(name)
        if got is None or got is dest:
            continue
        if got.__array_interface__["data"][0] != dest.__array_interface__["data"][0]:
            np.copyto(dest, got)  # the backend read elsewhere: copy (same place: read in place)
        result[name] = dest


def inspect(
    path_or_url: PathLike,
    *,
    format: str | None = None,
    **options: Any,
) -> CheckpointInfo:
    """Describe a checkpoint (names, shapes, dtypes, sizes, committed) without reading data.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        The checkpoint.
    format : str, optional
        Format name.
    **options
        ``storage_options`` and backend-specific options.

    Returns
    -------
    CheckpointInfo
        The stored arrays in stored order.
    """
    uri = _uri(path_or_url)
    backend = resolve(uri, "r", format).backend
    with api_errors(uri, "inspect"):
        return backend.inspect(uri, **options)


def verify(
    path_or_url: PathLike,
    *,
    format: str | None = None,
    **options: Any,
) -> VerifyReport:
    """Re-read every array of a checkpoint and check it against its checksums and structure.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        The checkpoint.
    format : str, optional
        Format name.
    **options
        ``storage_options`` and backend-specific options.

    Returns
    -------
    VerifyReport
        ``report.ok`` is ``True`` when nothing is wrong; ``report.problems`` lists
        ``(name, what is wrong)`` otherwise.

    Raises
    ------
    paramarena.errors.StorageError
        The checkpoint cannot be opened at all.
    """
    uri = _uri(path_or_url)
    backend = resolve(uri, "r", format).backend
    with api_errors(uri, "verify"):
        return backend.verify(uri, **options)


#: Built-in formats :func:`dumps` / :func:`loads` support: their backends read and write
#: through fsspec's in-memory filesystem (so do plugins' backends that use
#: :mod:`paramarena.storage.fileio`, safetensors included). zarr checkpoints are directory
#: trees (or local ``.zarr.zip`` files) and are refused.
BUFFER_FORMATS = ("mxnet", "npz")


def _buffer_uri(format: str) -> str:
    import uuid

    if format == "zarr":
        raise UnknownNameError(
            "storage.dumps/loads cannot hold a zarr checkpoint in memory (it is a directory "
            f"tree): save it to a path. In-memory formats: {', '.join(BUFFER_FORMATS)}, "
            "and plugins' formats."
        )
    spec = manager.get_storage_spec(format)  # raises, with an install hint, if absent
    suffix = spec.suffixes[0] if spec.suffixes else ""
    return f"memory://paramarena-buffers/{uuid.uuid4().hex}{suffix}"


def _memory_fs() -> Any:
    import fsspec

    return fsspec.filesystem("memory")


def dumps(arrays: ArraysLike | np.ndarray, *, format: str = "mxnet", **options: Any) -> bytes:
    """Return the bytes :func:`save` would write for ``arrays`` in ``format``.

    Parameters
    ----------
    arrays : dict of str to array, list of arrays, or one array
        As for :func:`save`.
    format : str, optional
        Default ``'mxnet'`` (byte-identical to MXNet 1.9.1's ``nd.save``); ``'npz'``, and
        plugins' formats such as ``'safetensors'``; not ``'zarr'``.
    **options
        Backend options, as for :func:`save`.

    Returns
    -------
    bytes
        The whole file.

    Raises
    ------
    paramarena.errors.UnknownNameError
        ``format`` cannot be written to memory (zarr) or is not installed.
    """
    uri = _buffer_uri(format)
    fs = _memory_fs()
    try:
        save(uri, arrays, format=format, progress=False, **options)
        return bytes(fs.cat_file(uri.removeprefix("memory://")))
    finally:
        if fs.exists(uri.removeprefix("memory://")):
            fs.rm(uri.removeprefix("memory://"))


def loads(
    data: bytes | bytearray | memoryview,
    *,
    format: str | None = None,
    names: Collection[str] | None = None,
    **options: Any,
) -> LoadedArrays:
    """Read a checkpoint held in memory (MXNet's ``nd.load_frombuffer``).

    Parameters
    ----------
    data : bytes-like
        A whole ``.params``, ``.npz`` or ``.safetensors`` file.
    format : str, optional
        The format; by default it is detected from the content (plugins'
        ``paramarena_sniff_format`` first, then the built-in rules).
    names : collection of str, optional
        Read only these arrays, as for :func:`load`.
    **options
        Backend options, as for :func:`load`.

    Returns
    -------
    dict of str to numpy.ndarray, or list of numpy.ndarray
        As :func:`load` returns.

    Raises
    ------
    paramarena.errors.ParameterTypeError
        ``data`` is not bytes-like.
    paramarena.errors.UnknownNameError
        The format cannot be told from the content, or cannot be read from memory.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParameterTypeError(f"loads expects bytes; got {type(data).__name__}")
    raw = bytes(data)
    if format is None:
        format = _plugin_sniffer(raw[: sniff.HEAD_BYTES], "<bytes>") or sniff.sniff_bytes(raw)
        if format is None:
            raise UnknownNameError(
                f"storage.loads cannot tell the format of {len(raw)} bytes starting with "
                f"{raw[:8]!r}: neither the built-in rules (MXNet, npz, safetensors) nor a "
                "plugin's sniffer recognizes them. Pass format=NAME."
            )
    uri = _buffer_uri(format)
    fs = _memory_fs()
    fs.pipe_file(uri.removeprefix("memory://"), raw)
    try:
        return load(uri, format=format, names=names, progress=False, **options)
    finally:
        fs.rm(uri.removeprefix("memory://"))
