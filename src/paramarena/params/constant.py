"""``Constant``: a parameter with a fixed value and no gradient (MXNet ``gluon.Constant``).

Also importable as ``paramarena.params.parameter.Constant`` and ``paramarena.Constant``. See
:mod:`paramarena.params.parameter` for the differences from MXNet 1.9.1 (0-d constants initialize;
``initialize(init=X)`` keeps the value; numpy values keep their dtype).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from paramarena import init as _initializer
from paramarena.params.parameter import CtxArg, Parameter

__all__ = ["Constant"]


class _ConstantInit(_initializer.Initializer):
    """Initializer that copies a Constant's value (private; one per Constant)."""

    def __init__(self, value: np.ndarray) -> None:
        super().__init__()
        self._value = value

    def _init_weight(self, desc: Any, arr: np.ndarray) -> None:
        arr[...] = self._value


class Constant(Parameter):
    """A parameter with a fixed value and no gradient.

    Parameters
    ----------
    name : str
        Full name.
    value : array-like
        The value. A numpy array keeps its dtype; anything else becomes a float32 array.
        A scalar gives a 0-d constant.

    Notes
    -----
    ``grad_req`` is always ``'null'``; setting another value warns and is ignored.
    ``initialize`` always uses the value (an explicit ``init`` is ignored with a warning).
    """

    def __init__(self, name: str, value: Any) -> None:
        if not isinstance(value, np.ndarray):
            value = np.array(value, dtype=np.float32)
        self.value: np.ndarray = value
        super().__init__(
            name,
            grad_req="null",
            shape=tuple(value.shape),
            dtype=value.dtype.type,
            init=_ConstantInit(value),
        )

    def __repr__(self) -> str:
        return f"Constant {self.name} (shape={self.shape}, dtype={self.dtype})"

    @property
    def grad_req(self) -> str:
        """Always ``'null'``."""
        return "null"

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        if req != "null":
            warnings.warn(
                f'Constant parameter "{self.name}" does not support grad_req other than "null", '
                f'and new value "{req}" is ignored.',
                stacklevel=2,
            )

    def initialize(
        self,
        init: Any = None,
        ctx: CtxArg = None,
        default_init: Any = None,
        force_reinit: bool = False,
        *,
        seed: int | None = None,
        verbose: bool = False,
    ) -> None:
        """Initialize with the constant's value on ``ctx`` (``init`` is ignored, see Notes)."""
        if init is not None and init is not self.init:
            warnings.warn(
                f"Constant '{self.name}' is always initialized with its value; "
                f"init={init!r} is ignored.",
                stacklevel=2,
            )
        super().initialize(None, ctx, default_init, force_reinit, seed=seed, verbose=verbose)
