"""Short alias of :mod:`paramdict.initializer` (MXNet's ``mx.init``).

``import paramdict.init as init`` and ``from paramdict.init import Xavier`` give the same
objects as :mod:`paramdict.initializer`.
"""

from __future__ import annotations

from paramdict.initializer import (
    Bilinear,
    Constant,
    FusedRNN,
    InitDesc,
    Initializer,
    Load,
    LSTMBias,
    Mixed,
    MSRAPrelu,
    Normal,
    One,
    Orthogonal,
    Uniform,
    Xavier,
    Zero,
    alias,
    create,
    register,
    registered_names,
)

__all__ = [
    "Bilinear",
    "Constant",
    "FusedRNN",
    "InitDesc",
    "Initializer",
    "LSTMBias",
    "Load",
    "MSRAPrelu",
    "Mixed",
    "Normal",
    "One",
    "Orthogonal",
    "Uniform",
    "Xavier",
    "Zero",
    "alias",
    "create",
    "register",
    "registered_names",
]
