"""Initializers: fill a parameter's array by rule or at random (also ``paramarena.init``).

MXNet 1.9.1's ``mxnet.initializer`` API on numpy arrays, with random values that are a pure
function of ``(seed, full parameter name, element index)``. See ``docs/initializers.md``.

The pieces live in :mod:`paramarena.init.base` (``Initializer``, ``InitDesc``,
``create``, ``register``, ``alias``), :mod:`paramarena.init.classes` (the built-in
initializers), :mod:`paramarena.init.rnn` (``FusedRNN``) and
:mod:`paramarena.init.compose` (``Mixed``, ``Load``).

Examples
--------
>>> import numpy as np
>>> import paramarena.init as init
>>> arr = np.empty((2, 3), dtype=np.float32)
>>> init.create('["constant", {"value": 2.0}]')(init.InitDesc("w", {"__init__": "one"}), arr)
>>> arr
array([[1., 1., 1.],
       [1., 1., 1.]], dtype=float32)
"""

from __future__ import annotations

from paramarena.init.base import (
    InitDesc,
    Initializer,
    alias,
    create,
    register,
    registered_names,
)
from paramarena.init.classes import (
    Bilinear,
    Constant,
    LSTMBias,
    MSRAPrelu,
    Normal,
    One,
    Orthogonal,
    Uniform,
    Xavier,
    Zero,
)
from paramarena.init.compose import Load, Mixed
from paramarena.init.rnn import FusedRNN

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
