"""Initialize one rank's rows of a parameter exactly as the whole-array initialize would.

:class:`ShardFill` is the initializer a sharded dict gives each sharded parameter. It knows the
parameter's full shape and this rank's first row, and fills the local rows with the values a
single-process ``initialize(seed=s)`` puts there:

* element-wise initializers (``Uniform``, ``Normal``, ``Xavier``, ``MSRAPrelu``, ``Zero``,
  ``One``, ``Constant``) fill only the local rows: random ones from the counter-based stream at
  the rows' element offset (:mod:`paramarena.kernels.offsets`), their scale computed from the
  full shape;
* any other initializer (``Orthogonal``, ``Bilinear``, ``LSTMBias``, third-party ones) needs the
  whole array: rank 0 computes it with the real initializer and broadcasts it, every rank keeps
  its rows (same values, bit for bit). Arrays larger than ``whole_limit_bytes`` raise
  :class:`~paramarena.errors.ShardingError` naming the parameter instead.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from paramarena import init as initializer
from paramarena.errors import InitializerError, ShardingError
from paramarena.hooks.records import Communicator
from paramarena.init.base import Initializer, is_float_dtype
from paramarena.kernels.offsets import fill_normal_at, fill_uniform_at

__all__ = ["DEFAULT_WHOLE_LIMIT_BYTES", "ShardFill"]

#: Largest parameter a whole-array initializer may build (on rank 0) for a sharded dict.
DEFAULT_WHOLE_LIMIT_BYTES = 1 << 30


def _seed(desc: Any) -> int:
    seed = getattr(desc, "seed", None)
    if seed is None:
        from paramarena.kernels.seeds import get_seed

        return get_seed()
    return int(seed)


class ShardFill(Initializer):
    """Fill rows ``[row0, row0 + arr.shape[0])`` of a parameter of shape ``full_shape``.

    Parameters
    ----------
    inner : Initializer or str
        The initializer of the whole parameter.
    full_shape : tuple of int
        The unsharded shape.
    row0 : int
        Index of this rank's first row.
    comm : Communicator
        Used by whole-array initializers (rank 0 computes, every rank receives).
    whole_limit_bytes : int
        Largest whole array rank 0 may build.
    """

    def __init__(
        self,
        inner: Any,
        full_shape: tuple[int, ...],
        row0: int,
        comm: Communicator,
        whole_limit_bytes: int = DEFAULT_WHOLE_LIMIT_BYTES,
    ) -> None:
        super().__init__()
        self.inner = initializer.create(inner)
        self.full_shape = tuple(full_shape)
        self.row0 = int(row0)
        self.comm = comm
        self.whole_limit_bytes = whole_limit_bytes

    def __repr__(self) -> str:
        return f"{self.inner!r} (rows from {self.row0} of {self.full_shape})"

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        inner = self.inner
        kind = type(inner)
        classes = initializer
        offset = self.row0 * (math.prod(self.full_shape[1:]) if self.full_shape else 1)
        if kind in (classes.Zero, classes.One):
            inner._init_weight(desc, arr)
        elif kind is classes.Constant:
            assert isinstance(inner, classes.Constant)
            value = inner.value
            if isinstance(value, bool | int | float | np.generic):
                arr[...] = value
            else:
                try:
                    whole = np.broadcast_to(np.asarray(value), self.full_shape)
                except ValueError as exc:
                    raise InitializerError(
                        f"Constant value of shape {np.shape(value)} cannot be broadcast to "
                        f"parameter {desc} of shape {self.full_shape}: {exc}."
                    ) from None
                arr[...] = whole[self.row0 : self.row0 + arr.shape[0]]
        elif kind is classes.Uniform:
            assert isinstance(inner, classes.Uniform)
            self._random(desc, arr, "uniform", -inner.scale, inner.scale, offset)
        elif kind is classes.Normal:
            assert isinstance(inner, classes.Normal)
            self._random(desc, arr, "normal", 0.0, inner.sigma, offset)
        elif kind in (classes.Xavier, classes.MSRAPrelu):
            assert isinstance(inner, classes.Xavier)
            if len(self.full_shape) < 2:
                raise InitializerError(
                    f"Xavier initializer cannot be applied to vector {desc}. It requires at "
                    f"least 2D (shape {self.full_shape})."
                )
            scale = inner.scale_for(self.full_shape)
            if inner.rnd_type == "uniform":
                self._random(desc, arr, "uniform", -scale, scale, offset)
            else:
                self._random(desc, arr, "normal", 0.0, scale, offset)
        else:
            self._whole(desc, arr)

    def _random(
        self, desc: str, arr: np.ndarray, dist: str, a: float, b: float, offset: int
    ) -> None:
        if not is_float_dtype(arr.dtype):
            raise InitializerError(
                f"{type(self.inner).__name__} initializer draws random floats and cannot fill "
                f"parameter {desc} of dtype {arr.dtype.name}; use a float dtype, or "
                "Zero/One/Constant for integer parameters."
            )
        fill = fill_uniform_at if dist == "uniform" else fill_normal_at
        fill(arr, a, b, seed=_seed(desc), key=str(desc), offset=offset)

    def _whole(self, desc: str, arr: np.ndarray) -> None:
        """Rank 0 runs the real initializer on the whole array; every rank keeps its rows."""
        nbytes = math.prod(self.full_shape) * arr.dtype.itemsize
        if nbytes > self.whole_limit_bytes:
            raise ShardingError(
                f"{type(self.inner).__name__} initializes parameter {str(desc)!r} from the whole "
                f"array, which is {nbytes} bytes (limit {self.whole_limit_bytes}); shard by "
                "initializing it with an element-wise initializer (Uniform, Normal, Xavier, "
                "Constant, ...), raise whole_limit_bytes, or replicate it."
            )
        whole = np.zeros(self.full_shape, dtype=arr.dtype)
        failure = b""
        if self.comm.rank == 0:
            try:
                self.inner._init_weight(desc, whole)
            except Exception as exc:  # every rank must learn it, or the others would hang
                failure = f"{type(exc).__name__}: {exc}".encode()
        failure = self.comm.broadcast_bytes(failure, 0)
        if failure:
            raise InitializerError(
                f"initializing parameter {str(desc)!r} failed on rank 0: {failure.decode()}"
            )
        self.comm.broadcast_buffer(whole, 0)
        arr[...] = whole[self.row0 : self.row0 + arr.shape[0]]
