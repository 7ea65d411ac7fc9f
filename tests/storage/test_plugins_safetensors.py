"""The safetensors plugin seen from the core: install hint without it, suffix routing with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import paramarena as pa
from paramarena import storage
from paramarena.errors import UnknownNameError


@pytest.mark.usefixtures("paramarena_no_plugin_autoload")
def test_without_plugin_error_names_package(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="paramarena-safetensors") as info:
        storage.resolve(str(tmp_path / "m.safetensors"), "w")
    assert ".safetensors" in str(info.value)
    assert "npz" in str(info.value)  # the registered formats are listed


@pytest.mark.usefixtures("paramarena_no_plugin_autoload")
def test_without_plugin_parameter_dict_save_names_package(tmp_path: Path) -> None:
    params = pa.ParameterDict("net_")
    params.get("weight", shape=(2, 2))
    params.initialize(seed=0)
    with pytest.raises(UnknownNameError, match="paramarena-safetensors"):
        params.save(str(tmp_path / "m.safetensors"))
    with pytest.raises(UnknownNameError, match="paramarena-safetensors"):
        storage.load(tmp_path / "m.safetensors", format="safetensors")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.usefixtures("paramarena_fresh_plugin_manager")
def test_with_plugin_suffix_routes_to_it(tmp_path: Path) -> None:
    pytest.importorskip(
        "paramarena_safetensors", reason="pip install ./plugins/paramarena-safetensors"
    )
    params = pa.ParameterDict("net_")
    params.get("weight", shape=(2, 3))
    params.initialize(seed=0)
    path = str(tmp_path / "m.safetensors")
    params.save(path)
    assert storage.inspect(path).format == "safetensors"
    np.testing.assert_array_equal(storage.load(path)["net_weight"], params["net_weight"].data())
