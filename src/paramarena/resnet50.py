"""The parameter shapes of ResNet-50 (v1.5, as in torchvision): 161 tensors, 25,557,032 values.

Used by ``paramarena demo`` and the benchmarks as a realistic dict: 53 convolution weights, 53
batch-norm ``gamma``/``beta`` pairs and the final dense layer.
"""

from __future__ import annotations

__all__ = ["resnet50_shapes"]

_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))
_EXPANSION = 4


def resnet50_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """Return ``(name, shape)`` for every trainable ResNet-50 parameter, in network order.

    Names follow Gluon's convention (``..._weight``, ``..._gamma``, ``..._beta``,
    ``..._bias``) so that name-based initializer dispatch works.

    Returns
    -------
    list of (str, tuple of int)
        161 entries totalling 25,557,032 elements.
    """
    shapes: list[tuple[str, tuple[int, ...]]] = []

    def conv_bn(prefix: str, out_c: int, in_c: int, k: int) -> None:
        shapes.append((f"{prefix}conv_weight", (out_c, in_c, k, k)))
        shapes.append((f"{prefix}bn_gamma", (out_c,)))
        shapes.append((f"{prefix}bn_beta", (out_c,)))

    conv_bn("stem_", 64, 3, 7)
    in_c = 64
    for stage, (planes, blocks) in enumerate(_STAGES, start=1):
        out_c = planes * _EXPANSION
        for unit in range(1, blocks + 1):
            p = f"stage{stage}_unit{unit}_"
            conv_bn(p + "a_", planes, in_c, 1)
            conv_bn(p + "b_", planes, planes, 3)
            conv_bn(p + "c_", out_c, planes, 1)
            if unit == 1:
                conv_bn(p + "down_", out_c, in_c, 1)
            in_c = out_c
    shapes.append(("fc_weight", (1000, in_c)))
    shapes.append(("fc_bias", (1000,)))
    return shapes
