"""Exceptions raised by paramarena.

Every error raised on purpose by paramarena subclasses :class:`ParamarenaError`.
Each subclass is also the builtin exception that fits the situation (``ValueError``,
``KeyError``, ``RuntimeError``, ``TypeError``, ``OSError``), so code written against
MXNet-style ``except ValueError`` keeps working, while ``except ParamarenaError`` catches
everything paramarena raises deliberately.

Messages name the parameter, file or plugin involved and say what was expected
versus what was given.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConcurrentWriteError",
    "ConfigurationError",
    "CorruptCheckpointError",
    "DTypeMismatchError",
    "DeferredInitializationError",
    "DeviceError",
    "DeviceUnavailableError",
    "DistributedError",
    "DuplicateNameError",
    "InitializerError",
    "MissingDependencyError",
    "MissingParameterError",
    "NetworkError",
    "NotInitializedError",
    "ParamarenaError",
    "ParamdictError",
    "ParameterTypeError",
    "ParameterValueError",
    "PluginConflictError",
    "PluginError",
    "PluginLoadWarning",
    "RankMismatchError",
    "RegistryError",
    "RemoteStorageError",
    "ShapeMismatchError",
    "ShardedCheckpointError",
    "ShardingError",
    "StorageError",
    "UncommittedCheckpointError",
    "UnexpectedParameterError",
    "UnknownNameError",
    "WrongContextError",
]


class ParamarenaError(Exception):
    """Base class of every error paramarena raises deliberately."""


#: Compatibility alias: the package was called ``paramdict`` before 0.2.0, and code written
#: then catches ``ParamdictError``. Kept on purpose for one release; use ``ParamarenaError``.
ParamdictError = ParamarenaError


class _PlainKeyErrorMixin(KeyError):
    """KeyError whose ``str()`` is the message itself, not its ``repr()``."""

    def __str__(self) -> str:
        if len(self.args) == 1 and isinstance(self.args[0], str):
            return self.args[0]
        return super().__str__()


# --- parameters -------------------------------------------------------------------------------


class ParameterValueError(ParamarenaError, ValueError):
    """A value given for a parameter attribute is invalid (grad_req, stype, shape, ...)."""


class ParameterTypeError(ParamarenaError, TypeError):
    """An argument has the wrong type (e.g. a non-array passed to ``set_data``)."""


class ShapeMismatchError(ParameterValueError):
    """A shape does not agree with the parameter's stored shape."""


class DTypeMismatchError(ParameterValueError):
    """A dtype does not agree with the parameter's stored dtype."""


class NotInitializedError(ParamarenaError, RuntimeError):
    """A parameter's data or gradient was requested before it was initialized."""


class DeferredInitializationError(NotInitializedError):
    """The parameter's initialization is deferred until its shape is known.

    MXNet raises ``DeferredInitializationError`` (an ``MXNetError``) here; ours is a
    ``RuntimeError`` through :class:`NotInitializedError`.
    """


class WrongContextError(ParamarenaError, RuntimeError):
    """A parameter has no copy on the requested context, or cannot move there."""


class DuplicateNameError(ParamarenaError, ValueError):
    """Two different objects claim the same name (e.g. ``ParameterDict.update``)."""


class MissingParameterError(_PlainKeyErrorMixin, ParamarenaError):
    """A parameter is required but absent (lookup, or loading without ``allow_missing``)."""


class UnexpectedParameterError(_PlainKeyErrorMixin, ParamarenaError):
    """A loaded parameter has no counterpart (loading without ``ignore_extra``)."""


class InitializerError(ParamarenaError, ValueError):
    """An initializer cannot be built or cannot be applied to a parameter."""


# --- names, plugins and the registry ------------------------------------------------------------


class UnknownNameError(_PlainKeyErrorMixin, ParamarenaError):
    """A name (initializer, storage backend, device, shared dict) is not registered.

    The message lists the valid names and, where known, the package that provides it.
    """


class PluginError(ParamarenaError, RuntimeError):
    """A plugin is broken or misbehaves."""


class PluginConflictError(PluginError):
    """Two plugins register the same name; the message names both."""


class PluginLoadWarning(UserWarning):
    """A third-party plugin could not be imported and was skipped."""


class RegistryError(_PlainKeyErrorMixin, ParamarenaError):
    """A shared-dict name is unknown, ambiguous or malformed."""


class ConfigurationError(ParamarenaError, ValueError):
    """An option given to paramarena is invalid (e.g. an unknown storage option)."""


class MissingDependencyError(ParamarenaError, ImportError):
    """An optional dependency is not installed; the message says what to ``pip install``."""


# --- devices -------------------------------------------------------------------------------------


class DeviceError(ParamarenaError, RuntimeError):
    """A device operation failed."""


class DeviceUnavailableError(DeviceError):
    """The device does not exist here, or its backend is not installed."""


# --- storage -------------------------------------------------------------------------------------


class StorageError(ParamarenaError, OSError):
    """Reading or writing a checkpoint failed."""


class RemoteStorageError(StorageError):
    """An object store refused a request (missing bucket, access denied, ...); names the URL."""


class NetworkError(RemoteStorageError):
    """An object store could not be reached, or kept failing, after the retries.

    Connection refused or reset, connect or read timeouts, HTTP 5xx / 429: the message names
    the URL, the last failure and how many attempts were made.
    """


class ConcurrentWriteError(StorageError):
    """Another writer of the same checkpoint got in the way: this save was not committed.

    The checkpoint still holds a complete committed version (the other writer's or the
    previous one); saving again is safe.
    """


class CheckpointError(StorageError, ValueError):
    """A checkpoint file is malformed: the message names the file, record and offset."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's data disagrees with its manifest (checksum, size, missing chunk)."""


class UncommittedCheckpointError(CheckpointError):
    """A checkpoint has no commit marker: its save never finished."""


# --- distributed ---------------------------------------------------------------------------------


class DistributedError(ParamarenaError, RuntimeError):
    """A collective operation across processes (ranks) failed on this rank or another one."""


class RankMismatchError(DistributedError, ValueError):
    """The ranks disagree about what they hold (a parameter's name, shape or dtype)."""


class ShardingError(ParamarenaError, ValueError):
    """A parameter cannot be sharded, or initialized shard by shard, as asked."""


class ShardedCheckpointError(StorageError):
    """A sharded checkpoint save failed on some rank; nothing was committed."""
