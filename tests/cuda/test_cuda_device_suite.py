"""The DeviceTests conformance suite against the gpu backend (cudasim or a real GPU)."""

from __future__ import annotations

import os

import pytest

from paramarena.devices import gpu
from paramarena.devices.context import Context
from paramarena.testing.device_suite import DeviceTests

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(
        not (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or gpu._cuda_available()[0]),
        reason="needs NUMBA_ENABLE_CUDASIM=1 or a GPU",
    ),
]


class TestGPUBackend(DeviceTests):
    invalid_device_id = 99

    @pytest.fixture
    def device_context(self):
        return Context("gpu", 0)
