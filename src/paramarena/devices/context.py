"""Device contexts, as in MXNet: ``Context``, ``cpu(i)``, ``gpu(i)``, ``current_context()``.

Also MXNet's ``cpu_pinned(i)``, ``cpu_shared(i)``, ``num_gpus()`` and ``Context.default_ctx``
(the current context, readable and settable on the class).

A :class:`Context` names a device type and an id. Equality and hashing use
``(device_typeid, device_id)``; ``str(cpu(0)) == 'cpu(0)'``. ``current_context()`` is
thread-local and defaults to ``cpu(0)``; ``with ctx:`` switches it for a block.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import ClassVar

from paramarena.errors import UnknownNameError

__all__ = ["Context", "cpu", "cpu_pinned", "cpu_shared", "current_context", "gpu", "num_gpus"]


class _ContextType(type):
    """Metaclass giving ``Context`` MXNet's class-level ``default_ctx`` property."""

    @property
    def default_ctx(cls) -> Context:
        """The current context of this thread (MXNet's ``Context.default_ctx``).

        Same as :func:`current_context`; setting it changes the current context of the thread
        (as MXNet does; ``with ctx:`` is the scoped way).
        """
        return current_context()

    @default_ctx.setter
    def default_ctx(cls, value: Context) -> None:
        if not isinstance(value, Context):
            raise UnknownNameError(f"Context.default_ctx must be a Context, got {value!r}.")
        Context._local.value = value


class Context(metaclass=_ContextType):
    """A device on which parameter copies live.

    Parameters
    ----------
    device_type : str or Context
        ``'cpu'``, ``'gpu'``, ``'cpu_pinned'`` or ``'cpu_shared'``; a ``Context`` is copied.
    device_id : int, optional
        Index of the device of that type (default 0).

    Raises
    ------
    paramarena.errors.UnknownNameError
        If ``device_type`` is not one of the names above.
    """

    devtype2str: ClassVar[dict[int, str]] = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}
    devstr2type: ClassVar[dict[str, int]] = {"cpu": 1, "gpu": 2, "cpu_pinned": 3, "cpu_shared": 5}
    _local: ClassVar[threading.local] = threading.local()

    __slots__ = ("_old_ctx", "device_id", "device_typeid")

    def __init__(self, device_type: str | Context, device_id: int = 0) -> None:
        if isinstance(device_type, Context):
            self.device_typeid: int = device_type.device_typeid
            self.device_id: int = device_type.device_id
        else:
            if device_type not in self.devstr2type:
                valid = ", ".join(repr(k) for k in self.devstr2type)
                raise UnknownNameError(
                    f"Unknown device type {device_type!r}; expected one of {valid}."
                )
            self.device_typeid = self.devstr2type[device_type]
            if not isinstance(device_id, int) or isinstance(device_id, bool) or device_id < 0:
                raise UnknownNameError(
                    f"device_id must be a non-negative int, got {device_id!r} "
                    f"for device type {device_type!r}."
                )
            self.device_id = device_id
        self._old_ctx: Context | None = None

    @property
    def device_type(self) -> str:
        """The device type name (``'cpu'``, ``'gpu'``, ...)."""
        return self.devtype2str[self.device_typeid]

    @property
    def is_gpu(self) -> bool:
        """Whether this context is a GPU."""
        return self.device_typeid == 2

    def __hash__(self) -> int:
        return hash((self.device_typeid, self.device_id))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Context)
            and self.device_typeid == other.device_typeid
            and self.device_id == other.device_id
        )

    def __str__(self) -> str:
        return f"{self.device_type}({self.device_id})"

    def __repr__(self) -> str:
        return self.__str__()

    def __enter__(self) -> Context:
        self._old_ctx = current_context()
        Context._local.value = self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        Context._local.value = self._old_ctx
        self._old_ctx = None


def cpu(device_id: int = 0) -> Context:
    """Return the CPU context ``cpu(device_id)``."""
    return Context("cpu", device_id)


def cpu_pinned(device_id: int = 0) -> Context:
    """Return the pinned-memory CPU context (an alias of ``cpu(i)`` for parameter lookups)."""
    return Context("cpu_pinned", device_id)


def cpu_shared(device_id: int = 0) -> Context:
    """Return the shared-memory CPU context (an alias of ``cpu(i)`` for parameter lookups)."""
    return Context("cpu_shared", device_id)


def gpu(device_id: int = 0) -> Context:
    """Return the GPU context ``gpu(device_id)``.

    Creating the context never fails; using it needs the ``paramarena[cuda]`` extra and a GPU.
    """
    return Context("gpu", device_id)


def current_context() -> Context:
    """Return the thread-local current context (``cpu(0)`` unless inside ``with ctx:``)."""
    value = getattr(Context._local, "value", None)
    return value if value is not None else Context("cpu", 0)


def num_gpus() -> int:
    """Return the number of CUDA GPUs paramarena can use (MXNet's ``mx.context.num_gpus()``).

    0 without numba-cuda (the ``paramarena[cuda]`` extra), without a CUDA driver, or without a
    GPU; numba-cuda is imported on the first call.
    """
    from paramarena.devices.gpu import _cuda_available

    ok, _reason = _cuda_available()
    if not ok:
        return 0
    from numba import cuda

    return len(cuda.gpus)
