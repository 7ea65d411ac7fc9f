"""Built-in plugin: the ``gpu`` device backend (CUDA through numba-cuda, ``paramarena[cuda]``).

Arrays are ``numba.cuda`` device arrays: they expose ``__cuda_array_interface__`` so CuPy,
PyTorch and JAX can use them without copies. ``numba.cuda`` is imported only when a gpu context
is first checked or used. Without numba-cuda, or without a GPU, ``check`` raises
:class:`~paramarena.errors.DeviceUnavailableError` saying what to install.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from paramarena.errors import DeviceUnavailableError
from paramarena.hooks.records import DeviceSpec
from paramarena.hooks.specs import hookimpl

__all__ = ["CUDABackend", "paramarena_devices"]

_INSTALL_HINT = "install the CUDA extra: pip install 'paramarena[cuda]' (numba-cuda)"


def _cuda_available() -> tuple[bool, str]:
    """Return ``(usable, reason)`` without raising."""
    try:
        from numba import cuda
    except ImportError as exc:  # pragma: no cover - depends on the environment
        return False, f"numba-cuda is not installed ({exc})"
    try:
        is_available: Any = cuda.is_available
        ok = bool(is_available())
    except Exception as exc:  # pragma: no cover - driver errors vary
        return False, f"the CUDA driver failed to initialize ({exc})"
    if not ok:
        return False, "no CUDA GPU or driver was found (numba.cuda.is_available() is False)"
    return True, ""


def _c_order(array: np.ndarray) -> np.ndarray:
    """C-contiguous array with the same shape (``np.ascontiguousarray`` turns 0-d into 1-d)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


def _uint_view(array: Any) -> Any:
    """Flat view of a contiguous device array as unsigned integers of the same width."""
    flat = array.reshape(array.size) if array.ndim != 1 else array
    return flat.view(np.dtype(f"u{array.dtype.itemsize}"))


