"""Built-in plugin: the ``cpu`` device backend (numpy arrays in host memory)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from paramarena import kernels
from paramarena.hooks.records import DeviceSpec
from paramarena.hooks.specs import hookimpl

__all__ = ["CPUBackend", "paramarena_devices"]


class CPUBackend:
    """Device backend for ``cpu(i)``: every id is host memory, arrays are numpy arrays."""

    def check(self, device_id: int) -> None:
        """Accept every CPU id (MXNet treats ``cpu(i)`` ids as labels)."""

    def empty(self, shape: tuple[int, ...], dtype: np.dtype[Any], device_id: int) -> np.ndarray:
        """Allocate an uninitialized numpy array (on huge pages when large: cheap first touch)."""
        return kernels.empty(shape, dtype)

    def from_host(self, host: np.ndarray, device_id: int) -> np.ndarray:
        """Return a new C-contiguous copy of ``host``."""
        return np.array(host, copy=True, order="C")

    def to_host(self, array: Any) -> np.ndarray:
        """Return a new numpy copy of ``array``."""
        return np.array(array, copy=True, order="C")

    def copy_into(self, dst: Any, src: Any) -> None:
        """Copy ``src`` into ``dst`` (casting to ``dst.dtype`` as :func:`kernels.cast` does)."""
        kernels.cast_into(dst, src)

    def zero(self, arrays: Sequence[Any]) -> None:
        """Zero every array."""
        kernels.zero(arrays)

    def cast(self, array: Any, dtype: np.dtype[Any]) -> np.ndarray:
        """Return ``array`` as a new array of ``dtype``."""
        return kernels.cast(array, dtype)


@hookimpl
def paramarena_devices() -> Iterator[DeviceSpec]:
    """Register the CPU backend."""
    yield DeviceSpec("cpu", CPUBackend(), "host memory (numpy arrays)")
