"""Seeded mutations of checkpoint bytes and JSON documents, for the storage fuzzer.

Every function takes a :class:`random.Random`, so a case is reproduced from its seed alone.
"""

from __future__ import annotations

import copy
import json
import random
import struct
from typing import Any

__all__ = ["INTERESTING_INTS", "INTERESTING_VALUES", "mutate_bytes", "mutate_json"]

#: Integers that break size arithmetic: zero, negatives, 32/64-bit edges, "huge".
INTERESTING_INTS = (
    0,
    1,
    -1,
    7,
    255,
    2**15,
    2**16 - 1,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**62,
    2**63 - 1,
    -(2**63),
    10**12,
)
#: JSON values of every type, names that try to leave the checkpoint, huge and negative numbers.
INTERESTING_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    "",
    "x",
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "a/../../b",
    "v1/../..",
    "\u00e9",
    -1,
    0,
    1.5,
    float("1e308"),
    2**31,
    2**62,
    10**12,
    -(2**40),
    [],
    {},
    [-1, 6],
    [0, 2**62],
    [10**12],
    ["x"],
    {"name": "x"},
)


def _flip_bit(data: bytearray, rng: random.Random) -> None:
    i = rng.randrange(len(data))
    data[i] ^= 1 << rng.randrange(8)


def _set_byte(data: bytearray, rng: random.Random) -> None:
    data[rng.randrange(len(data))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))


def _set_int(data: bytearray, rng: random.Random) -> None:
    fmt = rng.choice(("<H", "<I", "<i", "<Q", "<q"))
    width = struct.calcsize(fmt)
    if len(data) < width:
        return
    value = rng.choice(INTERESTING_INTS)
    lo, hi = {
        "<H": (0, 2**16 - 1),
        "<I": (0, 2**32 - 1),
        "<i": (-(2**31), 2**31 - 1),
        "<Q": (0, 2**64 - 1),
        "<q": (-(2**63), 2**63 - 1),
    }[fmt]
    value = min(max(value, lo), hi)
    i = rng.randrange(len(data) - width + 1)
    data[i : i + width] = struct.pack(fmt, value)


def _truncate(data: bytearray, rng: random.Random) -> None:
    del data[rng.randrange(len(data)) :]


def _delete_range(data: bytearray, rng: random.Random) -> None:
    i = rng.randrange(len(data))
    del data[i : i + rng.randint(1, 64)]


def _insert(data: bytearray, rng: random.Random) -> None:
    i = rng.randrange(len(data) + 1)
    data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))


def _duplicate(data: bytearray, rng: random.Random) -> None:
    i = rng.randrange(len(data))
    piece = data[i : i + rng.randint(1, 64)]
    j = rng.randrange(len(data) + 1)
    data[j:j] = piece


def _zero_range(data: bytearray, rng: random.Random) -> None:
    i = rng.randrange(len(data))
    n = rng.randint(1, 32)
    data[i : i + n] = bytes(len(data[i : i + n]))


_BYTE_OPS = (
    _flip_bit,
    _flip_bit,
    _set_byte,
    _set_int,
    _set_int,
    _truncate,
    _delete_range,
    _insert,
    _duplicate,
    _zero_range,
)


def mutate_bytes(data: bytes, rng: random.Random, max_ops: int = 3) -> bytes:
    """Apply 1..``max_ops`` random byte-level mutations to ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, max_ops)):
        if not out:
            out.extend(bytes(rng.randrange(256) for _ in range(rng.randint(0, 8))))
            continue
        rng.choice(_BYTE_OPS)(out, rng)
    return bytes(out)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document (the root is the empty path)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_paths(value, (*prefix, i)))
    return found


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def _value(rng: random.Random) -> Any:
    """A fresh copy of one of :data:`INTERESTING_VALUES` (never the shared object itself)."""
    return copy.deepcopy(rng.choice(INTERESTING_VALUES))


def mutate_json(document: Any, rng: random.Random, max_ops: int = 2) -> Any:
    """Return a copy of ``document`` with 1..``max_ops`` structural edits.

    Edits: delete a key or list item, replace a value with one of :data:`INTERESTING_VALUES`
    (wrong types, huge and negative numbers, path-traversal names), add an unknown key,
    duplicate a list item.
    """
    doc = json.loads(json.dumps(document))
    for _ in range(rng.randint(1, max_ops)):
        paths = _paths(doc)
        path = rng.choice(paths)
        if not path:
            if rng.random() < 0.2:
                doc = _value(rng)
            continue
        parent = _get(doc, path[:-1])
        key = path[-1]
        op = rng.randrange(5)
        if op == 0:
            del parent[key]
        elif op == 1 and isinstance(parent, dict):
            parent["unexpected_" + str(rng.randrange(100))] = _value(rng)
        elif op == 2 and isinstance(parent, list):
            parent.insert(rng.randrange(len(parent) + 1), copy.deepcopy(parent[key]))
        elif op == 3 and isinstance(parent[key], int) and not isinstance(parent[key], bool):
            parent[key] = rng.choice(INTERESTING_INTS)
        else:
            parent[key] = _value(rng)
    return doc
