"""The validated record of a ``manifest.json``: one column per field (no object per entry).

Built by :func:`paramarena.storage.zarr.validate.manifest` (from parsed JSON) and
:func:`paramarena.storage.zarr.manifest_scan.read_manifest` (straight from the bytes).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Manifest", "ManifestEntry", "decode_init_keys"]

_ANY_HEX = re.compile(r"[0-9a-fA-F]*")


@dataclass(frozen=True)
class ManifestEntry:
    """One parameter of a manifest."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    array: str
    offset: int
    size: int
    nbytes: int
    crc32c: str


@dataclass(frozen=True, eq=False)
class Manifest:
    """A validated manifest: its parameters in stored order, one column per field.

    Attributes
    ----------
    names, shapes, dtypes, arrays : tuple
        Per parameter, in stored order.
    offsets, sizes, nbytes : numpy.ndarray
        ``int64`` per parameter (each in ``[0, 2**62]``).
    crcs : numpy.ndarray
        ``uint32`` per parameter: its crc32c (:attr:`crc32c` as text).
    init_key_values : numpy.ndarray or list, optional
        The entries' optional ``init_key``: ``uint64`` per parameter, or the values as found
        (read by :meth:`init_keys` only).
    """

    format: str
    format_version: int
    named: bool
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    arrays: tuple[str, ...]
    offsets: np.ndarray
    sizes: np.ndarray
    nbytes: np.ndarray
    crcs: np.ndarray
    init_key_values: Any = None

    @functools.cached_property
    def crc32c(self) -> tuple[str, ...]:
        """Per parameter, its crc32c as 8 lower-case hex digits (built on first use)."""
        return (
            tuple(self.crcs.astype(">u4").tobytes().hex(" ", 4).split()) if len(self.crcs) else ()
        )

    def init_keys(self) -> dict[str, int]:
        """Return ``{name: init_key}`` of the entries that record one (an optional field)."""
        keys = self.init_key_values
        if keys is None:
            return {}
        if isinstance(keys, np.ndarray):
            return dict(zip(self.names, keys.tolist(), strict=True))
        return decode_init_keys(keys, self.names)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """``{name: position}`` of every parameter (built on first use)."""
        return dict(zip(self.names, range(len(self.names)), strict=True))

    @functools.cached_property
    def groups(self) -> dict[str, tuple[list[int], frozenset[str], int]]:
        """Per packed array: its parameters' positions, their dtypes and their largest end."""
        ends = self.offsets + self.sizes  # each <= 2**63 - 2: no overflow
        if self.arrays and self.arrays.count(self.arrays[0]) == len(self.arrays):  # one array
            return {
                self.arrays[0]: (
                    list(range(len(self.arrays))),
                    frozenset(self.dtypes),
                    int(ends.max()),
                )
            }
        positions: dict[str, list[int]] = {}
        for i, a in enumerate(self.arrays):
            group = positions.get(a)
            if group is None:
                group = positions[a] = []
            group.append(i)
        return {
            a: (idx, frozenset(self.dtypes[i] for i in idx), int(ends[idx].max()))
            for a, idx in positions.items()
        }

    @functools.cached_property
    def entries(self) -> tuple[ManifestEntry, ...]:
        """The parameters as records (built on first use)."""
        return tuple(
            ManifestEntry(n, s, d, a, int(o), int(z), int(b), c)
            for n, s, d, a, o, z, b, c in zip(
                self.names,
                self.shapes,
                self.dtypes,
                self.arrays,
                self.offsets.tolist(),
                self.sizes.tolist(),
                self.nbytes.tolist(),
                self.crc32c,
                strict=True,
            )
        )


def decode_init_keys(keys: Sequence[Any], names: Sequence[str]) -> dict[str, int]:
    """Return ``{name: int(key, 16)}`` of the entries whose ``init_key`` is a str.

    Every entry recording 16 hex digits (what the writer stores) is decoded in one call;
    anything else entry by entry.
    """
    if keys and set(map(type, keys)) == {str} and set(map(len, keys)) == {16}:
        joined = "".join(keys)
        if _ANY_HEX.fullmatch(joined):
            values = np.frombuffer(bytes.fromhex(joined), dtype=">u8").tolist()
            return dict(zip(names, values, strict=True))
    return {n: int(k, 16) for n, k in zip(names, keys, strict=True) if isinstance(k, str)}
