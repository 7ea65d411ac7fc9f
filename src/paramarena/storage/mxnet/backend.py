"""Built-in plugin: the ``mxnet`` storage backend (MXNet ``.params`` / ``nd.save`` files).

Reads every layout MXNet 1.9.1 reads and writes dense arrays byte-identically to MXNet 1.9.1
(see :mod:`paramarena.storage.mxnet.format` and ``docs/formats-mxnet.md``). Sparse arrays load
as dense numpy arrays with exact values. Unnamed files (``nd.save`` of a list) load as lists.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

import numpy as np

from paramarena.errors import (
    CheckpointError,
    ConfigurationError,
    MissingParameterError,
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
from paramarena.storage.mxnet.format import (
    DEFAULT_MAX_DENSE_BYTES,
    LIST_MAGIC,
    ParamsFile,
    parse_headers,
    read_record,
)
from paramarena.storage.mxnet.writer import write_params

__all__ = ["BACKEND", "MXNetParamsBackend", "paramarena_storage_backends"]

_COMMON = frozenset({"progress", "storage_options", "concurrency"})
_LOAD_OPTIONS = _COMMON | {"sparse", "max_dense_bytes"}
_VERIFY_OPTIONS = _COMMON | {"max_dense_bytes"}
_SAVE_OPTIONS = _COMMON | {"np_shape", "durable"}
_SPARSE_MODES = ("dense", "error")


def _check_options(uri: str, options: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigurationError(
            f"MXNet storage of {uri!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(allowed))}"
        )


def _max_dense_bytes(uri: str, options: Mapping[str, Any]) -> int:
    value = options.get("max_dense_bytes", DEFAULT_MAX_DENSE_BYTES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"max_dense_bytes must be a non-negative int; got {value!r} loading {uri!r}"
        )
    return value


def _record_names(parsed: ParamsFile) -> list[str]:
    if parsed.names is not None:
        return list(parsed.names)
    return [f"arr_{i}" for i in range(len(parsed.records))]


class MXNetParamsBackend:
    """Read and write MXNet ``.params`` files."""

    def save(self, uri: str, arrays: ArraysLike, **options: Any) -> None:
        """Write ``arrays`` atomically, byte-identical to MXNet 1.9.1's ``nd.save``.

        Parameters
        ----------
        uri : str
            Destination path or URL.
        arrays : dict or list of numpy.ndarray
            A dict stores names (in order); a list stores none.
        **options
            ``np_shape`` (``None``: V2 records unless an array is 0-d, then V3 throughout;
            ``True``: V3; ``False``: V2, refusing 0-d arrays), ``durable`` (bool, default
            True; False skips the ``fsync`` of the file and its directory: the save stays
            atomic, see :func:`~paramarena.storage.fileio.atomic_write`), ``progress``,
            ``storage_options``.
        """
        _check_options(uri, options, _SAVE_OPTIONS)
        durable = durable_option(uri, options)
        values = arrays.values() if isinstance(arrays, Mapping) else arrays
        total = sum(int(np.asarray(a).nbytes) for a in values)
        with (
            progress_reporter(total, f"save {uri}", options.get("progress")) as update,
            atomic_write(uri, options.get("storage_options"), durable=durable) as fh,
        ):
            write_params(fh, arrays, np_shape=options.get("np_shape"), on_array=update)

    def load(
        self, uri: str, *, names: Collection[str] | None = None, **options: Any
    ) -> LoadedArrays:
        """Read ``uri``; with ``names`` only those records' data is read (others are skipped).

        Parameters
        ----------
        uri : str
            Source path or URL.
        names : collection of str, optional
            Records to read; unnamed files call theirs ``arr_0``, ``arr_1``, ...
        **options
            ``sparse`` (``"dense"``, the default, or ``"error"``), ``max_dense_bytes`` (the
            largest dense array a sparse record may expand to; default 1 GiB), ``progress``,
            ``storage_options``.

        Returns
        -------
        dict or list
            A dict in file order (duplicate names: the last one wins, as in MXNet), or a
            list for files without names (``nd.save`` of a list, or of ``{}``).
        """
        _check_options(uri, options, _LOAD_OPTIONS)
        sparse = options.get("sparse", "dense")
        if sparse not in _SPARSE_MODES:
            raise ConfigurationError(f"sparse must be one of {_SPARSE_MODES}; got {sparse!r}")
        max_dense = _max_dense_bytes(uri, options)
        with open_read(uri, options.get("storage_options")) as (fh, size):
            parsed = parse_headers(fh, size, uri)
            record_names = _record_names(parsed)
            last: dict[str, int] = {}
            for i, name in enumerate(record_names):
                last[name] = i
            if names is not None:
                missing = [n for n in names if n not in last]
                if missing:
                    raise MissingParameterError(
                        f"MXNet file {uri!r} has no array named {', '.join(map(repr, missing))}"
                    )
                wanted = set(names)
                chosen = [i for n, i in last.items() if n in wanted]
            else:
                chosen = (
                    list(last.values())
                    if parsed.names is not None
                    else list(range(len(record_names)))
                )
            total = sum(parsed.records[i].stored_nbytes for i in chosen)
            out: dict[str, np.ndarray] = {}
            arrays_list: list[np.ndarray] = []
            with progress_reporter(total, f"load {uri}", options.get("progress")) as update:
                for i in chosen:
                    arr = read_record(fh, parsed, i, sparse=sparse, max_dense_bytes=max_dense)
                    update(parsed.records[i].stored_nbytes)
                    if parsed.names is None and names is None:
                        arrays_list.append(arr)
                    else:
                        out[record_names[i]] = arr
        if parsed.names is None and names is None:
            return arrays_list
        if names is None:
            # dict order = first appearance, value = last appearance (Python dict semantics).
            return {n: out[n] for n in dict.fromkeys(record_names)}
        return out

    def _infos(self, parsed: ParamsFile) -> Iterator[ArrayInfo]:
        for name, header in zip(_record_names(parsed), parsed.records, strict=True):
            if header.empty:
                yield ArrayInfo(name, (), "none", 0, "none")
            else:
                nbytes = header.stored_nbytes
                yield ArrayInfo(name, header.shape, header.dtype.name, nbytes, header.stype_name)

    def inspect(self, uri: str, **options: Any) -> CheckpointInfo:
        """Describe the file from its record headers only (array data is skipped)."""
        _check_options(uri, options, _COMMON)
        with open_read(uri, options.get("storage_options")) as (fh, size):
            parsed = parse_headers(fh, size, uri)
        versions = sorted({h.version for h in parsed.records})
        contexts = sorted({h.context for h in parsed.records if not h.empty})
        return CheckpointInfo(
            uri=uri,
            format="mxnet",
            committed=True,
            named=parsed.names is not None,
            arrays=tuple(self._infos(parsed)),
            metadata={"file_size": size, "record_versions": versions, "contexts": contexts},
        )

    def verify(self, uri: str, **options: Any) -> VerifyReport:
        """Parse the whole file and read every record's data.

        Structural damage after a valid file header (truncation, impossible sizes, unknown
        type flags, a bad names block) and bad records (empty records, out-of-range sparse
        indices) are reported as problems.

        Raises
        ------
        paramarena.errors.StorageError
            The file is missing, or is not an MXNet ``.params`` file at all.
        """
        _check_options(uri, options, _VERIFY_OPTIONS)
        max_dense = _max_dense_bytes(uri, options)
        problems: list[tuple[str, str]] = []
        with open_read(uri, options.get("storage_options")) as (fh, size):
            head = fh.read(8)
            if len(head) < 8 or int.from_bytes(head, "little") != LIST_MAGIC:
                # Not this format at all: parse_headers raises the precise error.
                parse_headers(fh, size, uri)
            try:
                parsed = parse_headers(fh, size, uri)
            except CheckpointError as exc:
                return VerifyReport(uri=uri, checked=0, problems=(("<file structure>", str(exc)),))
            record_names = _record_names(parsed)
            for i, name in enumerate(record_names):
                try:
                    read_record(fh, parsed, i, max_dense_bytes=max_dense)
                except (CheckpointError, StorageError) as exc:
                    problems.append((name, str(exc)))
        return VerifyReport(
            uri=uri, checked=len(parsed.records), problems=tuple(problems), checksummed=False
        )


#: The backend instance registered by this plugin.
BACKEND = MXNetParamsBackend()


@hookimpl
def paramarena_storage_backends() -> Iterator[StorageSpec]:
    """Yield the MXNet ``.params`` storage backend (format ``"mxnet"``, suffix ``.params``)."""
    yield StorageSpec(
        "mxnet",
        BACKEND,
        suffixes=(".params",),
        description="MXNet 1.x .params / nd.save files (read all layouts, write V2 like 1.9.1)",
    )
