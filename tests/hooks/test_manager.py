"""The plugin manager: built-ins, entry points, autoload switch, broken plugins, conflicts."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from paramarena.errors import (
    ParamarenaError,
    PluginConflictError,
    PluginError,
    PluginLoadWarning,
    UnknownNameError,
)
from paramarena.hooks import manager


@pytest.fixture
def plugin_dir(tmp_path: Path, fresh_plugin_manager: None) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("pdtest_")]:
        del sys.modules[name]


def _write_plugin(directory: Path, module: str, body: str) -> None:
    (directory / f"{module}.py").write_text(textwrap.dedent(body))


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *pairs: tuple[str, str]) -> None:
    eps = [EntryPoint(name=n, value=v, group="paramarena") for n, v in pairs]

    def fake(*, group: str) -> list[EntryPoint]:
        assert group == "paramarena"
        return eps

    monkeypatch.setattr(manager, "entry_points", fake)


STORAGE_PLUGIN = """
    from paramarena.hooks.specs import hookimpl
    from paramarena.hooks.records import StorageSpec

    class Backend:
        def save(self, uri, arrays, **options): pass
        def load(self, uri, *, names=None, **options): return {}
        def inspect(self, uri, **options): raise NotImplementedError
        def verify(self, uri, **options): raise NotImplementedError

    @hookimpl
    def paramarena_storage_backends():
        yield StorageSpec("{name}", Backend(), suffixes=("{suffix}",))
"""


def _storage_plugin(name: str, suffix: str) -> str:
    return STORAGE_PLUGIN.replace("{name}", name).replace("{suffix}", suffix)


def test_builtins_are_registered_first() -> None:
    pm = manager.get_plugin_manager()
    names = [name for name, _ in pm.list_name_plugin()]
    builtin = list(manager.BUILTIN_PLUGINS)
    assert names[: len(builtin)] == builtin
    assert "cpu" in manager.device_specs()


def test_entry_point_plugin_is_loaded_under_its_namespace(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_plugin(plugin_dir, "pdtest_good", _storage_plugin(name="fancy", suffix=".fancy"))
    _fake_entry_points(monkeypatch, ("goodplugin", "pdtest_good"))
    spec = manager.get_storage_spec("fancy")
    assert spec.suffixes == (".fancy",)
    assert manager.storage_plugin_of("fancy") == "goodplugin"
    assert manager.plugin_namespace("goodplugin") == "goodplugin"
    assert manager.plugin_namespace("paramarena.npz") == "paramarena"


def test_autoload_can_be_disabled(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_plugin(plugin_dir, "pdtest_off", _storage_plugin(name="off", suffix=".off"))
    _fake_entry_points(monkeypatch, ("offplugin", "pdtest_off"))
    monkeypatch.setenv("PARAMARENA_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(UnknownNameError, match="Unknown storage format 'off'"):
        manager.get_storage_spec("off")
    assert "offplugin" not in dict(manager.get_plugin_manager().list_name_plugin())


def test_broken_plugin_warns_and_is_skipped(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_plugin(plugin_dir, "pdtest_broken", "raise ImportError('missing dependency xyz')\n")
    _write_plugin(plugin_dir, "pdtest_fine", _storage_plugin(name="fine", suffix=".fine"))
    _fake_entry_points(monkeypatch, ("broken", "pdtest_broken"), ("fine", "pdtest_fine"))
    with pytest.warns(PluginLoadWarning, match=r"'broken'.*missing dependency xyz"):
        pm = manager.get_plugin_manager()
    assert pm.get_plugin("broken") is None
    assert manager.get_storage_spec("fine").name == "fine"


def test_two_plugins_claiming_one_name_is_an_error_naming_both(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_plugin(plugin_dir, "pdtest_a", _storage_plugin(name="dup", suffix=".a"))
    _write_plugin(plugin_dir, "pdtest_b", _storage_plugin(name="dup", suffix=".b"))
    _fake_entry_points(monkeypatch, ("plug_a", "pdtest_a"), ("plug_b", "pdtest_b"))
    with pytest.raises(PluginConflictError) as info:
        manager.storage_specs()
    message = str(info.value)
    assert "'dup'" in message
    assert "'plug_a'" in message
    assert "'plug_b'" in message
    assert isinstance(info.value, ParamarenaError)
    assert isinstance(info.value, RuntimeError)


def test_plugin_conflicting_with_builtin_name(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_plugin(plugin_dir, "pdtest_npz", _storage_plugin(name="npz", suffix=".npz"))
    _fake_entry_points(monkeypatch, ("mynpz", "pdtest_npz"))
    with pytest.raises(PluginConflictError, match=r"'paramarena\.npz' and 'mynpz'"):
        manager.get_storage_spec("npz")


def test_blocked_plugin_is_not_loaded(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_plugin(plugin_dir, "pdtest_a2", _storage_plugin(name="dup2", suffix=".a"))
    _write_plugin(plugin_dir, "pdtest_b2", _storage_plugin(name="dup2", suffix=".b"))
    _fake_entry_points(monkeypatch, ("plug_a2", "pdtest_a2"), ("plug_b2", "pdtest_b2"))
    pm = manager.get_plugin_manager()
    pm.unregister(name="plug_b2")
    pm.set_blocked("plug_b2")
    manager.invalidate_caches()
    assert manager.get_storage_spec("dup2").suffixes == (".a",)


def test_plugin_raising_inside_hook_is_reported(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_plugin(
        plugin_dir,
        "pdtest_raises",
        """
        from paramarena.hooks.specs import hookimpl

        @hookimpl
        def paramarena_devices():
            raise ValueError("boom")
        """,
    )
    _fake_entry_points(monkeypatch, ("raiser", "pdtest_raises"))
    with pytest.raises(PluginError, match=r"'raiser' failed in paramarena_devices\(\): .*boom"):
        manager.device_specs()


@pytest.mark.usefixtures("fresh_plugin_manager")
def test_unknown_names_list_valid_names_and_install_hints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PARAMARENA_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(UnknownNameError) as info:
        manager.get_storage_spec("safetensors")
    message = str(info.value)
    assert "'npz'" in message
    assert "paramarena-safetensors" in message
    assert isinstance(info.value, KeyError)
    assert str(info.value).startswith("Unknown storage format")  # not repr-quoted

    with pytest.raises(UnknownNameError, match=r"Unknown device type 'tpu'.*'cpu'"):
        manager.get_device_spec("tpu")
    with pytest.raises(UnknownNameError, match=r"Unknown initializer 'nonexistent'.*'uniform'"):
        manager.get_initializer_spec("nonexistent")


def test_cpu_aliases_resolve_to_cpu_backend() -> None:
    cpu = manager.get_device_spec("cpu")
    assert manager.get_device_spec("cpu_pinned") is cpu
    assert manager.get_device_spec("cpu_shared") is cpu


def test_initializer_lookup_is_case_insensitive() -> None:
    assert manager.get_initializer_spec("XaViEr") is manager.get_initializer_spec("xavier")
