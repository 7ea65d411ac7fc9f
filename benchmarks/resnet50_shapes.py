"""ResNet-50's 161 real parameter shapes (torchvision v1.5 layout): 25,557,032 float32 values.

The list itself lives in :mod:`paramarena.resnet50` (also used by ``paramarena demo``); this module
re-exports it for the benchmarks and checks its totals.
"""

from __future__ import annotations

import math

from paramarena.resnet50 import resnet50_shapes

__all__ = ["RESNET50_SHAPES", "TINY_SHAPES"]

RESNET50_SHAPES: list[tuple[str, tuple[int, ...]]] = resnet50_shapes()
TINY_SHAPES: list[tuple[str, tuple[int, ...]]] = [(f"tiny{i}_weight", (4,)) for i in range(1000)]

assert len(RESNET50_SHAPES) == 161
assert sum(math.prod(s) for _, s in RESNET50_SHAPES) == 25_557_032
