"""``FusedRNN``: initialize the single flat parameter of a fused (cuDNN-layout) RNN.

MXNet's ``FusedRNNCell`` keeps every weight and bias of a multi-layer (bi)RNN in one 1-D
``parameters`` array. This initializer views that array as the per-gate pieces (MXNet's
``FusedRNNCell._slice_weights`` layout), initializes each piece by its own name and packs the
result back, so ``weight`` pieces get the inner initializer and ``bias`` pieces its bias rule
(0), and LSTM forget-gate biases get ``forget_bias``.

Differences from MXNet 1.9.1: ``create(FusedRNN(...).dumps())`` works (MXNet fails with
``KeyError``, spec h.12); the pieces are named ``<parameter name>_<piece>`` (e.g.
``rnn_parameters_l0_i2h_i_weight``) so two fused parameters draw different random values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from paramarena.errors import InitializerError
from paramarena.init.base import InitDesc, Initializer, create, is_float_dtype

__all__ = ["FusedRNN", "fused_rnn_pieces"]

_GATE_NAMES: dict[str, tuple[str, ...]] = {
    "rnn_relu": ("",),
    "rnn_tanh": ("",),
    "lstm": ("_i", "_f", "_c", "_o"),
    "gru": ("_r", "_z", "_o"),
}


def fused_rnn_pieces(
    size: int, num_hidden: int, num_layers: int, mode: str, bidirectional: bool
) -> list[tuple[str, int, tuple[int, ...]]]:
    """Return ``(name, offset, shape)`` of every piece of a fused RNN parameter of ``size``.

    Parameters
    ----------
    size : int
        Number of elements of the flat parameter.
    num_hidden, num_layers : int
    mode : {'lstm', 'gru', 'rnn_relu', 'rnn_tanh'}
    bidirectional : bool

    Returns
    -------
    list of (str, int, tuple of int)
        In MXNet's layout order: all weights (layer, direction, i2h gates, h2h gates), then
        all biases.

    Raises
    ------
    paramarena.errors.InitializerError
        ``size`` does not fit the configuration.
    """
    gates = _GATE_NAMES[mode]
    directions = ("l", "r") if bidirectional else ("l",)
    b, m, h = len(directions), len(gates), num_hidden
    num_input = size // b // h // m - (num_layers - 1) * (h + b * h + 2) - h - 2
    expected = (num_input + h + 2) * h * m * b + (num_layers - 1) * m * h * (h + b * h + 2) * b
    if num_input <= 0 or expected != size:
        raise InitializerError(
            f"A fused {mode} parameter with num_hidden={num_hidden}, num_layers={num_layers}, "
            f"bidirectional={bidirectional} cannot have {size} elements."
        )
    pieces: list[tuple[str, int, tuple[int, ...]]] = []
    p = 0
    for layer in range(num_layers):
        for d in directions:
            for g in gates:
                shape = (h, b * h) if layer > 0 else (h, num_input)
                pieces.append((f"{d}{layer}_i2h{g}_weight", p, shape))
                p += math.prod(shape)
            for g in gates:
                pieces.append((f"{d}{layer}_h2h{g}_weight", p, (h, h)))
                p += h * h
    for layer in range(num_layers):
        for d in directions:
            for kind in ("i2h", "h2h"):
                for g in gates:
                    pieces.append((f"{d}{layer}_{kind}{g}_bias", p, (h,)))
                    p += h
    return pieces


class FusedRNN(Initializer):
    """Initialize a fused RNN's flat parameter piece by piece (name ``fusedrnn``).

    Parameters
    ----------
    init : Initializer, str or None
        Initializer of the pieces (an instance, a registered name or a ``dumps()`` string);
        ``None`` uses the global initializer of the call.
    num_hidden : int
    num_layers : int
    mode : {'lstm', 'gru', 'rnn_relu', 'rnn_tanh'}
    bidirectional : bool, default False
    forget_bias : float, default 1.0
        Value of the LSTM forget-gate bias pieces.

    Examples
    --------
    >>> FusedRNN(None, 4, 1, "lstm").dumps()  # doctest: +NORMALIZE_WHITESPACE
    '["fusedrnn", {"init": null, "num_hidden": 4, "num_layers": 1, "mode": "lstm",
      "bidirectional": false, "forget_bias": 1.0}]'
    """

    def __init__(
        self,
        init: Any,
        num_hidden: int,
        num_layers: int,
        mode: str,
        bidirectional: bool = False,
        forget_bias: float = 1.0,
    ) -> None:
        if mode not in _GATE_NAMES:
            raise InitializerError(
                f"FusedRNN mode must be one of {sorted(_GATE_NAMES)}, got {mode!r}."
            )
        inner = None if init is None else create(init)
        super().__init__(
            init=None if inner is None else inner.dumps(),
            num_hidden=num_hidden,
            num_layers=num_layers,
            mode=mode,
            bidirectional=bidirectional,
            forget_bias=forget_bias,
        )
        self._init = inner
        self._num_hidden = num_hidden
        self._num_layers = num_layers
        self._mode = mode
        self._bidirectional = bidirectional
        self._forget_bias = forget_bias

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        if arr.ndim != 1 or not is_float_dtype(arr.dtype):
            raise InitializerError(
                f"FusedRNN fills a 1-D float parameter; {desc} has shape {arr.shape} and dtype "
                f"{arr.dtype.name}."
            )
        inner = self._init
        if inner is None:
            inner = getattr(desc, "global_init", None)
            if inner is None or isinstance(inner, FusedRNN):
                raise InitializerError(
                    f"FusedRNN(init=None) initializes the pieces of {desc} with the global "
                    "initializer, but there is none (or it is a FusedRNN itself); pass init=."
                )
        pieces = fused_rnn_pieces(
            arr.size, self._num_hidden, self._num_layers, self._mode, self._bidirectional
        )
        flat = np.array(arr, dtype=np.float64 if arr.dtype == np.float64 else np.float32)
        seed = getattr(desc, "seed", None)
        global_init = getattr(desc, "global_init", None)
        for name, offset, shape in pieces:
            piece = flat[offset : offset + math.prod(shape)].reshape(shape)
            if self._mode == "lstm" and name.endswith("_f_bias"):
                piece[...] = self._forget_bias
                continue
            inner(InitDesc(f"{desc}_{name}", global_init=global_init, seed=seed), piece)
        arr[...] = flat
