"""mshadow type flags of MXNet ``.params`` records and the numpy dtypes they stand for."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["TYPE_FLAGS"]


class _TypeFlagTable(Mapping[int, "np.dtype[Any]"]):
    """mshadow type flag -> numpy dtype; flag 12 (bfloat16) imports ml_dtypes only when used."""

    _BFLOAT16 = 12

    def __init__(self, eager: dict[int, np.dtype[Any]]) -> None:
        self._eager = eager

    def __getitem__(self, flag: int) -> np.dtype[Any]:
        if flag == self._BFLOAT16:
            import ml_dtypes

            bf16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
            return bf16
        return self._eager[flag]

    def __contains__(self, flag: object) -> bool:
        return flag == self._BFLOAT16 or flag in self._eager

    def __iter__(self) -> Iterator[int]:
        return iter([*self._eager, self._BFLOAT16])

    def __len__(self) -> int:
        return len(self._eager) + 1


#: mshadow type flag -> numpy dtype. Flags 8-11 are in mshadow's enum but MXNet 1.9.1's Python
#: cannot create or load them; we read them (their meaning is unambiguous) and never write them.
TYPE_FLAGS: Mapping[int, np.dtype[Any]] = _TypeFlagTable(
    {
        0: np.dtype("<f4"),
        1: np.dtype("<f8"),
        2: np.dtype("<f2"),
        3: np.dtype("u1"),
        4: np.dtype("<i4"),
        5: np.dtype("i1"),
        6: np.dtype("<i8"),
        7: np.dtype("?"),
        8: np.dtype("<i2"),
        9: np.dtype("<u2"),
        10: np.dtype("<u4"),
        11: np.dtype("<u8"),
    }
)
