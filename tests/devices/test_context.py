"""Contexts as used by parameters: copies per context, lookup aliases, current context."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from paramarena import errors
from paramarena.devices.context import Context, cpu, cpu_pinned, cpu_shared, current_context, gpu
from paramarena.params.checks import build_ctx_map, ctx_lookup
from paramarena.params.parameter import Parameter


def test_context_basics() -> None:
    assert str(cpu(0)) == "cpu(0)"
    assert str(gpu(3)) == "gpu(3)"
    assert str(cpu_pinned(1)) == "cpu_pinned(1)"
    assert repr(cpu_shared(2)) == "cpu_shared(2)"
    assert Context("cpu", 1) == cpu(1)
    assert Context(cpu(1)) == cpu(1)
    assert hash(Context("cpu", 1)) == hash(cpu(1))
    assert cpu(0) != cpu(1)
    assert cpu(0) != cpu_pinned(0)
    assert cpu(0) != "cpu(0)"
    assert gpu(0).is_gpu
    assert not cpu(0).is_gpu
    assert cpu_pinned(4).device_type == "cpu_pinned"


def test_unknown_device_type() -> None:
    with pytest.raises(errors.UnknownNameError, match="'tpu'") as ei:
        Context("tpu")
    assert isinstance(ei.value, KeyError)
    with pytest.raises(errors.UnknownNameError):
        Context("cpu", -1)


def test_current_context_is_thread_local() -> None:
    assert current_context() == cpu(0)
    seen: list[Context] = []
    with cpu(3):
        assert current_context() == cpu(3)
        t = threading.Thread(target=lambda: seen.append(current_context()))
        t.start()
        t.join()
        with cpu(4):
            assert current_context() == cpu(4)
        assert current_context() == cpu(3)
    assert current_context() == cpu(0)
    assert seen == [cpu(0)]


def test_ctx_map_layout() -> None:
    assert build_ctx_map([cpu(2), cpu(0)]) == [[], [1, None, 0]]
    assert build_ctx_map([gpu(1), cpu(0)]) == [[None, 0], [1]]
    m = build_ctx_map([cpu(0), cpu_pinned(0)])  # same slot: last wins
    assert m == [[], [1]]
    assert ctx_lookup(m, cpu_shared(0)) == 1
    assert ctx_lookup(m, cpu(5)) is None
    assert ctx_lookup(m, gpu(0)) is None


def test_cpu0_and_cpu1_are_distinct_copies() -> None:
    p = Parameter("w", shape=(3,))
    p.initialize(init="ones", ctx=[cpu(0), cpu(1)])
    p.data(cpu(0))[...] = 2
    np.testing.assert_array_equal(p.data(cpu(1)), np.ones(3))
    assert p.list_ctx() == [cpu(0), cpu(1)]


def test_pinned_context_parameter_lives_on_cpu_backend() -> None:
    p = Parameter("w", shape=(2,))
    p.initialize(init="ones", ctx=cpu_pinned(1))
    assert isinstance(p.data(), np.ndarray)
    assert p.data(cpu(1)) is p.data(cpu_pinned(1))
    assert p.list_ctx() == [cpu_pinned(1)]


class _FakeDevice:
    """A numpy-backed stand-in for a GPU backend that records what it is asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.zero_calls: list[int] = []

    def check(self, device_id: int) -> None:
        if device_id >= 2:
            raise errors.DeviceUnavailableError(f"fake gpu({device_id}) does not exist")

    def empty(self, shape: tuple[int, ...], dtype: Any, device_id: int) -> np.ndarray:
        self.calls.append(("empty", device_id))
        return np.empty(shape, dtype)

    def from_host(self, host: np.ndarray, device_id: int) -> np.ndarray:
        self.calls.append(("from_host", device_id))
        return np.array(host, copy=True)

    def to_host(self, array: Any) -> np.ndarray:
        self.calls.append(("to_host", -1))
        return np.array(array, copy=True)

    def copy_into(self, dst: Any, src: Any) -> None:
        self.calls.append(("copy_into", -1))
        np.copyto(dst, src, casting="unsafe")

    def zero(self, arrays: Any) -> None:
        self.zero_calls.append(len(arrays))
        for a in arrays:
            a[...] = 0

    def cast(self, array: Any, dtype: Any) -> np.ndarray:
        self.calls.append(("cast", -1))
        return np.asarray(array).astype(dtype)


@pytest.fixture
def fake_gpu(fresh_plugin_manager: None) -> _FakeDevice:
    from paramarena.hooks.manager import get_plugin_manager, invalidate_caches
    from paramarena.hooks.records import DeviceSpec
    from paramarena.hooks.specs import hookimpl

    device = _FakeDevice()

    class Plugin:
        @hookimpl
        def paramarena_devices(self) -> Any:
            yield DeviceSpec("gpu", device, "fake gpu for tests")

    pm = get_plugin_manager()
    if pm.get_plugin("paramarena.gpu") is not None:
        pm.unregister(name="paramarena.gpu")
    pm.register(Plugin(), name="h1-fake-gpu")
    invalidate_caches()
    return device


def test_copies_go_through_each_contexts_backend(fake_gpu: _FakeDevice) -> None:
    from paramarena.params.parameter_dict import ParameterDict

    d = ParameterDict()
    p = d.get("w", shape=(2,))
    d.initialize("ones", ctx=[cpu(0), gpu(0), gpu(1)])
    # each gpu context gets its arena segment from its own device id, then a host copy into it
    assert ("empty", 0) in fake_gpu.calls
    assert ("empty", 1) in fake_gpu.calls
    assert ("copy_into", -1) in fake_gpu.calls
    assert ("from_host", 0) not in fake_gpu.calls
    assert p.data(gpu(1)) is p.list_data()[2]
    for g in p.list_grad():
        g[...] = 3
    fake_gpu.zero_calls.clear()
    d.zero_grad()
    assert fake_gpu.zero_calls == [1, 1]  # one call per gpu context; cpu(0) via the cpu backend
    assert all(np.all(g == 0) for g in p.list_grad())
    p.set_data(np.full(2, 5.0))
    assert ("copy_into", -1) in fake_gpu.calls
    p.data(gpu(0))[...] = 7  # average of 5, 7, 5
    p.reset_ctx(cpu(0))
    assert ("to_host", -1) in fake_gpu.calls
    np.testing.assert_allclose(p.data(), np.full(2, 17 / 3), rtol=1e-6)
    p.reset_ctx(gpu(1))
    fake_gpu.calls.clear()
    p.cast("float16")  # into a new view of the float16 arena of gpu(1), cast by copy_into
    assert fake_gpu.calls.count(("copy_into", -1)) == 2  # data and grad
    assert ("empty", 1) in fake_gpu.calls
    assert p.data().dtype == np.float16
    np.testing.assert_allclose(p.data(), np.full(2, 17 / 3), rtol=1e-3)


def test_unavailable_device_leaves_parameter_uninitialized(fake_gpu: _FakeDevice) -> None:
    p = Parameter("w", shape=(2,))
    with pytest.raises(errors.DeviceUnavailableError, match=r"gpu\(5\)"):
        p.initialize("ones", ctx=[cpu(0), gpu(5)])
    assert p._data is None
    assert p._deferred_init == ()
    with pytest.raises(errors.NotInitializedError):
        p.list_ctx()