class CUDABackend:
    """Device backend for ``gpu(i)``: numba-cuda device arrays on CUDA device ``i``."""

    def check(self, device_id: int) -> None:
        """Raise :class:`DeviceUnavailableError` unless CUDA device ``device_id`` is usable.

        Parameters
        ----------
        device_id : int
            CUDA device ordinal.
        """
        ok, reason = _cuda_available()
        if not ok:
            raise DeviceUnavailableError(
                f"gpu({device_id}) is not available: {reason}; {_INSTALL_HINT} and run on a "
                "machine with an NVIDIA GPU."
            )
        from numba import cuda

        count = len(cuda.gpus)
        if not 0 <= device_id < count:
            raise DeviceUnavailableError(
                f"gpu({device_id}) does not exist: this machine has {count} CUDA device(s) "
                f"(valid ids 0..{count - 1})."
            )

    def _select(self, device_id: int) -> Any:
        from numba import cuda

        return cuda.gpus[device_id]

    def empty(self, shape: tuple[int, ...], dtype: np.dtype[Any], device_id: int) -> Any:
        """Allocate an uninitialized device array on ``gpu(device_id)``."""
        from numba import cuda

        with self._select(device_id):
            return cuda.device_array(shape, dtype=np.dtype(dtype))

    def from_host(self, host: np.ndarray, device_id: int) -> Any:
        """Copy a numpy array to ``gpu(device_id)`` (always a new device array)."""
        from numba import cuda

        with self._select(device_id):
            return cuda.to_device(_c_order(np.asarray(host)))

    def to_host(self, array: Any) -> np.ndarray:
        """Copy a device array to a new numpy array."""
        if isinstance(array, np.ndarray):
            return np.array(array, copy=True, order="C")
        host: np.ndarray = array.copy_to_host()
        return host

    def copy_into(self, dst: Any, src: Any) -> None:
        """Copy ``src`` (numpy or device array, same shape) into device array ``dst``, casting."""
        if tuple(dst.shape) != tuple(src.shape):
            from paramarena.errors import ShapeMismatchError

            raise ShapeMismatchError(
                f"copy_into: destination has shape {tuple(dst.shape)}, source has shape "
                f"{tuple(src.shape)}."
            )
        if isinstance(src, np.ndarray):
            host = src if src.dtype == dst.dtype else self._host_cast(src, dst.dtype)
            dst.copy_to_device(_c_order(host))
            return
        if src.dtype == dst.dtype:
            dst.copy_to_device(src)
            return
        self._cast_into(src, dst)

    @staticmethod
    def _host_cast(src: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
        from paramarena import kernels

        return kernels.cast(src, dtype)

    def _cast_into(self, src: Any, dst: Any) -> None:
        from paramarena.kernels import _cuda

        pair = (src.dtype.name, dst.dtype.name)
        n = src.size
        bit_kernels = {
            ("float32", "float16"): _cuda._cast_f32_to_f16,
            ("float16", "float32"): _cuda._cast_f16_to_f32,
            ("float32", "bfloat16"): _cuda._cast_f32_to_bf16,
            ("bfloat16", "float32"): _cuda._cast_bf16_to_f32,
        }
        if pair in bit_kernels:
            _cuda.launch(bit_kernels[pair], n, _uint_view(src), _uint_view(dst))
        elif pair in {("float32", "float64"), ("float64", "float32")}:
            _cuda.launch(_cuda._cast_native, n, src.reshape(n), dst.reshape(n))
        else:  # no device kernel for this pair: exact numpy/ml_dtypes semantics via the host
            dst.copy_to_device(_c_order(self.to_host(src).astype(dst.dtype)))

    def zero(self, arrays: Sequence[Any]) -> None:
        """Zero every device array (one kernel launch per array; arena segments: per range)."""
        from paramarena.kernels import _cuda

        for a in arrays:
            if isinstance(a, np.ndarray):
                a.fill(0)
            elif a.size:
                _cuda.launch(_cuda._zero, a.size, _uint_view(a))

    def cast(self, array: Any, dtype: Any) -> Any:
        """Return a new device array of ``dtype`` with ``array``'s values (same device)."""
        from numba import cuda

        if isinstance(dtype, str) and dtype == "bfloat16":
            import ml_dtypes

            dtype = np.dtype(ml_dtypes.bfloat16)
        out = cuda.device_array(array.shape, dtype=np.dtype(dtype))
        if out.size:
            if array.dtype == out.dtype:
                out.copy_to_device(array)
            else:
                self._cast_into(array, out)
        return out


def fill_random(out: Any, dist: str, a: float, b: float, *, seed: int, key: str) -> None:
    """Fill a float32/float64 device array like :func:`paramarena.kernels.fill_uniform`.

    Parameters
    ----------
    out : device array
        C-contiguous float32 or float64 numba-cuda array.
    dist : {"uniform", "normal"}
        ``uniform``: ``a + b * U[0, 1)``; ``normal``: ``a + b * N(0, 1)``.
    a, b : float
        Offset and scale.
    seed, key
        The stream, as for the CPU kernels (same values, bit for bit for uniforms).
    """
    from paramarena import kernels
    from paramarena.kernels import _cuda

    k = kernels.stream_key(seed, key)
    flat = out.reshape(out.size) if out.ndim != 1 else out
    d = 0 if dist == "uniform" else 1
    if out.dtype == np.float32:
        _cuda.launch(_cuda._fill_f32, (out.size + 3) // 4, flat, d, a, b, *k)
    elif out.dtype == np.float64:
        _cuda.launch(_cuda._fill_f64, (out.size + 1) // 2, flat, d, a, b, *k)
    else:
        from paramarena.errors import ParameterTypeError

        raise ParameterTypeError(
            f"device random fills need float32 or float64, got {out.dtype.name}; fill a "
            f"float32 array and cast it."
        )


@hookimpl
def paramarena_devices() -> Iterator[DeviceSpec]:
    """Register the CUDA backend (numba.cuda is imported only when a gpu context is used)."""
    yield DeviceSpec("gpu", CUDABackend(), "NVIDIA GPUs through numba-cuda (paramarena[cuda])")
