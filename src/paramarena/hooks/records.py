"""Frozen registration records that plugins yield, and the protocols they point at.

A plugin contributes things by yielding these records from its hooks (see
:mod:`paramarena.hooks.specs`):

- :class:`InitializerSpec` from ``paramarena_initializers()``
- :class:`StorageSpec` from ``paramarena_storage_backends()``
- :class:`DeviceSpec` from ``paramarena_devices()``
- :class:`CommunicatorSpec` from ``paramarena_communicators()``

The records are immutable and carry no behaviour of their own; the behaviour lives in the
objects they point at (an ``Initializer`` subclass, a :class:`StorageBackend`, a
:class:`DeviceBackend`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from paramarena.init import Initializer

__all__ = [
    "ArrayInfo",
    "ArraysLike",
    "CheckpointInfo",
    "Communicator",
    "CommunicatorSpec",
    "DeviceBackend",
    "DeviceSpec",
    "InitializerSpec",
    "LoadedArrays",
    "StorageBackend",
    "StorageSpec",
    "VerifyReport",
]

#: What a storage backend saves: named arrays (a dict) or unnamed arrays (a list, MXNet style).
ArraysLike = Mapping[str, np.ndarray] | Sequence[np.ndarray]
#: What a storage backend loads: a dict for named files, a list for unnamed ones.
LoadedArrays = dict[str, np.ndarray] | list[np.ndarray]


@dataclass(frozen=True)
class InitializerSpec:
    """An initializer class registered under a name.

    Attributes
    ----------
    name : str
        Lower-case registered name, e.g. ``"uniform"``; ``init.create(name)`` finds it.
    factory : callable
        The ``Initializer`` subclass (called with the JSON kwargs by ``create``).
    aliases : tuple of str
        Further lower-case names for the same class (``"zeros"`` for ``Zero``).
    """

    name: str
    factory: Callable[..., Initializer]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArrayInfo:
    """One stored array, as reported by :meth:`StorageBackend.inspect`.

    Attributes
    ----------
    name : str
        Stored name (``""``-free; unnamed lists use ``"arr_0"``, ``"arr_1"``, ...).
    shape : tuple of int
        Logical shape.
    dtype : str
        Logical dtype name: ``"float32"``, ``"bfloat16"``, ``"bool"``, ...
    nbytes : int
        Size of the data in bytes.
    stype : str
        ``"default"``, ``"row_sparse"`` or ``"csr"`` (only MXNet files store sparse arrays).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    stype: str = "default"


