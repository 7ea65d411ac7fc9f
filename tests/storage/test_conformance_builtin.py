"""The built-in backends run the conformance suites of paramarena.testing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import paramarena as pa
from paramarena.testing import DeviceTests, InitializerTests, StorageTests


def _has_format(name: str) -> bool:
    from paramarena.hooks.manager import storage_specs

    return name in storage_specs()


class TestNpzConformance(StorageTests):
    detects_bit_flips = True  # every entry carries a CRC-32

    @pytest.fixture
    def storage_format(self) -> str:
        return "npz"

    @pytest.fixture
    def storage_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "ckpt.npz")


class TestMXNetParamsConformance(StorageTests):
    # MXNet 1.9.1 loads only these type flags (int16/uint16/uint32/uint64 are refused).
    supported_dtypes = (
        "float32",
        "float64",
        "float16",
        "bfloat16",
        "int8",
        "int32",
        "int64",
        "uint8",
        "bool",
    )

    @pytest.fixture
    def storage_format(self) -> str:
        return "mxnet"

    @pytest.fixture
    def storage_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "model.params")


class TestZarrConformance(StorageTests):
    detects_bit_flips = True
    has_commit_protocol = True

    @pytest.fixture
    def storage_format(self) -> str:
        if not _has_format("zarr"):
            pytest.skip("the zarr backend (paramarena.storage.zarr.backend) is not registered yet")
        return "zarr"

    @pytest.fixture
    def storage_uri(self, tmp_path: Path, storage_format: str) -> str:
        return str(tmp_path / "ckpt.zarr")

    def uncommit(self, uri: str) -> None:
        from paramarena.storage.zarr import backend as zarr_store

        marker = Path(uri) / getattr(zarr_store, "COMMIT_MARKER", "COMMITTED")
        marker.unlink()


class TestZarrZipConformance(TestZarrConformance):
    """The same suite on a one-file ``.zarr.zip`` archive."""

    @pytest.fixture
    def storage_uri(self, tmp_path: Path, storage_format: str) -> str:
        return str(tmp_path / "ckpt.zarr.zip")

    def uncommit(self, uri: str) -> None:
        import zipfile

        with zipfile.ZipFile(uri) as old:
            members = {n: old.read(n) for n in old.namelist() if n != "COMMIT"}
        with zipfile.ZipFile(uri, "w") as new:
            for name, data in members.items():
                new.writestr(name, data)


class TestCPUDeviceConformance(DeviceTests):
    @pytest.fixture
    def device_context(self) -> Any:
        return pa.cpu()


class TestUniformConformance(InitializerTests):
    @pytest.fixture
    def initializer(self) -> Any:
        return pa.init.Uniform(0.5)


class TestNormalConformance(InitializerTests):
    @pytest.fixture
    def initializer(self) -> Any:
        return pa.init.Normal(0.2)


class TestXavierConformance(InitializerTests):
    shape = (6, 4, 3, 3)

    @pytest.fixture
    def initializer(self) -> Any:
        return pa.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)


class TestOrthogonalConformance(InitializerTests):
    @pytest.fixture
    def initializer(self) -> Any:
        return pa.init.Orthogonal()


class TestConstantConformance(InitializerTests):
    is_random = False

    @pytest.fixture
    def initializer(self) -> Any:
        return pa.init.Constant(0.25)


class TestZeroConformance(InitializerTests):
    is_random = False

    @pytest.fixture
    def initializer(self) -> Any:
        return pa.init.Zero()


def test_importing_the_suites_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, paramarena.testing, paramarena.testing.pytest_plugin\n"
        "heavy = [m for m in ('numba', 'zarr') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_float32_work_does_not_import_ml_dtypes(tmp_path: Any) -> None:
    """ml_dtypes costs up to ~0.7 s to import (0.7.0): only bfloat16 work may pull it in."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, paramarena as pa\n"
        "d = pa.ParameterDict('n_')\n"
        "d.get('w', shape=(3, 4))\n"
        "d.initialize(pa.init.Xavier(), seed=0)\n"
        "d.zero_grad()\n"
        f"for name in ('a.params', 'a.npz', 'a.zarr'):\n"
        f"    path = {str(tmp_path)!r} + '/' + name\n"
        "    d.save(path)\n"
        "    d.load(path)\n"
        "print('ml_dtypes' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
