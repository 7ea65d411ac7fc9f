"""What a checkpoint stores, as a load into a ``ParameterDict`` uses it.

The stored shapes and dtypes by stored name (one shared record per distinct pair, not an
object per array) and the init keys the arrays were drawn with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # importing paramarena stays light: storage is imported on first use
    from paramarena.storage.columns import StoredColumns

__all__ = ["Spec", "set_init_keys", "stored_specs"]


class Spec(NamedTuple):
    """A stored array's shape and dtype (what the checks read of it)."""

    shape: tuple[int, ...]
    dtype: Any


def set_init_keys(
    params: Mapping[str, Any], targets: Mapping[str, str], info: StoredColumns
) -> None:
    """Give each loaded parameter the key its stored values were drawn with, if recorded."""
    column = info.init_keys
    in_order = column is not None and len(targets) == len(info.names)
    if in_order and list(targets.values()) == list(info.names):  # no dict of the keys
        assert column is not None
        for name, key in zip(targets, column.tolist(), strict=True):
            params[name].init_key = key
        return
    recorded = info.init_key_map()  # zarr manifests record the draw keys
    if recorded:
        for name, stored_name in targets.items():
            key = recorded.get(stored_name)
            if key is not None:
                params[name].init_key = key


def stored_specs(
    names: Sequence[str], shapes: Sequence[Any], dtypes: Sequence[Any]
) -> dict[str, Spec]:
    """Return ``{stored name: (shape, dtype)}``, one shared record per distinct pair."""
    pairs = zip(shapes, dtypes, strict=True)
    try:
        distinct = {pair: Spec(*pair) for pair in dict.fromkeys(pairs)}
    except TypeError:  # an unhashable shape: one record each
        return dict(zip(names, map(Spec, shapes, dtypes), strict=True))
    return dict(
        zip(names, map(distinct.__getitem__, zip(shapes, dtypes, strict=True)), strict=True)
    )
