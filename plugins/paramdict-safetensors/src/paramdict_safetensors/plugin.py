"""Hook implementations of paramdict-safetensors (the module named by the entry point)."""

from __future__ import annotations

from collections.abc import Iterator

from paramdict.hookspecs import hookimpl
from paramdict.types import StorageSpec
from paramdict_safetensors.format import SafetensorsBackend

__all__ = ["BACKEND", "paramdict_storage_backends"]

#: The backend instance registered by this plugin.
BACKEND = SafetensorsBackend()


@hookimpl
def paramdict_storage_backends() -> Iterator[StorageSpec]:
    """Yield the ``safetensors`` storage backend (suffix ``.safetensors``)."""
    yield StorageSpec(
        "safetensors",
        BACKEND,
        suffixes=(".safetensors",),
        description="safetensors files (bfloat16 included, lazy per-tensor reads)",
    )
