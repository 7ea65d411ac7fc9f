"""Hook implementations of paramarena-safetensors (the module named by the entry point)."""

from __future__ import annotations

from collections.abc import Iterator

from paramarena.hooks.records import StorageSpec
from paramarena.hooks.specs import hookimpl
from paramarena_safetensors.format import SafetensorsBackend

__all__ = ["BACKEND", "paramarena_storage_backends"]

#: The backend instance registered by this plugin.
BACKEND = SafetensorsBackend()


@hookimpl
def paramarena_storage_backends() -> Iterator[StorageSpec]:
    """Yield the ``safetensors`` storage backend (suffix ``.safetensors``)."""
    yield StorageSpec(
        "safetensors",
        BACKEND,
        suffixes=(".safetensors",),
        description="safetensors files (bfloat16 included, lazy per-tensor reads)",
    )
