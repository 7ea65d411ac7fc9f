"""``DeviceTests``: the conformance suite every device backend should pass.

Subclass it and give a ``device_context`` fixture returning the :class:`~paramarena.Context`
to test (skip inside the fixture when the device is not present)::

    import pytest
    import paramarena as pa
    from paramarena.testing import DeviceTests

    class TestMyDevice(DeviceTests):
        @pytest.fixture
        def device_context(self):
            return pa.Context("mydev", 0)

The suite talks to the backend registered for ``device_context.device_type`` through
:func:`paramarena.hooks.manager.get_device_spec` and reads every result back with ``to_host``, so it
works for any array type the backend hands out.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from paramarena.testing.storage_suite import arrays_equal, sample_array

__all__ = ["DeviceTests"]

_FLOATS = ("float32", "float64", "float16", "bfloat16")


def _dtype(name: str) -> np.dtype[Any]:
    if name == "bfloat16":
        import ml_dtypes

        bf16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bf16
    return np.dtype(name)


class DeviceTests:
    """Conformance tests for a device backend; subclass and provide ``device_context``.

    Capabilities (class attributes to override)
    -------------------------------------------
    supported_dtypes : tuple of str
        Logical dtypes the backend holds; the suite round-trips each one.
    invalid_device_id : int or None
        A device id that ``check`` must refuse with ``DeviceUnavailableError`` (``None``:
        every id is accepted, as for the CPU).
    """

    supported_dtypes: ClassVar[tuple[str, ...]] = (
        *_FLOATS,
        "int8",
        "int32",
        "int64",
        "uint8",
        "bool",
    )
    invalid_device_id: ClassVar[int | None] = None

    @pytest.fixture
    def device_context(self) -> Any:
        """Return the context to test; override in the subclass."""
        raise NotImplementedError("define a `device_context` fixture returning a Context")

    def _backend(self, ctx: Any) -> Any:
        from paramarena.hooks.manager import get_device_spec

        return get_device_spec(ctx.device_type).backend

    # ------------------------------------------------------------------ registration

    def test_backend_registered_and_usable(self, device_context: Any) -> None:
        """The device type has a registered backend that accepts the context's id."""
        from paramarena.hooks.manager import get_device_spec
        from paramarena.hooks.records import DeviceBackend

        spec = get_device_spec(device_context.device_type)
        assert isinstance(spec.backend, DeviceBackend)
        spec.backend.check(device_context.device_id)

    def test_invalid_device_refused(self, device_context: Any) -> None:
        """``check`` refuses ``invalid_device_id`` with DeviceUnavailableError."""
        from paramarena.errors import DeviceUnavailableError

        if self.invalid_device_id is None:
            pytest.skip("every device id is accepted by this backend")
        with pytest.raises(DeviceUnavailableError):
            self._backend(device_context).check(self.invalid_device_id)

    # ------------------------------------------------------------------ transfers

    @pytest.mark.parametrize(
        "dtype_name",
        ["float32", "float64", "float16", "bfloat16", "int8", "int32", "int64", "uint8", "bool"],
    )
    def test_host_roundtrip(self, device_context: Any, dtype_name: str) -> None:
        """``from_host`` then ``to_host`` gives back the same bytes, per dtype."""
        if dtype_name not in self.supported_dtypes:
            pytest.skip(f"{device_context.device_type} does not hold {dtype_name}")
        backend = self._backend(device_context)
        host = sample_array(dtype_name, (5, 7))
        dev = backend.from_host(host, device_context.device_id)
        back = backend.to_host(dev)
        assert isinstance(back, np.ndarray)
        assert arrays_equal(host, back)

    @pytest.mark.parametrize("shape", [(), (0,), (3, 0), (1,), (2, 3, 4)])
    def test_host_roundtrip_shapes(self, device_context: Any, shape: tuple[int, ...]) -> None:
        """0-d, empty and n-d arrays survive a trip to the device and back."""
        backend = self._backend(device_context)
        host = sample_array("float32", shape)
        back = backend.to_host(backend.from_host(host, device_context.device_id))
        assert back.shape == shape
        assert arrays_equal(host, back)

    def test_from_host_copies(self, device_context: Any) -> None:
        """``from_host`` and ``to_host`` copy: later writes to either side do not leak."""
        backend = self._backend(device_context)
        host = np.arange(6, dtype=np.float32)
        dev = backend.from_host(host, device_context.device_id)
        host[:] = -1
        np.testing.assert_array_equal(backend.to_host(dev), np.arange(6, dtype=np.float32))
        back = backend.to_host(dev)
        back[:] = 7
        np.testing.assert_array_equal(backend.to_host(dev), np.arange(6, dtype=np.float32))

    def test_empty_shape_and_dtype(self, device_context: Any) -> None:
        """``empty`` allocates the requested shape and dtype."""
        backend = self._backend(device_context)
        for name in ("float32", "bfloat16", "int64"):
            if name not in self.supported_dtypes:
                continue
            arr = backend.empty((4, 2), _dtype(name), device_context.device_id)
            host = backend.to_host(arr)
            assert host.shape == (4, 2)
            assert host.dtype == _dtype(name)

    def test_copy_into_casts(self, device_context: Any) -> None:
        """``copy_into`` copies host data into a device array, casting to its dtype."""
        backend = self._backend(device_context)
        dst = backend.from_host(np.zeros((3, 4), np.float32), device_context.device_id)
        src = np.arange(12, dtype=np.float64).reshape(3, 4) / 4
        backend.copy_into(dst, src)
        np.testing.assert_array_equal(backend.to_host(dst), src.astype(np.float32))

    def test_zero_many(self, device_context: Any) -> None:
        """``zero`` clears every array in the list (empty arrays included)."""
        backend = self._backend(device_context)
        arrays = [
            backend.from_host(sample_array(n, (3, 5), i), device_context.device_id)
            for i, n in enumerate(("float32", "float64", "int32"))
        ]
        arrays.append(backend.from_host(np.ones((0,), np.float32), device_context.device_id))
        backend.zero(arrays)
        for arr in arrays:
            host = backend.to_host(arr)
            assert not host.any()

    @pytest.mark.parametrize(
        ("src_name", "dst_name"),
        [
            ("float32", "float16"),
            ("float32", "bfloat16"),
            ("float16", "float32"),
            ("bfloat16", "float32"),
            ("float32", "float64"),
            ("float64", "float32"),
        ],
    )
    def test_cast_matches_numpy(self, device_context: Any, src_name: str, dst_name: str) -> None:
        """``cast`` gives numpy's ``astype`` result (nearest even) and leaves the source."""
        if not {src_name, dst_name} <= set(self.supported_dtypes):
            pytest.skip("dtype not held by this backend")
        backend = self._backend(device_context)
        host = sample_array(src_name, (9, 11))
        dev = backend.from_host(host, device_context.device_id)
        got = backend.to_host(backend.cast(dev, _dtype(dst_name)))
        expected = host.astype(_dtype(dst_name))
        assert got.dtype == expected.dtype
        # NaN payloads may differ: compare NaN positions, then the other bits exactly.
        nan = np.isnan(expected.astype(np.float64))
        np.testing.assert_array_equal(np.isnan(got.astype(np.float64)), nan)
        assert arrays_equal(expected[~nan], got[~nan])
        # the source is untouched
        assert arrays_equal(host, backend.to_host(dev))

    # ------------------------------------------------------------------ through ParameterDict

    def test_initialize_matches_cpu(self, device_context: Any) -> None:
        """``ParameterDict.initialize`` on the device gives the CPU's values bit for bit."""
        import paramarena as pa

        on_device = pa.ParameterDict("dev_")
        on_device.get("weight", shape=(16, 8))
        on_device.initialize(pa.init.Uniform(), ctx=device_context, seed=5)
        on_cpu = pa.ParameterDict("dev_")
        on_cpu.get("weight", shape=(16, 8))
        on_cpu.initialize(pa.init.Uniform(), ctx=pa.cpu(), seed=5)
        backend = self._backend(device_context)
        got = backend.to_host(on_device["dev_weight"].data(device_context))
        np.testing.assert_array_equal(got, on_cpu["dev_weight"].data(pa.cpu()))

    def test_zero_grad(self, device_context: Any) -> None:
        """``ParameterDict.zero_grad`` clears gradients held on the device."""
        import paramarena as pa

        params = pa.ParameterDict("g_")
        params.get("weight", shape=(4, 3))
        params.get("bias", shape=(4,))
        params.initialize(ctx=device_context, seed=1)
        backend = self._backend(device_context)
        for param in params.values():
            backend.copy_into(
                param.grad(device_context),
                np.ones(backend.to_host(param.grad(device_context)).shape, np.float32),
            )
        params.zero_grad()
        for param in params.values():
            assert not backend.to_host(param.grad(device_context)).any()
