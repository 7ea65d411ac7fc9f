"""The float32 <-> bits helpers of ``_bodies`` for Numba's CPU target, as plain LLVM bitcasts.

``_bodies.float32_from_bits`` / ``float32_bits`` are ``.view`` on numpy scalars in Python (the
CUDA simulator, tests). Numba's own scalar ``.view`` is a separate function that the caller
calls and checks for an exception: the kernels would then import Numba's and CPython's error
functions, and the C-ABI fill kernels could not be linked without Numba (see ``_native``).
Overloaded here as an inlined bitcast instead (it cannot fail): ``_cpu`` and ``_cpu_fills``
call :func:`register` before they compile a body; ``_cuda`` registers its own for CUDA.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import types
from numba.extending import intrinsic, overload

from paramarena.kernels import _bodies


def _u32_as_f32_typer(typingctx: Any, x: Any) -> Any:
    sig = types.float32(types.uint32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


def _f32_as_u32_typer(typingctx: Any, x: Any) -> Any:
    sig = types.uint32(types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


_u32_as_f32: Any = intrinsic(_u32_as_f32_typer)
_f32_as_u32: Any = intrinsic(_f32_as_u32_typer)


_registered: list[bool] = []


def register() -> None:
    """Register the overloads (once per process; ``_cpu`` and ``_cpu_fills`` call this)."""
    if _registered:
        return
    _registered.append(True)

    def float32_from_bits(b: Any) -> Any:
        def impl(b: Any) -> Any:
            return _u32_as_f32(np.uint32(b))

        return impl

    def float32_bits(v: Any) -> Any:
        def impl(v: Any) -> Any:
            return np.uint64(_f32_as_u32(np.float32(v)))

        return impl

    for func, typer in ((_bodies.float32_from_bits, float32_from_bits),
                        (_bodies.float32_bits, float32_bits)):  # fmt: skip
        overload(func, inline="always", jit_options={"error_model": "numpy"})(typer)
