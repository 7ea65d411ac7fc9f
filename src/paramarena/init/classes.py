"""The built-in initializers, with MXNet 1.9.1's formulas, defaults and ``dumps()`` output.

They are registered by name (``zero``/``zeros``, ``one``/``ones``, ``constant``, ``uniform``,
``normal``, ``orthogonal``, ``xavier``, ``msraprelu``, ``bilinear``, ``lstmbias``) through the
built-in plugin :mod:`paramarena.init.plugin`; import them from
:mod:`paramarena.init` (``paramarena.init``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from paramarena.errors import InitializerError, ParameterValueError
from paramarena.init.base import Initializer, draw_float64, is_float_dtype
from paramarena.init.plans import normal_plan, plannable, uniform_plan

__all__ = [
    "Bilinear",
    "Constant",
    "LSTMBias",
    "MSRAPrelu",
    "Normal",
    "One",
    "Orthogonal",
    "Uniform",
    "Xavier",
    "Zero",
]


class Zero(Initializer):
    """Fill with 0 (names ``zero``, ``zeros``).

    Examples
    --------
    >>> Zero().dumps()
    '["zero", {}]'
    """

    def __init__(self) -> None:
        super().__init__()

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        arr[...] = 0


class One(Initializer):
    """Fill with 1 (names ``one``, ``ones``).

    Examples
    --------
    >>> One().dumps()
    '["one", {}]'
    """

    def __init__(self) -> None:
        super().__init__()

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        arr[...] = 1


def _json_value(value: Any) -> Any:
    """Turn a scalar / array / nested list into plain JSON-able Python values."""
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__array__") or isinstance(value, (list, tuple)):
        try:
            return np.asarray(value).tolist()
        except (TypeError, ValueError) as exc:
            raise InitializerError(f"Constant value {value!r} is not array-like: {exc}.") from None
    raise InitializerError(
        f"Constant value must be a number, an array or a (nested) list, got "
        f"{type(value).__name__} ({value!r})."
    )


class Constant(Initializer):
    """Fill with ``value``, broadcast to the parameter's shape (name ``constant``).

    Parameters
    ----------
    value : float, int, array-like or nested list
        The value. Arrays and lists are stored as nested lists in ``dumps()`` (MXNet does this
        lazily and fails on Python lists, spec h.12; here both work and ``dumps`` has no side
        effects).

    Examples
    --------
    >>> Constant(2.5).dumps()
    '["constant", {"value": 2.5}]'
    >>> Constant([1, 2]).dumps()
    '["constant", {"value": [1, 2]}]'
    """

    def __init__(self, value: Any) -> None:
        super().__init__(value=_json_value(value))
        self.value: Any = value

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        value = self.value
        if not isinstance(value, (bool, int, float, np.generic)):
            value = np.asarray(value)
        if arr.dtype.kind in "iu":
            _check_fits_integer(value, arr.dtype, desc)
        try:
            arr[...] = value
        except ValueError as exc:
            shape = getattr(value, "shape", ())
            raise InitializerError(
                f"Constant value of shape {tuple(shape)} cannot be broadcast to parameter "
                f"{desc} of shape {arr.shape}: {exc}."
            ) from None


def _check_fits_integer(value: Any, dtype: np.dtype[Any], desc: str) -> None:
    """Refuse a constant outside an integer dtype's range (MXNet 1.9.1 silently wraps it).

    Raises
    ------
    paramarena.errors.ParameterValueError
        Naming the parameter, the dtype's range and what MXNet would have stored.
    """
    values = np.asarray(value)
    if values.size == 0 or values.dtype.kind not in "iuf":
        return
    info = np.iinfo(dtype)
    low, high = values.min(), values.max()
    if values.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
        bad = low if not np.isfinite(low) else high
    elif low < info.min:
        bad = low
    elif high > info.max:
        bad = high
    else:
        return
    hint = ""
    if np.isfinite(bad):
        wrapped = (int(bad) - info.min) % (1 << (8 * dtype.itemsize)) + info.min
        hint = f" (MXNet 1.9.1 silently wraps it to {wrapped}: pass {wrapped} for that)"
    raise ParameterValueError(
        f"Constant value {bad} does not fit the {dtype.name} Parameter '{desc}', whose values "
        f"range over [{info.min}, {info.max}]{hint}."
    )


class Uniform(Initializer):
    """Draw from U(-scale, scale) (name ``uniform``; the default global initializer).

    Parameters
    ----------
    scale : float, default 0.07
        Half-width of the interval.

    Examples
    --------
    >>> Uniform().dumps()
    '["uniform", {"scale": 0.07}]'
    """

    def __init__(self, scale: float = 0.07) -> None:
        super().__init__(scale=scale)
        self.scale = scale

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        self._fill_uniform(desc, arr, -self.scale, self.scale)

    def _fill_plan(
        self, desc: str, shape: tuple[int, ...], dtype: np.dtype[Any]
    ) -> tuple[int, float, float] | None:
        if not plannable(self, Uniform, dtype):
            return None
        return uniform_plan(-self.scale, self.scale)


class Normal(Initializer):
    """Draw from N(0, sigma) (name ``normal``).

    Parameters
    ----------
    sigma : float, default 0.01
        Standard deviation.

    Examples
    --------
    >>> Normal().dumps()
    '["normal", {"sigma": 0.01}]'
    """

    def __init__(self, sigma: float = 0.01) -> None:
        super().__init__(sigma=sigma)
        self.sigma = sigma

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        self._fill_normal(desc, arr, 0.0, self.sigma)

    def _fill_plan(
        self, desc: str, shape: tuple[int, ...], dtype: np.dtype[Any]
    ) -> tuple[int, float, float] | None:
        if not plannable(self, Normal, dtype):
            return None
        return normal_plan(0.0, self.sigma)


_RAND_TYPES = ("uniform", "normal")


class Orthogonal(Initializer):
    """Scaled (semi-)orthogonal matrix (name ``orthogonal``), Saxe et al. 2013.

    The parameter is viewed as a ``(nout, nin)`` matrix, ``nout = shape[0]``,
    ``nin = prod(shape[1:])``. A ``(nout, nin)`` matrix of U(-1, 1) (``rand_type='uniform'``)
    or N(0, 1) (``'normal'``) values is decomposed by SVD; the factor with the matrix's shape
    (rows orthonormal when ``nout <= nin``, else columns) times ``scale`` is the result.

    Parameters
    ----------
    scale : float, default 1.414
        Multiplier.
    rand_type : {'uniform', 'normal'}, default 'uniform'
        Distribution of the random matrix.

    Raises
    ------
    paramarena.errors.InitializerError
        An unknown ``rand_type`` (MXNet fails later with ``UnboundLocalError``).

    Examples
    --------
    >>> Orthogonal().dumps()
    '["orthogonal", {"scale": 1.414, "rand_type": "uniform"}]'
    """

    def __init__(self, scale: float = 1.414, rand_type: str = "uniform") -> None:
        if rand_type not in _RAND_TYPES:
            raise InitializerError(
                f"Orthogonal rand_type must be 'uniform' or 'normal', got {rand_type!r}."
            )
        super().__init__(scale=scale, rand_type=rand_type)
        self.scale = scale
        self.rand_type = rand_type

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        if arr.ndim < 2:
            raise InitializerError(
                f"Orthogonal initializer cannot be applied to {desc} of shape {arr.shape}. "
                "It requires at least 2D."
            )
        if not is_float_dtype(arr.dtype):
            raise InitializerError(
                f"Orthogonal initializer draws random floats and cannot fill parameter {desc} "
                f"of dtype {arr.dtype.name}; use a float dtype."
            )
        nout = arr.shape[0]
        nin = math.prod(arr.shape[1:])
        if nout * nin == 0:
            return
        tmp = draw_float64(desc, (nout, nin), self.rand_type)
        u, _, v = np.linalg.svd(tmp, full_matrices=False)
        res = u if u.shape == tmp.shape else v
        arr[...] = self.scale * res.reshape(arr.shape)


_FACTOR_TYPES = ("avg", "in", "out")
_RND_TYPES = ("uniform", "gaussian")


class Xavier(Initializer):
    """Glorot/Xavier initialization (name ``xavier``).

    With ``hw = prod(shape[2:])`` (1 for 2-D), ``fan_in = shape[1] * hw`` and
    ``fan_out = shape[0] * hw``, ``factor`` is ``(fan_in + fan_out) / 2`` (``'avg'``),
    ``fan_in`` (``'in'``) or ``fan_out`` (``'out'``), and ``scale = sqrt(magnitude / factor)``.
    Values are U(-scale, scale) (``rnd_type='uniform'``) or N(0, scale) (``'gaussian'``).

    Parameters
    ----------
    rnd_type : {'uniform', 'gaussian'}, default 'uniform'
    factor_type : {'avg', 'in', 'out'}, default 'avg'
    magnitude : float, default 3

    Raises
    ------
    paramarena.errors.InitializerError
        An unknown ``rnd_type`` or ``factor_type`` (checked here, MXNet checks when filling),
        or, when filling, a parameter with fewer than 2 dimensions.

    Examples
    --------
    >>> Xavier().dumps()
    '["xavier", {"rnd_type": "uniform", "factor_type": "avg", "magnitude": 3}]'
    """

    def __init__(
        self, rnd_type: str = "uniform", factor_type: str = "avg", magnitude: float = 3
    ) -> None:
        if rnd_type not in _RND_TYPES:
            raise InitializerError(
                f"Unknown random type {rnd_type!r} for Xavier; expected 'uniform' or 'gaussian'."
            )
        if factor_type not in _FACTOR_TYPES:
            raise InitializerError(
                f"Incorrect factor type {factor_type!r} for Xavier; expected 'avg', 'in' or 'out'."
            )
        super().__init__(rnd_type=rnd_type, factor_type=factor_type, magnitude=magnitude)
        self.rnd_type = rnd_type
        self.factor_type = factor_type
        self.magnitude = float(magnitude)

    def scale_for(self, shape: tuple[int, ...]) -> float:
        """Return the scale (uniform half-width or normal std) used for ``shape``.

        Parameters
        ----------
        shape : tuple of int
            At least 2-D.

        Returns
        -------
        float
            ``sqrt(magnitude / factor)``.
        """
        hw_scale = math.prod(shape[2:]) if len(shape) > 2 else 1
        fan_in, fan_out = shape[1] * hw_scale, shape[0] * hw_scale
        if self.factor_type == "avg":
            factor = (fan_in + fan_out) / 2.0
        elif self.factor_type == "in":
            factor = fan_in
        elif self.factor_type == "out":
            factor = fan_out
        else:
            raise InitializerError(f"Incorrect factor type {self.factor_type!r}.")
        if factor == 0:
            return 0.0
        return math.sqrt(self.magnitude / factor)

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        if arr.ndim < 2:
            raise InitializerError(
                f"Xavier initializer cannot be applied to vector {desc}. It requires at least "
                f"2D (shape {arr.shape})."
            )
        scale = self.scale_for(tuple(arr.shape))
        if self.rnd_type == "uniform":
            self._fill_uniform(desc, arr, -scale, scale)
        elif self.rnd_type == "gaussian":
            self._fill_normal(desc, arr, 0.0, scale)
        else:
            raise InitializerError(f"Unknown random type {self.rnd_type!r}.")

    def _fill_plan(
        self, desc: str, shape: tuple[int, ...], dtype: np.dtype[Any]
    ) -> tuple[int, float, float] | None:
        if len(shape) < 2 or not plannable(self, Xavier, dtype):
            return None
        scale = self.scale_for(shape)
        if self.rnd_type == "uniform":
            return uniform_plan(-scale, scale)
        if self.rnd_type == "gaussian":
            return normal_plan(0.0, scale)
        return None


class MSRAPrelu(Xavier):
    """He/MSRA initialization for PReLU nets (name ``msraprelu``), He et al. 2015.

    ``Xavier(rnd_type='gaussian', factor_type, magnitude=2 / (1 + slope**2))``.

    Parameters
    ----------
    factor_type : {'avg', 'in', 'out'}, default 'avg'
    slope : float, default 0.25
        Initial PReLU slope.

    Examples
    --------
    >>> MSRAPrelu().dumps()
    '["msraprelu", {"factor_type": "avg", "slope": 0.25}]'
    """

    def __init__(self, factor_type: str = "avg", slope: float = 0.25) -> None:
        magnitude = 2.0 / (1 + slope**2)
        super().__init__("gaussian", factor_type, magnitude)
        self._kwargs = {"factor_type": factor_type, "slope": slope}
        self.slope = slope


class Bilinear(Initializer):
    """Bilinear-upsampling kernel for 4-D ``(out, in, h, w)`` weights (name ``bilinear``).

    ``f = ceil(w / 2)``, ``c = (2f - 1 - f % 2) / (2f)``; element ``(.., y, x)`` is
    ``(1 - |x/f - c|) * (1 - |y/f - c|)``, the same for every channel pair.

    Examples
    --------
    >>> Bilinear().dumps()
    '["bilinear", {}]'
    """

    def __init__(self) -> None:
        super().__init__()

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        self._init_bilinear(desc, arr)


class LSTMBias(Initializer):
    """LSTM bias: 0 except the forget gate's quarter, set to ``forget_bias`` (name ``lstmbias``).

    With ``n = shape[0] // 4`` (gates in MXNet order i, f, c, o), ``arr[n:2n] = forget_bias``.

    Parameters
    ----------
    forget_bias : float, default 1.0

    Examples
    --------
    >>> LSTMBias().dumps()
    '["lstmbias", {"forget_bias": 1.0}]'
    """

    def __init__(self, forget_bias: float = 1.0) -> None:
        super().__init__(forget_bias=forget_bias)
        self.forget_bias = forget_bias

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        if arr.ndim < 1:
            raise InitializerError(f"LSTMBias needs at least 1-D parameter; {desc} is 0-D.")
        arr[...] = 0
        num_hidden = int(arr.shape[0] / 4)
        arr[num_hidden : 2 * num_hidden] = self.forget_bias
