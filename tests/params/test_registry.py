"""Registry of named ParameterDicts and ``ParameterDict(shared="namespace:name")``."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from paramarena import errors
from paramarena.hooks.manager import get_plugin_manager
from paramarena.hooks.specs import hookimpl
from paramarena.params import registry
from paramarena.params.parameter_dict import ParameterDict


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    for name in registry.names():
        registry.unregister(name)
    yield
    for name in registry.names():
        registry.unregister(name)


def test_register_resolve_names_unregister() -> None:
    enc = ParameterDict("enc_")
    registry.register("app:encoder", enc)
    registry.register("app:encoder", enc)  # same object again: no-op
    assert registry.names() == ["app:encoder"]
    assert registry.resolve("app:encoder") is enc
    assert registry.resolve("encoder") is enc  # bare name, unambiguous
    registry.unregister("app:encoder")
    assert registry.names() == []
    with pytest.raises(errors.RegistryError, match="not registered") as ei:
        registry.unregister("app:encoder")
    assert isinstance(ei.value, KeyError)


def test_shared_by_name() -> None:
    enc = ParameterDict("enc_")
    w = enc.get("weight", shape=(2,))
    registry.register("app:encoder", enc)
    dec = ParameterDict("enc_", shared="app:encoder")
    assert dec.get("weight") is w
    bare = ParameterDict("enc_", shared="encoder")
    assert bare.get("weight") is w


def test_weak_reference_drops_entry() -> None:
    enc = ParameterDict("enc_")
    registry.register("app:tmp", enc)
    assert registry.names() == ["app:tmp"]
    del enc
    gc.collect()
    assert registry.names() == []
    with pytest.raises(errors.RegistryError):
        registry.resolve("app:tmp")


def test_duplicate_name_for_other_dict() -> None:
    registry.register("app:x", a := ParameterDict("a_"))
    with pytest.raises(errors.RegistryError, match="already taken"):
        registry.register("app:x", ParameterDict("b_"))
    assert registry.resolve("app:x") is a


@pytest.mark.parametrize("name", ["nocolon", ":x", "ns:", "a:b:c"])
def test_malformed_names(name: str) -> None:
    with pytest.raises(errors.RegistryError, match="malformed"):
        registry.register(name, ParameterDict())


def test_register_type_checks() -> None:
    with pytest.raises(errors.ParameterTypeError, match="needs a ParameterDict"):
        registry.register("app:x", {})  # type: ignore[arg-type]
    with pytest.raises(errors.ParameterTypeError):
        registry.resolve(3)  # type: ignore[arg-type]


def test_ambiguous_and_unknown_bare_names() -> None:
    a, b = ParameterDict("a_"), ParameterDict("b_")
    registry.register("one:enc", a)
    registry.register("two:enc", b)
    with pytest.raises(errors.RegistryError, match="ambiguous") as ei:
        registry.resolve("enc")
    assert "'one:enc'" in str(ei.value)
    assert "'two:enc'" in str(ei.value)
    assert registry.resolve("two:enc") is b
    with pytest.raises(errors.RegistryError, match="no shared dict named 'dec'") as ei2:
        ParameterDict("x_", shared="dec")
    assert "'one:enc', 'two:enc'" in str(ei2.value)


def test_unknown_namespaced_name_lists_candidates() -> None:
    keep = ParameterDict()
    registry.register("app:enc", keep)
    with pytest.raises(errors.RegistryError) as ei:
        registry.resolve("app:dec")
    assert "no plugin resolved it" in str(ei.value)
    assert "'app:enc'" in str(ei.value)
    assert isinstance(ei.value, errors.ParamarenaError)


def test_hook_resolves_shared(fresh_plugin_manager: None) -> None:
    provided = ParameterDict("plug_")
    w = provided.get("w", shape=(1,))

    class Plugin:
        @hookimpl
        def paramarena_resolve_shared(self, name: str) -> ParameterDict | None:
            return provided if name == "plug:model" else None

    get_plugin_manager().register(Plugin(), name="h1-registry-test")
    assert registry.resolve("plug:model") is provided
    assert ParameterDict("plug_", shared="plug:model").get("w") is w
    with pytest.raises(errors.RegistryError):
        registry.resolve("plug:other")


def test_registry_wins_over_hook(fresh_plugin_manager: None) -> None:
    local = ParameterDict()

    class Plugin:
        @hookimpl
        def paramarena_resolve_shared(self, name: str) -> ParameterDict | None:
            return ParameterDict("other_")

    get_plugin_manager().register(Plugin(), name="h1-registry-test2")
    registry.register("ns:m", local)
    assert registry.resolve("ns:m") is local
    assert registry.resolve("ns:else").prefix == "other_"


def test_bad_hook_result(fresh_plugin_manager: None) -> None:
    class Plugin:
        @hookimpl
        def paramarena_resolve_shared(self, name: str) -> object:
            return "not a dict"

    get_plugin_manager().register(Plugin(), name="h1-registry-test3")
    with pytest.raises(errors.PluginError, match="expected a ParameterDict"):
        registry.resolve("ns:x")
