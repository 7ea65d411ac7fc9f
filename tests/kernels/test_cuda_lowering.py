"""The CUDA fill kernel types and lowers to LLVM IR on a machine without a GPU.

The CUDA simulator runs the bodies as plain Python, so it cannot catch a body that the real CUDA
compiler rejects (for example a helper with no CUDA implementation). This lowers ``_fill_f32``
with Numba-CUDA's own compiler for compute capability 8.0 (the device that typing asks for is
faked; nothing runs). Where a GPU is present, the ``gpu``-marked tests compile and run it.
"""

from __future__ import annotations

import os
import re
import types as pytypes

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="needs the real Numba-CUDA compiler"
)


@pytest.mark.timeout(300)
def test_float32_fill_kernel_lowers_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from paramarena.devices import gpu

    if gpu._cuda_available()[0]:
        pytest.skip("a GPU is present: the gpu-marked tests compile the kernels for it")
    cuda_api = pytest.importorskip("numba.cuda.api")
    dispatcher = pytest.importorskip("numba.cuda.dispatcher")
    compiler = pytest.importorskip("numba.cuda.compiler")
    try:  # the typing registries the compiler loads; numba-cuda 0.30 needs np.row_stack
        import numba.cuda.np.arrayobj  # noqa: F401
    except AttributeError as exc:  # removed in numpy 2.5: this numba-cuda cannot compile here
        pytest.skip(f"numba-cuda's compiler does not load with numpy {np.__version__}: {exc}")
    from numba.cuda import types

    from paramarena.kernels import _bodies, _cuda

    fake = pytypes.SimpleNamespace(compute_capability=(8, 0), id=0)
    for module in (cuda_api, dispatcher):
        if hasattr(module, "get_current_device"):
            monkeypatch.setattr(module, "get_current_device", lambda: fake)
    cres = compiler.compile_cuda(
        _bodies.box_muller_f32, None, (types.uint64, types.uint64), cc=(8, 0)
    )
    assert str(cres.signature.return_type) == "UniTuple(float32 x 2)"
    ir = cres.library.get_llvm_str()
    called = set(re.findall(r"call [^@]*@\"?([\w.$]+)", ir))
    # only the correctly rounded float32 square root and the bit casts; no libm, no fma
    assert any("sqrtf" in c for c in called)
    assert not [c for c in called if "sqrt" not in c and "scalar_view" not in c]
    assert "llvm.fma" not in ir
    arr = types.Array(types.float32, 1, "C")
    u64 = types.uint64
    kernel = compiler.compile_cuda(
        _cuda._fill_f32.py_func, types.void,
        (arr, types.int64, types.float64, types.float64, u64, u64, u64, u64), cc=(8, 0),
    )  # fmt: skip
    assert kernel.signature.return_type == types.void
