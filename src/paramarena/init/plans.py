"""Fill plans: what batched initialization needs to know about a random initializer.

:meth:`paramarena.init.Initializer._fill_plan` returns ``(dist, a, b)`` for an initializer
whose ``_init_weight`` is exactly one random fill; ``ParameterDict.initialize`` then fills all
parameters with such plans in one kernel call per arena
(:func:`paramarena.kernels.fill_random_ranges`), with the values the per-parameter call gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from paramarena.init.base import Initializer

__all__ = ["normal_plan", "plannable", "uniform_plan"]

_DIRECT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def plannable(init: Initializer, owner: type[Initializer], dtype: np.dtype[Any]) -> bool:
    """Return whether ``owner``'s fill plan describes ``init`` for arrays of ``dtype``.

    True when ``init``'s ``_init_weight`` is ``owner``'s, its random fills are not
    overridden, verbose logging is off and ``dtype`` is float32/float64.
    """
    from paramarena.init.base import Initializer

    cls = type(init)
    return (
        cls._init_weight is owner._init_weight
        and cls._fill_uniform is Initializer._fill_uniform
        and cls._fill_normal is Initializer._fill_normal
        and not init._verbose
        and dtype in _DIRECT_DTYPES
    )


def uniform_plan(low: float, high: float) -> tuple[int, float, float]:
    """Return the fill plan of ``_fill_uniform(desc, arr, low, high)``."""
    return 0, float(low), float(high) - float(low)


def normal_plan(mean: float, std: float) -> tuple[int, float, float]:
    """Return the fill plan of ``_fill_normal(desc, arr, mean, std)``."""
    return 1, float(mean), float(std)
