"""How the packed arrays of a zarr checkpoint are written: directly, or through zarr.

:class:`DirectPacker` (no compression) writes the ``zarr.json`` documents zarr would write and
then cuts the chunks itself (:mod:`paramarena.storage.zarr.local`): on local disk one ``writev`` per
chunk file straight from the parameters' memory, on object stores one object per chunk,
``concurrency`` uploads at a time (the sharded save's writer; a single-process save cuts its
chunks with :mod:`paramarena.storage.zarr.direct`). :class:`ZarrPacker` (``compression="zstd"``)
lets zarr encode and write, staging ``concurrency`` chunks at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paramarena.storage.zarr.local import (
    GROUP_METADATA,
    ChunkWriter,
    RawLayout,
    array_metadata,
    metadata_bytes,
)
from paramarena.storage.zarr.location import Location, RemoteChunkObjects

__all__ = ["DirectPacker", "StagedZarrWriter", "ZarrPacker"]


class DirectPacker:
    """Writes packed arrays without zarr: its metadata documents, then the chunks directly."""

    def __init__(self, loc: Location, version: str, concurrency: int) -> None:
        self.loc, self.version, self.concurrency = loc, version, concurrency
        loc.put_bytes(metadata_bytes(GROUP_METADATA), version, "zarr.json")

    def array(self, name: str, count: int, chunk: int, dtype: np.dtype[Any]) -> ChunkWriter:
        """Write the array's ``zarr.json`` and return the writer of its chunks."""
        self.loc.put_bytes(
            metadata_bytes(array_metadata(count, chunk, dtype)), self.version, name, "zarr.json"
        )
        layout = RawLayout(self.loc.join(self.version, name), chunk, count, dtype.itemsize)
        if self.loc.local:
            return ChunkWriter(layout)
        return ChunkWriter(
            layout, RemoteChunkObjects(self.loc, self.version, name, self.concurrency)
        )


class ZarrPacker:
    """Writes packed arrays through zarr (compressed checkpoints)."""

    def __init__(self, loc: Location, version: str, concurrency: int) -> None:
        import zarr

        self.concurrency = concurrency
        self.group = zarr.open_group(
            store=loc.store(version, read_only=False), mode="w", zarr_format=3
        )

    def array(self, name: str, count: int, chunk: int, dtype: np.dtype[Any]) -> StagedZarrWriter:
        """Create a zstd-compressed packed array and return its staging writer."""
        from zarr.codecs import Crc32cCodec, ZstdCodec

        zarr_array = self.group.create_array(
            name,
            shape=(count,),
            chunks=(chunk,),
            dtype=dtype,
            compressors=[ZstdCodec(), Crc32cCodec()],
            config={"write_empty_chunks": True},
            fill_value=0,
        )
        return StagedZarrWriter(zarr_array, chunk, self.concurrency, dtype)


class StagedZarrWriter:
    """Copies parameters into a staging buffer of ``concurrency`` chunks, written at once."""

    def __init__(self, zarr_array: Any, chunk: int, concurrency: int, dtype: np.dtype[Any]) -> None:
        self.zarr_array = zarr_array
        self.buf = np.empty(chunk * concurrency, dtype=dtype)
        self.filled = 0
        self.start = 0

    def add(self, flat: np.ndarray) -> None:
        """Append ``flat``; write the buffer whenever it is full."""
        pos = 0
        while pos < flat.size:
            take = min(self.buf.size - self.filled, flat.size - pos)
            self.buf[self.filled : self.filled + take] = flat[pos : pos + take]
            self.filled += take
            pos += take
            if self.filled == self.buf.size:
                self._write()

    def _write(self) -> None:
        self.zarr_array[self.start : self.start + self.filled] = self.buf[: self.filled]
        self.start += self.filled
        self.filled = 0

    def close(self) -> None:
        """Write what is left."""
        if self.filled:
            self._write()
