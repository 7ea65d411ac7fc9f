"""Contexts as used by parameters: copies per context, lookup aliases, current context."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from paramdict import errors
from paramdict.context import Context, cpu, cpu_pinned, cpu_shared, current_context, gpu
from paramdict.parameter import Parameter
from paramdict.parameter_checks import build_ctx_map, ctx_lookup


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
