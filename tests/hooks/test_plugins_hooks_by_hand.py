"""The hook examples of docs/plugins.md, registered by hand, do what the page says."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import paramarena as pa
from paramarena import hookimpl, storage
from paramarena.errors import PluginConflictError, PluginError
from paramarena.hooks.manager import get_plugin_manager, get_storage_spec, invalidate_caches
from paramarena.hooks.records import InitializerSpec
from paramarena.init import Initializer
from paramarena.testing import InitializerTests


class TruncNormal(Initializer):
    """N(0, sigma) clipped to two sigmas (the docs' example)."""

    def __init__(self, sigma: float = 0.02) -> None:
        super().__init__(sigma=sigma)
        self.sigma = sigma

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        self._fill_normal(desc, arr, 0.0, self.sigma)
        arr.clip(-2 * self.sigma, 2 * self.sigma, out=arr)


def _plugin(name: str, **hooks: Any) -> types.SimpleNamespace:
    plugin = types.SimpleNamespace(**{k: hookimpl(v) for k, v in hooks.items()})
    get_plugin_manager().register(plugin, name=name)
    invalidate_caches()
    return plugin


def _trunc_plugin() -> None:
    def paramarena_initializers() -> Any:
        yield InitializerSpec("truncnormal", TruncNormal, aliases=("trunc_normal",))

    _plugin("truncplugin", paramarena_initializers=paramarena_initializers)


@pytest.mark.usefixtures("paramarena_fresh_plugin_manager")
def test_initializer_plugin_found_by_name_and_alias() -> None:
    _trunc_plugin()
    params = pa.ParameterDict("t_")
    w = params.get("weight", shape=(64, 32), init="trunc_normal")
    params.initialize(seed=0)
    assert np.abs(w.data()).max() <= 0.04
    assert w.data().std() > 0.005
    assert isinstance(pa.init.create('["truncnormal", {"sigma": 0.5}]'), TruncNormal)


@pytest.mark.usefixtures("paramarena_fresh_plugin_manager")
class TestTruncNormalConformance(InitializerTests):
    @pytest.fixture
    def initializer(self) -> Any:
        _trunc_plugin()
        return TruncNormal(0.1)


@pytest.mark.usefixtures("paramarena_fresh_plugin_manager")
def test_conflicting_initializer_names_name_both_plugins() -> None:
    _trunc_plugin()

    def paramarena_initializers() -> Any:
        yield InitializerSpec("truncnormal", TruncNormal)

    _plugin("otherplugin", paramarena_initializers=paramarena_initializers)
    with pytest.raises(PluginConflictError) as info:
        pa.init.create("truncnormal")
    assert "'truncplugin'" in str(info.value)
    assert "'otherplugin'" in str(info.value)
    get_plugin_manager().set_blocked("otherplugin")
    invalidate_caches()
    assert isinstance(pa.init.create("truncnormal"), TruncNormal)


@pytest.mark.usefixtures("paramarena_fresh_plugin_manager")
def test_resolve_storage_hook_routes_suffixless_uris(tmp_path: Path) -> None:
    def paramarena_resolve_storage(uri: str, mode: str) -> Any:
        if Path(uri).name.startswith("ckpt-step"):
            return get_storage_spec("npz")
        return None

    _plugin("router", paramarena_resolve_storage=paramarena_resolve_storage)
    target = tmp_path / "ckpt-step100"
    storage.save(target, {"w": np.ones(3, np.float32)})
    assert storage.inspect(target).format == "npz"
    assert storage.resolve(tmp_path / "other.params").name == "mxnet"


@pytest.mark.usefixtures("paramarena_fresh_plugin_manager")
def test_resolve_storage_returning_garbage_is_plugin_error() -> None:
    _plugin("bad", paramarena_resolve_storage=lambda uri, mode: "npz")
    with pytest.raises(PluginError, match="StorageSpec"):
        storage.resolve("x.npz")


@pytest.mark.usefixtures("paramarena_fresh_plugin_manager")
def test_parameter_initialized_event() -> None:
    seen: list[tuple[str, tuple[int, ...], list[Any]]] = []

    def paramarena_parameter_initialized(parameter: Any, ctx: list[Any]) -> None:
        seen.append((parameter.name, tuple(parameter.shape), ctx))

    _plugin("watcher", paramarena_parameter_initialized=paramarena_parameter_initialized)
    params = pa.ParameterDict("ev_")
    params.get("weight", shape=(2, 3))
    params.initialize(ctx=pa.cpu(0), seed=0)
    params.initialize(ctx=pa.cpu(0), seed=1, force_reinit=True)
    assert seen == [("ev_weight", (2, 3), [pa.cpu(0)])] * 2


@pytest.mark.usefixtures("paramarena_fresh_plugin_manager")
def test_resolve_shared_hook() -> None:
    mine = pa.ParameterDict("dec_")
    mine.get("weight", shape=(3, 3))

    def paramarena_resolve_shared(name: str) -> Any:
        return mine if name == "handplugin:decoder" else None

    _plugin("handplugin", paramarena_resolve_shared=paramarena_resolve_shared)
    user = pa.ParameterDict("dec_", shared="handplugin:decoder")
    assert user.get("weight") is mine["dec_weight"]
