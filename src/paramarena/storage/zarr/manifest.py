"""The parameters of a ``manifest.json``, kept as columns and encoded without a dict per entry.

A save of 100k parameters would spend a large part of its time building one dict per
parameter and running ``json.dumps`` over them. :class:`ManifestEntries` keeps the columns the
writer produces (names, shapes, one :class:`~paramarena.storage.zarr.direct.PackedColumns` per
packed array) and :meth:`ManifestEntries.json` writes the ``parameters`` array with one string
template per entry: the bytes are exactly those of ``json.dumps(entries, separators=(",", ":"))``
(a test compares them), so the manifest schema and its text are unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paramarena.storage.zarr.direct import PackedColumns

__all__ = ["ManifestEntries", "PackedGroup", "encode_manifest"]


#: JSON string literal of a str, as ``json.dumps`` writes it (ASCII, escaped); the C encoder
_JSON_STRING: Callable[[str], str] = (
    getattr(json.encoder, "c_encode_basestring_ascii", None)
    or json.encoder.py_encode_basestring_ascii
)


@dataclass
class PackedGroup:
    """The parameters stored in one packed array: their positions in the save and columns."""

    logical: str
    array: str
    indices: list[int]
    columns: PackedColumns


@dataclass
class ManifestEntries:
    """The ``parameters`` of a manifest, as columns (see the module docstring).

    ``synced``: every chunk file of the version is already on disk (fsync'd by the writer
    threads); writing the manifest then flushes only the manifest and ``to_flush`` (the small
    ``zarr.json`` files and the directories the writer created).
    """

    names: list[str]
    shapes: list[tuple[int, ...]]
    groups: list[PackedGroup]
    init_keys: Mapping[str, int] = field(default_factory=dict)
    synced: bool = False
    to_flush: list[str] = field(default_factory=list)
    #: the manifest's bytes when the writer already wrote and fsync'd it, and its ``named``
    manifest_raw: bytes | None = None
    manifest_named: bool | None = None
    _text: list[str] | None = field(default=None, repr=False)
    _shape_text: dict[tuple[int, ...], str] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.as_dicts())

    def as_dicts(self) -> list[dict[str, Any]]:
        """Return the entries as the dicts the manifest holds (in order)."""
        out: list[dict[str, Any]] = [{} for _ in self.names]
        for g in self.groups:
            c = g.columns
            for j, i in enumerate(g.indices):
                name = self.names[i]
                entry: dict[str, Any] = {
                    "name": name,
                    "shape": list(self.shapes[i]),
                    "dtype": g.logical,
                    "array": g.array,
                    "offset": c.offsets[j],
                    "size": c.sizes[j],
                    "nbytes": c.nbytes[j],
                    "crc32c": f"{c.crcs[j]:08x}",
                }
                if name in self.init_keys:
                    entry["init_key"] = f"{int(self.init_keys[name]):016x}"
                out[i] = entry
        return out

    def _render(self, g: PackedGroup, picked: Sequence[int] | None) -> list[str]:
        """Return the JSON text of the group's entries (``picked``: positions in it, or all)."""
        c = g.columns
        if picked is None:
            whole = len(g.indices) == len(self.names)
            items = g.indices
            offsets, sizes, nbytes, crcs = c.offsets, c.sizes, c.nbytes, c.crcs
        else:
            whole = False
            items = [g.indices[j] for j in picked]
            offsets = [c.offsets[j] for j in picked]
            sizes = [c.sizes[j] for j in picked]
            nbytes = [c.nbytes[j] for j in picked]
            crcs = [c.crcs[j] for j in picked]
        names = self.names if whole else [self.names[i] for i in items]
        shapes = self.shapes if whole else [self.shapes[i] for i in items]
        shape_text = self._shape_text
        for shape in set(shapes) - shape_text.keys():
            shape_text[shape] = ",".join(map(str, shape))
        fields: list[Any] = [
            map(_JSON_STRING, names),
            map(shape_text.__getitem__, shapes),
            offsets,
            sizes,
            nbytes,
            crcs,
        ]
        head = (
            '{"name":%s,"shape":[%s],"dtype":'
            + _JSON_STRING(g.logical).replace("%", "%%")
            + ',"array":'
            + _JSON_STRING(g.array).replace("%", "%%")
            + ',"offset":%d,"size":%d,"nbytes":%d,"crc32c":"%08x"'
        )
        keys = list(map(self.init_keys.get, names)) if self.init_keys else []
        if keys and None not in keys:
            template = head + ',"init_key":"%016x"}'
            fields.append([int(k) for k in keys if k is not None])
        elif any(k is not None for k in keys):
            template = head + "%s"
            fields.append("}" if k is None else f',"init_key":"{int(k):016x}"}}' for k in keys)
        else:
            template = head + "}"
        return list(map(template.__mod__, zip(*fields, strict=True)))

    def prepare(self) -> None:
        """Encode every entry now (the crc32c still ``pending`` are encoded again by json)."""
        if len(self.groups) == 1 and len(self.groups[0].indices) == len(self.names):
            self._text = self._render(self.groups[0], None)
            return
        text = np.empty(len(self.names), dtype=object)
        for g in self.groups:
            text[g.indices] = self._render(g, None)
        self._text = text.tolist()

    def json(self) -> str:
        """Return the ``parameters`` array as compact JSON (``json.dumps`` of :meth:`as_dicts`).

        One ``%`` template per packed array, applied by ``map`` (no Python frame per entry).
        """
        return "[" + self._joined() + "]"

    def _joined(self) -> str:
        """Return the encoded entries joined by commas (the array without its brackets)."""
        if self._text is None:
            self.prepare()
        assert self._text is not None
        text = self._text
        for g in self.groups:
            if g.columns.pending:
                for j, encoded in zip(
                    g.columns.pending, self._render(g, g.columns.pending), strict=True
                ):
                    text[g.indices[j]] = encoded
        return ",".join(text)


def encode_manifest(
    header: Mapping[str, Any], entries: ManifestEntries | Sequence[Mapping[str, Any]]
) -> bytes:
    """Return the manifest's bytes: ``header`` then ``"parameters"``, compact JSON."""
    compact = (",", ":")
    head = json.dumps(dict(header), separators=compact)
    opening = ('{"parameters":[' if head == "{}" else head[:-1] + ',"parameters":[').encode()
    if isinstance(entries, ManifestEntries):
        # one copy of the (ASCII) entries into the result: a manifest of 100k parameters is
        # 20 MB, and every intermediate str would be allocated and touched again
        return b"".join((opening, entries._joined().encode("ascii"), b"]}"))
    params = json.dumps(list(entries), separators=compact)
    return opening + params[1:].encode() + b"}"
