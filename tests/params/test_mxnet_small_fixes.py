"""Issue 12.5: the small MXNet migration surprises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import paramarena as pa
from paramarena import errors


def test_constant_out_of_range_for_uint8_is_a_clear_error() -> None:
    p = pa.Parameter("u", shape=(3,), dtype="uint8", init=pa.init.Constant(-1))
    with pytest.raises(errors.ParameterValueError, match=r"-1 .*uint8 Parameter 'u'.*255"):
        p.initialize()
    q = pa.Parameter("i", shape=(2,), dtype="int8", init=pa.init.Constant([1, 300]))
    with pytest.raises(errors.ParameterValueError, match="300"):
        q.initialize()
    ok = pa.Parameter("u", shape=(3,), dtype="uint8", init=pa.init.Constant(255))
    ok.initialize()
    assert ok.data().tolist() == [255, 255, 255]


def test_nul_in_a_name_is_refused_on_save(tmp_path: Path) -> None:
    params = pa.ParameterDict("net_")
    params.get("w\x00tail", shape=(2,), init="zeros")
    params.initialize()
    with pytest.raises(errors.ParameterValueError, match=r"'net_w\\x00tail'.*NUL"):
        params.save(tmp_path / "x.params")
    assert not (tmp_path / "x.params").exists()


def test_messages_point_at_what_paramarena_has(tmp_path: Path) -> None:
    p = pa.Parameter("w", shape=(2,))
    with pytest.raises(errors.NotInitializedError) as not_init:
        p.data()
    d = pa.Parameter("d", shape=(0, 2), allow_deferred_init=True)
    d.initialize()
    with pytest.raises(errors.DeferredInitializationError) as deferred:
        d.data()
    src = pa.ParameterDict("a_")
    src.get("w", shape=(2,), init="zeros")
    src.initialize()
    src.save(tmp_path / "a.params")
    dst = pa.ParameterDict("b_")
    dst.get("w", shape=(2,))
    with pytest.raises(errors.MissingParameterError) as missing:
        dst.load(tmp_path / "a.params")
    with pytest.raises(errors.UnexpectedParameterError) as extra:
        dst.load(tmp_path / "a.params", allow_missing=True)
    with pytest.raises(errors.ParameterValueError) as strip:
        src.save(tmp_path / "b.params", strip_prefix="x_")
    for info in (not_init, deferred, missing, extra, strip):
        text = str(info.value)
        for stale in ("Block", "Trainer", "mxnet.io", "forward pass", "name_scope", "in_units"):
            assert stale not in text, (stale, text)
        assert "prefix.For" not in text
    assert "rename=" in str(missing.value)
    assert "match='order'" in str(extra.value)


def test_set_data_shape_message_names_expected_then_given() -> None:
    p = pa.Parameter("w", shape=(3,), init="zeros")
    p.initialize()
    expected_then_given = r"expected shape \(3,\).*given shape \(2,\)"
    with pytest.raises(errors.ShapeMismatchError, match=expected_then_given):
        p.set_data(np.zeros(2))


def test_mxnet_context_names() -> None:
    assert str(pa.cpu_pinned(1)) == "cpu_pinned(1)"
    assert str(pa.cpu_shared()) == "cpu_shared(0)"
    assert isinstance(pa.num_gpus(), int)
    assert pa.num_gpus() >= 0
    assert pa.Context.default_ctx == pa.cpu(0)
    with pa.cpu(3):
        assert pa.Context.default_ctx == pa.cpu(3)
    pa.Context.default_ctx = pa.cpu(1)
    try:
        assert pa.current_context() == pa.cpu(1)
    finally:
        pa.Context.default_ctx = pa.cpu(0)


def test_num_gpus_is_zero_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from paramarena.devices import gpu

    monkeypatch.setattr(gpu, "_cuda_available", lambda: (False, "no"))
    assert pa.num_gpus() == 0
