"""GPU backend and CUDA kernels: run under NUMBA_ENABLE_CUDASIM=1 (small sizes) or on a GPU."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import ml_dtypes
import numpy as np
import pytest

from paramarena import kernels
from paramarena.devices import gpu
from paramarena.errors import DeviceUnavailableError, ParameterTypeError, ShapeMismatchError

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(
        not (SIM or gpu._cuda_available()[0]), reason="needs NUMBA_ENABLE_CUDASIM=1 or a GPU"
    ),
]
BF16 = np.dtype(ml_dtypes.bfloat16)


@contextlib.contextmanager
def _simulated_snan_cast(target: np.dtype) -> Iterator[None]:
    """Expect numpy's warning where the simulator widens a signalling NaN to float64.

    The simulator runs ``dst[i] = src[i]`` as a numpy scalar assignment on the CPU, where
    converting a signalling NaN raises the IEEE invalid flag, which numpy reports as
    ``RuntimeWarning: invalid value encountered in cast``; a GPU converts it silently. The
    float16 and bfloat16 casts are bit manipulations and never warn.
    """
    if SIM and target == np.float64:
        with pytest.warns(RuntimeWarning, match="invalid value encountered in cast"):
            yield
    else:
        yield


@pytest.fixture
def backend():
    b = gpu.CUDABackend()
    b.check(0)
    return b


def test_device_philox_matches_known_answers():
    from numba import cuda

    from paramarena.kernels import _cuda

    @cuda.jit
    def run(out):
        x = _cuda._philox(
            np.uint64(0x243F6A88),
            np.uint64(0x85A308D3),
            np.uint64(0x13198A2E),
            np.uint64(0x03707344),
            np.uint64(0xA4093822),
            np.uint64(0x299F31D0),
        )
        for j in range(4):
            out[j] = x[j]

    out = cuda.device_array(4, np.uint64)
    run[1, 1](out)
    assert [int(v) for v in out.copy_to_host()] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_bit_identical_to_cpu(backend, dtype):
    n = 37
    dev = backend.empty((n,), np.dtype(dtype), 0)
    gpu.fill_random(dev, "uniform", -1.0, 2.0, seed=5, key="p.weight")
    host = np.empty(n, dtype)
    kernels.fill_uniform(host, -1.0, 1.0, seed=5, key="p.weight")
    np.testing.assert_array_equal(backend.to_host(dev), host)


@pytest.mark.parametrize("shape", [(5, 7), (4099,)])
def test_float32_normal_bit_identical_to_cpu(backend, shape):
    # float32 normals are float32 +, * and sqrt and exact bit operations only (no libm): the
    # same bits everywhere; 4099 values are more than a stage of the CPU kernel (4096)
    dev = backend.empty(shape, np.dtype(np.float32), 0)
    gpu.fill_random(dev, "normal", 0.25, 1.5, seed=5, key="n")
    host = np.empty(shape, np.float32)
    kernels.fill_normal(host, 0.25, 1.5, seed=5, key="n")
    np.testing.assert_array_equal(backend.to_host(dev).view(np.uint32), host.view(np.uint32))


def test_float64_normal_within_2_ulp_of_cpu(backend):
    dev = backend.empty((5, 6), np.dtype(np.float64), 0)
    gpu.fill_random(dev, "normal", 0.0, 1.0, seed=5, key="n")
    host = np.empty((5, 6), np.float64)
    kernels.fill_normal(host, 0.0, 1.0, seed=5, key="n")
    np.testing.assert_array_max_ulp(backend.to_host(dev), host, maxulp=2)


def test_device_fill_rejects_half(backend):
    with pytest.raises(ParameterTypeError, match="float16"):
        gpu.fill_random(
            backend.empty((4,), np.dtype(np.float16), 0), "uniform", 0, 1, seed=0, key="x"
        )


@pytest.mark.parametrize("target", [np.dtype(np.float16), BF16, np.dtype(np.float64)])
def test_device_cast_matches_astype(backend, target):
    bits = np.array(
        [0x3F800000, 0x7F800001, 0xFFC12345, 0x33000001, 0x387FE000, 0x477FF000, 0x7F7FFFFF,
         0x00000001, 0x80000000, 0x3F808000, 0x3F818000, 0x7F800000],
        np.uint32,
    )  # fmt: skip
    src = bits.view(np.float32).reshape(3, 4)
    with _simulated_snan_cast(target):  # 0x7F800001 is a signalling NaN
        out = backend.cast(backend.from_host(src, 0), target)
    got = backend.to_host(out)
    with np.errstate(invalid="ignore", over="ignore"):
        want = src.astype(target)
    assert got.dtype == target
    np.testing.assert_array_equal(got.view(f"u{target.itemsize}"), want.view(f"u{target.itemsize}"))
    back = backend.to_host(backend.cast(out, np.float32))
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(back.view(np.uint32), want.astype(np.float32).view(np.uint32))


def test_fallback_cast_pair_and_copy_into(backend):
    src = backend.from_host(np.arange(6, dtype=np.int32).reshape(2, 3), 0)
    out = backend.cast(src, np.float16)
    np.testing.assert_array_equal(
        backend.to_host(out), np.arange(6, dtype=np.float16).reshape(2, 3)
    )
    dst = backend.empty((2, 3), np.dtype(np.float32), 0)
    backend.copy_into(dst, np.full((2, 3), 2.5, np.float64))  # host source, cast on the host
    np.testing.assert_array_equal(backend.to_host(dst), np.full((2, 3), 2.5, np.float32))
    backend.copy_into(dst, out)  # device source of another dtype: device kernel
    np.testing.assert_array_equal(
        backend.to_host(dst), np.arange(6, dtype=np.float32).reshape(2, 3)
    )
    with pytest.raises(ShapeMismatchError, match=r"source has shape \(4,\)"):
        backend.copy_into(dst, np.zeros(4, np.float32))


def test_zero_many_device_arrays(backend):
    arrays = [backend.from_host(np.ones(s, np.float32), 0) for s in [(3,), (2, 2), (5,)]]
    arrays.append(backend.from_host(np.ones(3, BF16), 0))
    backend.zero(arrays)
    for a in arrays:
        assert not backend.to_host(a).astype(np.float32).any()


def test_arena_on_gpu(backend):
    from paramarena.devices.arena import Arena

    arena = Arena(np.float32, backend=backend, min_segment_elements=64)
    views = arena.allocate_many([(4,), (2, 3)])
    for v in views:
        backend.copy_into(v, np.ones(v.shape, np.float32))
    arena.release(views[0])
    arena.zero()
    assert backend.to_host(views[0]).all()
    assert not backend.to_host(views[1]).any()


def test_check_rejects_missing_device(backend):
    with pytest.raises(DeviceUnavailableError, match="does not exist"):
        backend.check(99)


def test_check_without_cuda_names_the_extra(monkeypatch):
    monkeypatch.setattr(gpu, "_cuda_available", lambda: (False, "numba-cuda is not installed"))
    with pytest.raises(DeviceUnavailableError, match=r"pip install 'paramarena\[cuda\]'"):
        gpu.CUDABackend().check(0)


@pytest.mark.gpu
@pytest.mark.skipif(SIM, reason="the simulator's arrays have no __cuda_array_interface__")
def test_real_gpu_arrays_expose_cuda_array_interface(backend):
    a = backend.from_host(np.arange(6, dtype=np.float32).reshape(2, 3), 0)
    iface = a.__cuda_array_interface__
    assert iface["shape"] == (2, 3)
    assert iface["typestr"] == "<f4"


@pytest.mark.gpu
@pytest.mark.skipif(SIM, reason="real GPU only")
def test_real_gpu_large_uniform_bit_identical(backend):
    n = 1_000_003
    dev = backend.empty((n,), np.dtype(np.float32), 0)
    gpu.fill_random(dev, "uniform", -0.07, 0.14, seed=1, key="big")
    host = np.empty(n, np.float32)
    kernels.fill_uniform(host, -0.07, 0.07, seed=1, key="big")
    np.testing.assert_array_equal(backend.to_host(dev), host)


def test_parameter_dict_on_gpu_uses_device_arenas(backend):
    from paramarena import ParameterDict, cpu
    from paramarena import gpu as gpu_ctx

    d = ParameterDict("net_")
    for i in range(20):
        d.get(f"w{i}", shape=(3, 2))
    d.get("frozen", shape=(2,), grad_req="null")
    d.initialize("ones", ctx=gpu_ctx(0))
    assert len(d._storage.grad.arena(gpu_ctx(0), np.float32).segments()) == 1
    for p in d.values():
        np.testing.assert_array_equal(backend.to_host(p.data()), np.ones(p.shape, np.float32))
        if p.grad_req != "null":
            assert d._storage.grad.owns(gpu_ctx(0), p.grad())
            backend.copy_into(p.grad(), np.full(p.shape, 5.0, np.float32))
    d.zero_grad()
    assert all(not backend.to_host(p.grad()).any() for p in d.values() if p.grad_req != "null")
    d["net_w0"].cast("float16")
    w0 = d["net_w0"]
    assert backend.to_host(w0.data()).dtype == np.float16
    assert d._storage.data.owns(gpu_ctx(0), w0.data())
    d.reset_ctx(cpu(0))
    np.testing.assert_array_equal(d["net_w3"].data(), np.ones((3, 2), np.float32))
    assert d._storage.data.owns(cpu(0), d["net_w3"].data())
