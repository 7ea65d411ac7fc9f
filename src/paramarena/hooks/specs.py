"""Every hook paramarena calls. This module is the only place hooks are declared.

Plugins implement hooks with :data:`paramarena.hookimpl` and are found either as built-ins
(registered first) or through the ``paramarena`` entry-point group::

    # pyproject.toml of a plugin
    [project.entry-points.paramarena]
    myplugin = "myplugin.hooks"

The entry-point name (``myplugin``) is the plugin's *namespace*: shared dicts it registers
are found as ``"myplugin:name"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from paramarena.devices.context import Context
    from paramarena.hooks.records import (
        CommunicatorSpec,
        DeviceSpec,
        InitializerSpec,
        StorageSpec,
    )
    from paramarena.params.parameter import Parameter
    from paramarena.params.parameter_dict import ParameterDict

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

#: The pluggy project name (and entry-point group) of paramarena.
PROJECT_NAME = "paramarena"

_F = TypeVar("_F", bound=Callable[..., Any])


# The two markers below record the same options, under the same attribute names
# (``paramarena_spec`` / ``paramarena_impl``), as ``pluggy.HookspecMarker(PROJECT_NAME)`` and
# ``pluggy.HookimplMarker(PROJECT_NAME)`` (pluggy >= 1.2), which is all pluggy reads when it
# registers hooks. Written out so that ``import paramarena`` does not import pluggy (and with
# it importlib.metadata): the plugin manager is built on first use.


@overload
def hookspec(function: _F) -> _F: ...
@overload
def hookspec(
    function: None = None,
    *,
    firstresult: bool = ...,
    historic: bool = ...,
    warn_on_impl: Warning | None = ...,
    warn_on_impl_args: Mapping[str, Warning] | None = ...,
) -> Callable[[_F], _F]: ...
def hookspec(
    function: _F | None = None,
    *,
    firstresult: bool = False,
    historic: bool = False,
    warn_on_impl: Warning | None = None,
    warn_on_impl_args: Mapping[str, Warning] | None = None,
) -> Any:
    """Mark ``function`` as a hook specification (``pluggy.HookspecMarker`` semantics)."""

    def mark(func: _F) -> _F:
        if historic and firstresult:
            raise ValueError("cannot have a historic firstresult hook")
        opts = {
            "firstresult": firstresult,
            "historic": historic,
            "warn_on_impl": warn_on_impl,
            "warn_on_impl_args": warn_on_impl_args,
        }
        setattr(func, PROJECT_NAME + "_spec", opts)
        return func

    return mark if function is None else mark(function)


@overload
def hookimpl(function: _F) -> _F: ...
@overload
def hookimpl(
    function: None = None,
    *,
    hookwrapper: bool = ...,
    optionalhook: bool = ...,
    tryfirst: bool = ...,
    trylast: bool = ...,
    specname: str | None = ...,
    wrapper: bool = ...,
) -> Callable[[_F], _F]: ...
def hookimpl(
    function: _F | None = None,
    *,
    hookwrapper: bool = False,
    optionalhook: bool = False,
    tryfirst: bool = False,
    trylast: bool = False,
    specname: str | None = None,
    wrapper: bool = False,
) -> Any:
    """Mark ``function`` as a paramarena hook implementation (``pluggy.HookimplMarker``).

    Use as ``@hookimpl`` or ``@hookimpl(tryfirst=True, ...)`` with pluggy's options.
    """

    def mark(func: _F) -> _F:
        opts = {
            "wrapper": wrapper,
            "hookwrapper": hookwrapper,
            "optionalhook": optionalhook,
            "tryfirst": tryfirst,
            "trylast": trylast,
            "specname": specname,
        }
        setattr(func, PROJECT_NAME + "_impl", opts)
        return func

    return mark if function is None else mark(function)


@hookspec
def paramarena_initializers() -> Iterable[InitializerSpec]:
    """Yield the initializers this plugin provides.

    Returns
    -------
    iterable of InitializerSpec
        Each record names an ``Initializer`` subclass; ``paramarena.init.create(name)``
        finds it by ``name`` or any of its ``aliases``. Two plugins giving the same name
        is an error naming both.

    Examples
    --------
    >>> @hookimpl
    ... def paramarena_initializers():
    ...     yield InitializerSpec("myinit", MyInit)
    """


@hookspec
def paramarena_storage_backends() -> Iterable[StorageSpec]:
    """Yield the storage backends this plugin provides.

    Returns
    -------
    iterable of StorageSpec
        Each record names a backend with the path suffixes and URL schemes it serves.
        ``paramarena.storage.save/load`` pick a backend by ``format=``, then by the longest
        matching suffix, then by URL scheme.
    """


@hookspec
def paramarena_devices() -> Iterable[DeviceSpec]:
    """Yield the device backends this plugin provides (one per device type).

    Returns
    -------
    iterable of DeviceSpec
        Each record serves one device type (``"cpu"``, ``"gpu"``).
    """


@hookspec(firstresult=True)
def paramarena_resolve_storage(uri: str, mode: str) -> StorageSpec | None:
    """Choose a storage backend for ``uri`` when suffix and scheme rules are not enough.

    Called before the suffix/scheme rules; the first non-``None`` result wins.

    Parameters
    ----------
    uri : str
        The path or URL as the user gave it.
    mode : str
        ``"r"`` for load/inspect/verify, ``"w"`` for save.

    Returns
    -------
    StorageSpec or None
        The backend to use, or ``None`` to let the next plugin (or the default rules) decide.
    """


@hookspec(firstresult=True)
def paramarena_sniff_format(head: bytes, uri: str) -> str | None:
    """Tell a checkpoint's format from its first bytes (loading detects formats by content).

    Asked before the built-in rules (MXNet magic, zip members, safetensors header, zarr
    directory) whenever a local file, or bytes given to ``storage.loads``, is read without
    ``format=``; the first non-``None`` answer wins, the path suffix being only a fallback.

    Parameters
    ----------
    head : bytes
        The first 64 bytes of the file (fewer for a short file).
    uri : str
        The path as the user gave it (``"<bytes>"`` for ``storage.loads``).

    Returns
    -------
    str or None
        The name of a registered storage format, or ``None`` if the content is not yours.
    """


@hookspec(firstresult=True)
def paramarena_resolve_shared(name: str) -> ParameterDict | None:
    """Resolve ``ParameterDict(shared="namespace:name")`` when the registry has no such dict.

    Parameters
    ----------
    name : str
        The full ``"namespace:name"`` string.

    Returns
    -------
    ParameterDict or None
        The dict to share parameters with, or ``None`` if this plugin does not know it.
    """


@hookspec
def paramarena_parameter_initialized(parameter: Parameter, ctx: list[Context]) -> None:
    """Event: ``parameter`` has just been initialized (or re-initialized) on ``ctx``.

    Parameters
    ----------
    parameter : Parameter
        The parameter, with its data allocated and filled.
    ctx : list of Context
        The contexts holding a copy, in order.
    """


@hookspec
def paramarena_communicators() -> Iterable[CommunicatorSpec]:
    """Yield the communicators this plugin provides (collectives across processes).

    Returns
    -------
    iterable of CommunicatorSpec
        Each record names a factory returning a
        :class:`~paramarena.hooks.records.Communicator`. ``comm="name"`` picks one; the
        default is the detected one with the highest priority (``"mpi"`` under ``mpirun``),
        else ``"single"`` (one process, no library needed).
    """
