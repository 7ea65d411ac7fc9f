"""Built-in plugin: the ``zarr`` storage backend (crash-safe, checksummed zarr v3 checkpoints).

zarr, fsspec and the cloud libraries are imported only when a checkpoint is read or written.
"""

from __future__ import annotations

from collections.abc import Iterator

from paramarena.hooks.records import StorageSpec
from paramarena.hooks.specs import hookimpl
from paramarena.storage.zarr.checkpoint import COMMIT_MARKER, ZarrCheckpointBackend

__all__ = ["COMMIT_MARKER", "paramarena_storage_backends"]


@hookimpl
def paramarena_storage_backends() -> Iterator[StorageSpec]:
    """Register the zarr backend for ``.zarr`` / ``.zarr.zip`` paths and object-store URLs."""
    yield StorageSpec(
        "zarr",
        ZarrCheckpointBackend(),
        suffixes=(".zarr", ".zarr.zip"),
        schemes=("s3", "gs", "az", "memory", "file"),
        description="chunked zarr v3 checkpoint with a manifest, crc32c and a commit marker",
    )
