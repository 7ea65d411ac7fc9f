"""Named ParameterDicts by namespace, so ``ParameterDict(shared="namespace:name")`` works.

A dict is registered under ``"namespace:name"`` and held by a **weak** reference: when the
dict is garbage-collected its entry disappears. :func:`resolve` looks in the registry first,
then asks plugins through the ``paramarena_resolve_shared`` hook. A bare ``"name"`` (no
namespace) resolves when exactly one registered entry has that name.

>>> import paramarena as pa
>>> encoder = pa.ParameterDict("enc_")
>>> pa.registry.register("myapp:encoder", encoder)
>>> pa.ParameterDict("enc_", shared="myapp:encoder")._shared is encoder
True
>>> pa.registry.unregister("myapp:encoder")
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from paramarena.errors import ParameterTypeError, PluginError, RegistryError

if TYPE_CHECKING:
    from paramarena.params.parameter_dict import ParameterDict

__all__ = ["names", "register", "resolve", "unregister"]

_lock = threading.RLock()
_entries: dict[str, weakref.ref[ParameterDict]] = {}


def _split(name: str) -> tuple[str, str]:
    if not isinstance(name, str):
        raise ParameterTypeError(f"a registry name must be a str; got {type(name).__name__}.")
    namespace, sep, rest = name.partition(":")
    if not sep or not namespace or not rest or ":" in rest:
        raise RegistryError(
            f"registry name {name!r} is malformed: expected 'namespace:name' "
            "(one colon, both parts non-empty)."
        )
    return namespace, rest


def _live() -> dict[str, ParameterDict]:
    """Return the registered dicts that are still alive (dropping dead entries)."""
    alive: dict[str, ParameterDict] = {}
    for key, ref in list(_entries.items()):
        obj = ref()
        if obj is None:
            _entries.pop(key, None)
        else:
            alive[key] = obj
    return alive


def register(name: str, pdict: ParameterDict) -> None:
    """Register ``pdict`` under ``"namespace:name"`` (weakly: it is not kept alive).

    Registering the same object again under the same name is a no-op.

    Raises
    ------
    paramarena.errors.RegistryError
        ``name`` is malformed, or already names a different live dict.
    paramarena.errors.ParameterTypeError
        ``pdict`` is not a ParameterDict.
    """
    from paramarena.params.parameter_dict import ParameterDict

    _split(name)
    if not isinstance(pdict, ParameterDict):
        raise ParameterTypeError(
            f"registry.register({name!r}, ...) needs a ParameterDict; got {type(pdict).__name__}."
        )
    with _lock:
        existing = _live().get(name)
        if existing is not None and existing is not pdict:
            raise RegistryError(
                f"registry name {name!r} is already taken by another ParameterDict "
                f"(prefix {existing.prefix!r}); unregister it first."
            )

        def _drop(ref: weakref.ref[ParameterDict], key: str = name) -> None:
            with _lock:
                if _entries.get(key) is ref:
                    del _entries[key]

        _entries[name] = weakref.ref(pdict, _drop)


def unregister(name: str) -> None:
    """Remove ``name`` from the registry.

    Raises
    ------
    paramarena.errors.RegistryError
        ``name`` is not registered (the message lists the registered names).
    """
    with _lock:
        live = _live()
        if name not in live:
            raise RegistryError(
                f"cannot unregister {name!r}: not registered. Registered names: {_listing(live)}."
            )
        del _entries[name]


def names() -> list[str]:
    """Return the registered names of live dicts, sorted."""
    with _lock:
        return sorted(_live())


def _listing(live: dict[str, ParameterDict]) -> str:
    return ", ".join(repr(k) for k in sorted(live)) or "(none)"


def resolve(name: str) -> ParameterDict:
    """Return the dict registered as ``name``, else the one a plugin resolves it to.

    Parameters
    ----------
    name : str
        ``"namespace:name"``, or a bare ``"name"`` that exactly one registered entry has.

    Raises
    ------
    paramarena.errors.RegistryError
        Unknown or ambiguous name (the message lists the candidates).
    paramarena.errors.PluginError
        A ``paramarena_resolve_shared`` hook returned something that is not a ParameterDict.
    """
    if not isinstance(name, str):
        raise ParameterTypeError(f"a registry name must be a str; got {type(name).__name__}.")
    with _lock:
        live = _live()
    if ":" not in name:
        matches = sorted(k for k in live if k.partition(":")[2] == name)
        if len(matches) == 1:
            return live[matches[0]]
        if matches:
            raise RegistryError(
                f"shared dict name {name!r} is ambiguous: it matches "
                f"{', '.join(map(repr, matches))}. Use the full 'namespace:name'."
            )
        raise RegistryError(
            f"no shared dict named {name!r}. Registered names: {_listing(live)}. "
            "Use 'namespace:name' to let plugins resolve it."
        )
    _split(name)
    if name in live:
        return live[name]
    from paramarena.hooks.manager import get_plugin_manager
    from paramarena.params.parameter_dict import ParameterDict

    result = get_plugin_manager().hook.paramarena_resolve_shared(name=name)
    if result is None:
        raise RegistryError(
            f"no shared dict named {name!r}: it is not registered and no plugin resolved it. "
            f"Registered names: {_listing(live)}."
        )
    if not isinstance(result, ParameterDict):
        raise PluginError(
            f"a paramarena_resolve_shared hook returned {type(result).__name__} for {name!r}; "
            "expected a ParameterDict."
        )
    return result