@dataclass(frozen=True)
class CheckpointInfo:
    """What :meth:`StorageBackend.inspect` reports about a checkpoint.

    Attributes
    ----------
    uri : str
        The path or URL inspected.
    format : str
        The storage backend's name (``"zarr"``, ``"mxnet"``, ``"npz"``, ...).
    committed : bool
        Whether the checkpoint is complete (formats without a commit protocol report ``True``
        when the file parses).
    named : bool
        ``False`` for unnamed (list) files.
    arrays : tuple of ArrayInfo
        The stored arrays in stored order.
    metadata : dict
        Format-specific extras (e.g. the zarr manifest's creation time).
    """

    uri: str
    format: str
    committed: bool
    named: bool
    arrays: tuple[ArrayInfo, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifyReport:
    """Result of :meth:`StorageBackend.verify`.

    Attributes
    ----------
    uri : str
        The path or URL verified.
    checked : int
        Number of arrays checked.
    problems : tuple of (str, str)
        ``(array name, what is wrong)`` for each bad array; empty when all is well.
    checksummed : bool
        Whether the format carries checksums that were compared. ``False`` (MXNet ``.params``)
        means the arrays were only found readable: damaged values would go unnoticed.
    """

    uri: str
    checked: int
    problems: tuple[tuple[str, str], ...] = ()
    checksummed: bool = True

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems


@runtime_checkable
class StorageBackend(Protocol):
    """What a storage plugin implements. Every method takes the path or URL as given.

    Backends raise :class:`paramarena.errors.StorageError` subclasses naming the file.
    """

    def save(self, uri: str, arrays: ArraysLike, **options: Any) -> None:
        """Write ``arrays`` (dict or list of numpy arrays) to ``uri`` atomically."""
        ...

    def load(
        self, uri: str, *, names: Collection[str] | None = None, **options: Any
    ) -> LoadedArrays:
        """Read ``uri``; with ``names`` read only those arrays (others are not read)."""
        ...

    def inspect(self, uri: str, **options: Any) -> CheckpointInfo:
        """Describe the stored arrays without reading their data."""
        ...

    def verify(self, uri: str, **options: Any) -> VerifyReport:
        """Re-read everything and check it against stored checksums / structure."""
        ...


@dataclass(frozen=True)
class StorageSpec:
    """A storage backend registered under a name.

    Attributes
    ----------
    name : str
        Format name, used by ``format=`` (``"npz"``, ``"zarr"``, ``"mxnet"``, ...).
    backend : StorageBackend
        The object doing the work.
    suffixes : tuple of str
        Path suffixes that select this backend (``(".npz",)``); longest match wins.
    schemes : tuple of str
        URL schemes this backend handles (``("s3", "gs")``); suffixes win over schemes.
    description : str
        One line for ``paramarena`` CLI listings and error messages.
    """

    name: str
    backend: StorageBackend
    suffixes: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()
    description: str = ""


@runtime_checkable
class DeviceBackend(Protocol):
    """What a device plugin implements for one device type.

    Arrays handed out by a backend are that backend's native array type (numpy for the CPU;
    objects exposing ``__cuda_array_interface__`` for CUDA).
    """

    def check(self, device_id: int) -> None:
        """Raise :class:`paramarena.errors.DeviceUnavailableError` unless usable."""
        ...

    def empty(self, shape: tuple[int, ...], dtype: np.dtype[Any], device_id: int) -> Any:
        """Allocate an uninitialized array."""
        ...

    def from_host(self, host: np.ndarray, device_id: int) -> Any:
        """Copy a host (numpy) array to the device; always returns a new array."""
        ...

    def to_host(self, array: Any) -> np.ndarray:
        """Copy a device array to a new numpy array."""
        ...

    def copy_into(self, dst: Any, src: Any) -> None:
        """Copy ``src`` (host or same-device array, same shape) into ``dst``, casting."""
        ...

    def zero(self, arrays: Sequence[Any]) -> None:
        """Set every array to zero (one launch where possible)."""
        ...

    def cast(self, array: Any, dtype: np.dtype[Any]) -> Any:
        """Return a new array of ``dtype`` on the same device."""
        ...


@dataclass(frozen=True)
class DeviceSpec:
    """A device backend registered for a device type.

    Attributes
    ----------
    device_type : str
        ``"cpu"`` or ``"gpu"`` (``cpu_pinned``/``cpu_shared`` contexts use the ``cpu`` one).
    backend : DeviceBackend
        The object doing the work.
    description : str
        One line for listings.
    """

    device_type: str
    backend: DeviceBackend
    description: str = ""


@runtime_checkable
class Communicator(Protocol):
    """What a communicator plugin implements: collectives among the ``size`` ranks of a job.

    Every rank calls the same collectives in the same order (SPMD). Buffers are C-contiguous
    numpy arrays changed in place; objects travel as ``bytes`` (callers encode JSON: nothing
    is pickled). A communicator never assumes MPI: :class:`SingleProcessCommunicator
    <paramarena.distributed.single.SingleProcessCommunicator>` is the one-rank case and a
    torch.distributed or Dask communicator can be a third-party plugin.

    Attributes
    ----------
    name : str
        The registered name (``"single"``, ``"mpi"``, ...).
    rank : int
        This process's index, ``0 <= rank < size``.
    size : int
        Number of ranks.
    """

    name: str
    rank: int
    size: int

    def barrier(self) -> None:
        """Return once every rank has called it."""
        ...

    def broadcast_buffer(self, buffer: np.ndarray, root: int) -> None:
        """Overwrite ``buffer`` on every rank with root's (same shape and dtype everywhere)."""
        ...

    def allreduce_buffer(self, buffer: np.ndarray, op: str) -> None:
        """Replace ``buffer`` in place by the element-wise ``op`` (``"sum"``) over ranks."""
        ...

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Return every rank's ``data``, in rank order."""
        ...

    def broadcast_bytes(self, data: bytes | None, root: int) -> bytes:
        """Return root's ``data`` on every rank (other ranks pass anything, e.g. ``None``)."""
        ...

    def abort(self, code: int) -> None:
        """End every rank of the job now (used when a rank cannot continue safely)."""
        ...


@dataclass(frozen=True)
class CommunicatorSpec:
    """A communicator registered under a name.

    Attributes
    ----------
    name : str
        Name given to ``comm=`` (``"single"``, ``"mpi"``).
    factory : callable
        Called with no argument, returns the :class:`Communicator` of this process's job
        (called once; the instance is reused).
    detect : callable
        Returns whether this process was started by this communicator's launcher (e.g.
        ``mpirun`` sets ``OMPI_COMM_WORLD_SIZE``); used to choose the default communicator.
        Must be cheap and must not import the communicator's library.
    priority : int
        Among detected communicators the highest priority is the default.
    description : str
        One line for listings.
    """

    name: str
    factory: Callable[[], Communicator]
    detect: Callable[[], bool] = field(default=lambda: False)
    priority: int = 0
    description: str = ""
