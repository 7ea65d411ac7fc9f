"""The ``Initializer`` base class, ``InitDesc``, and name lookup (``create``/``register``).

This is MXNet 1.9.1's ``mxnet.initializer`` machinery (spec d.1-d.3) on numpy arrays:

* ``Initializer.__call__(desc, arr)`` fills ``arr`` in place. With an :class:`InitDesc` the
  ``__init__`` attribute wins (an instance, a registered name or a ``dumps()`` JSON string);
  otherwise the name's suffix picks the rule (``weight`` -> ``_init_weight``, ``bias`` -> 0,
  ``gamma`` -> 1, ``beta`` -> 0, ``min`` -> 0, ``max`` -> 1, ...). A plain ``str`` name takes
  MXNet's deprecated legacy path.
* Random values come only from :func:`paramarena.kernels.fill_uniform` /
  :func:`paramarena.kernels.fill_normal`, keyed by ``(seed, full parameter name)``, so a
  parameter's initial values depend on nothing else (not on order, threads or device).
* Names are looked up case-insensitively: first in the table filled at run time by
  :func:`register` / :func:`alias`, then among the initializers that plugins yield from the
  ``paramarena_initializers`` hook (the built-in ones included).

Differences from MXNet 1.9.1 (deliberate): errors are :class:`~paramarena.errors.InitializerError`
(a ``ValueError``) or :class:`~paramarena.errors.UnknownNameError` (a ``KeyError``) with full
messages instead of bare ``AssertionError``; messages carry no ANSI colour escapes; random
initializers refuse integer and bool arrays up front, naming the parameter and dtype.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from paramarena import kernels
from paramarena.errors import (
    InitializerError,
    ParamarenaError,
    ParameterTypeError,
    UnknownNameError,
)

__all__ = [
    "InitDesc",
    "Initializer",
    "alias",
    "create",
    "register",
    "registered_names",
]

logger = logging.getLogger("paramarena.init")

#: Classes registered at run time by :func:`register` / :func:`alias` (consulted first).
_RUNTIME_REGISTRY: dict[str, type[Initializer]] = {}

_T = TypeVar("_T", bound="type[Initializer]")


class InitDesc(str):
    """The name of a parameter plus what an initializer needs to know about it.

    A ``str`` subclass (``isinstance(desc, str)`` holds), like MXNet's ``InitDesc``.

    Parameters
    ----------
    name : str
        Full parameter name; also the key of the random stream.
    attrs : dict, optional
        Attributes; ``attrs["__init__"]`` (an initializer, registered name or JSON string)
        selects the initializer for this parameter. Default ``{}``.
    global_init : Initializer, optional
        The global initializer (set by ``Initializer.__call__`` when ``None``).
    seed : int, optional
        Seed of the random initializers; ``None`` means :func:`paramarena.kernels.seeds.get_seed`.

    Attributes
    ----------
    attrs : dict
    global_init : Initializer or None
    seed : int or None
    """

    attrs: dict[str, Any]
    global_init: Initializer | None
    seed: int | None

    def __new__(
        cls,
        name: str,
        attrs: dict[str, Any] | None = None,
        global_init: Initializer | None = None,
        seed: int | None = None,
    ) -> InitDesc:
        """Create the description (see the class docstring for the parameters)."""
        ret = super().__new__(cls, name)
        ret.attrs = attrs or {}
        ret.global_init = global_init
        ret.seed = seed
        return ret


def _default_print_func(arr: np.ndarray) -> str:
    """Root mean square of ``arr`` as a string (MXNet's default verbose print)."""
    if arr.size == 0:
        return "0.0"
    values = np.asarray(arr, dtype=np.float64)
    return str(float(np.linalg.norm(values) / math.sqrt(arr.size)))


def is_float_dtype(dtype: np.dtype[Any]) -> bool:
    """Return whether ``dtype`` is a floating-point dtype (``bfloat16`` included)."""
    return dtype.kind == "f" or dtype.name == "bfloat16"


def _seed_of(desc: str) -> int:
    seed = getattr(desc, "seed", None)
    if seed is None:
        from paramarena.kernels.seeds import get_seed

        return get_seed()
    return int(seed)


class Initializer:
    """Base class of every initializer (MXNet ``mx.init.Initializer``).

    Parameters
    ----------
    **kwargs
        The constructor arguments; kept in ``_kwargs`` and serialized by :meth:`dumps`.

    Notes
    -----
    Subclasses override :meth:`_init_weight` (and optionally the other ``_init_*`` hooks).
    Instances compare equal when of the same type with equal ``_kwargs``; like MXNet's they
    are unhashable.
    """

    __hash__ = None  # type: ignore[assignment]  # MXNet defines __eq__ without __hash__

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs: dict[str, Any] = kwargs
        self._verbose = False
        self._print_func: Callable[[np.ndarray], str] | None = None

    # --- public API --------------------------------------------------------------------------

    def set_verbosity(
        self, verbose: bool = False, print_func: Callable[[np.ndarray], str] | None = None
    ) -> Initializer:
        """Switch logging of every initialized array on or off.

        Parameters
        ----------
        verbose : bool
            Log ``Initialized <name> as <init>: <summary>`` (logger ``paramarena.init``,
            level INFO) after each array.
        print_func : callable, optional
            ``arr -> str`` summary; default the root mean square ``norm(arr)/sqrt(size)``.

        Returns
        -------
        Initializer
            ``self``.
        """
        self._verbose = verbose
        if print_func is None:
            print_func = _default_print_func
        self._print_func = print_func
        return self

    def dumps(self) -> str:
        """Serialize as ``'["<class name lower>", {kwargs}]'`` (what :func:`create` reads).

        Returns
        -------
        str
            e.g. ``'["uniform", {"scale": 0.07}]'``.
        """
        return json.dumps([self.__class__.__name__.lower(), self._kwargs])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Initializer):
            return NotImplemented
        return type(self) is type(other) and self._kwargs == other._kwargs

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"{type(self).__name__}({args})"

    def __call__(self, desc: str, arr: np.ndarray) -> None:
        """Fill ``arr`` in place for the parameter described by ``desc``.

        Parameters
        ----------
        desc : InitDesc or str
            With an :class:`InitDesc`, ``desc.attrs["__init__"]`` picks the initializer if set,
            else the name's suffix does. A plain ``str`` takes the deprecated legacy path.
        arr : numpy.ndarray
            The array to fill (host memory).

        Raises
        ------
        paramarena.errors.InitializerError
            The name matches no rule, or the initializer cannot fill this array.
        paramarena.errors.ParameterTypeError
            ``arr`` is not a numpy array, or ``desc`` is not a string.
        """
        if not isinstance(desc, InitDesc):
            self._legacy_init(desc, arr)
            return
        _check_array(desc, arr)
        if desc.global_init is None:
            desc.global_init = self
        init = desc.attrs.get("__init__", "")
        if init:
            create(init)._init_weight(desc, arr)
            self._verbose_print(desc, init, arr)
            return
        name = str(desc)
        if name.endswith("weight"):
            self._init_weight(desc, arr)
            self._verbose_print(desc, "weight", arr)
        elif name.endswith("bias"):
            self._init_bias(desc, arr)
            self._verbose_print(desc, "bias", arr)
        elif name.endswith("gamma"):
            self._init_gamma(desc, arr)
            self._verbose_print(desc, "gamma", arr)
        elif name.endswith("beta"):
            self._init_beta(desc, arr)
            self._verbose_print(desc, "beta", arr)
        elif name.endswith("min"):
            self._init_zero(desc, arr)
            self._verbose_print(desc, "min", arr)
        elif name.endswith("max"):
            self._init_one(desc, arr)
            self._verbose_print(desc, "max", arr)
        elif name.endswith("weight_quantize"):
            self._init_quantized_weight(desc, arr)
            self._verbose_print(desc, "weight_quantize", arr)
        elif name.endswith("bias_quantize"):
            self._init_quantized_bias(desc, arr)
            self._verbose_print(desc, "bias_quantize", arr)
        else:
            self._init_default(desc, arr)

    # --- helpers for subclasses -----------------------------------------------------------------

    def _verbose_print(self, desc: str, init: Any, arr: np.ndarray) -> None:
        """Log ``Initialized <desc> as <init>: <summary>`` when verbosity is on."""
        if self._verbose and self._print_func is not None:
            logger.info("Initialized %s as %s: %s", desc, init, self._print_func(arr))

    def _fill_uniform(self, desc: str, arr: np.ndarray, low: float, high: float) -> None:
        """Fill ``arr`` with U[low, high) values keyed by ``(seed, name)``."""
        _random_fill(desc, arr, type(self).__name__, "uniform", low, high)

    def _fill_normal(self, desc: str, arr: np.ndarray, mean: float, std: float) -> None:
        """Fill ``arr`` with N(mean, std) values keyed by ``(seed, name)``."""
        _random_fill(desc, arr, type(self).__name__, "normal", mean, std)

    # --- batched initialization -----------------------------------------------------------------

    def _fill_plan(
        self, desc: str, shape: tuple[int, ...], dtype: np.dtype[Any]
    ) -> tuple[int, float, float] | None:
        """Return ``(dist, a, b)`` of the one random fill ``_init_weight`` does, or None.

        See :mod:`paramarena.init.plans`; ``None`` means: call ``_init_weight``.
        """
        return None

    # --- the per-suffix rules ---------------------------------------------------------------------

    def _init_weight(self, desc: str, arr: np.ndarray) -> None:
        """Fill a weight; every concrete initializer overrides this."""
        raise NotImplementedError(
            f"{type(self).__name__} must override _init_weight (cannot initialize {desc})."
        )

    def _init_bias(self, desc: str, arr: np.ndarray) -> None:
        arr[...] = 0

    def _init_gamma(self, desc: str, arr: np.ndarray) -> None:
        arr[...] = 1

    def _init_beta(self, desc: str, arr: np.ndarray) -> None:
        arr[...] = 0

    def _init_zero(self, desc: str, arr: np.ndarray) -> None:
        arr[...] = 0

    def _init_one(self, desc: str, arr: np.ndarray) -> None:
        arr[...] = 1

    def _init_quantized_bias(self, desc: str, arr: np.ndarray) -> None:
        arr[...] = 0

    def _init_quantized_weight(self, desc: str, arr: np.ndarray) -> None:
        """Fill the whole array with ONE random integer in [-127, 127) (as MXNet does)."""
        tmp = np.empty(1, dtype=np.float64)
        kernels.fill_uniform(tmp, -127.0, 127.0, seed=_seed_of(desc), key=str(desc))
        arr[...] = np.int8(min(126, math.floor(float(tmp[0]))))

    def _init_bilinear(self, desc: str, arr: np.ndarray) -> None:
        """Bilinear upsampling kernel; needs a 4-D array ``(out, in, h, w)``."""
        if arr.ndim != 4:
            raise InitializerError(
                f"Bilinear initializer needs a 4-D parameter (out, in, height, width); "
                f"{desc} has shape {arr.shape}."
            )
        height, width = arr.shape[2], arr.shape[3]
        f = math.ceil(width / 2.0)
        c = (2 * f - 1 - f % 2) / (2.0 * f)
        x = np.arange(width, dtype=np.float64)
        y = np.arange(height, dtype=np.float64)
        kernel = np.outer(1 - np.abs(y / f - c), 1 - np.abs(x / f - c))
        arr[...] = kernel.astype(np.float32)

    def _init_loc_bias(self, desc: str, arr: np.ndarray) -> None:
        if arr.shape[:1] != (6,):
            raise InitializerError(
                f"{desc}: a spatial-transformer location bias needs shape (6,), got {arr.shape}."
            )
        arr[...] = np.array([1.0, 0, 0, 0, 1.0, 0])

    def _init_default(self, desc: str, arr: np.ndarray) -> None:
        raise InitializerError(
            f"Unknown initialization pattern for {desc}. Default initialization is now limited "
            'to "weight", "bias", "gamma" (1.0), and "beta" (0.0). Please set an initializer '
            'for it through InitDesc attrs {"__init__": ...} (e.g. the init= argument of '
            "Parameter)."
        )

    def _legacy_init(self, name: Any, arr: Any) -> None:
        """MXNet's deprecated ``init(str, array)`` path (name prefixes and suffixes)."""
        warnings.warn(
            "Calling an initializer with init(str, array) is deprecated; please use "
            "init(paramarena.init.InitDesc(name), array) instead.",
            DeprecationWarning,
            stacklevel=3,
        )
        if not isinstance(name, str):
            raise ParameterTypeError(f"name must be string, got {type(name).__name__}.")
        if not isinstance(arr, np.ndarray):
            raise ParameterTypeError(
                f"arr must be a numpy.ndarray for {name}, got {type(arr).__name__}."
            )
        if name.startswith("upsampling"):
            self._init_bilinear(name, arr)
        elif name.startswith("stn_loc") and name.endswith("weight"):
            self._init_zero(name, arr)
        elif name.startswith("stn_loc") and name.endswith("bias"):
            self._init_loc_bias(name, arr)
        elif name.endswith("bias"):
            self._init_bias(name, arr)
        elif name.endswith("gamma"):
            self._init_gamma(name, arr)
        elif name.endswith("beta"):
            self._init_beta(name, arr)
        elif name.endswith("weight"):
            self._init_weight(name, arr)
        elif name.endswith("moving_mean"):
            self._init_zero(name, arr)
        elif name.endswith("moving_var"):
            self._init_one(name, arr)
        elif name.endswith(("moving_inv_var", "moving_avg", "min")):
            self._init_zero(name, arr)
        elif name.endswith("max"):
            self._init_one(name, arr)
        else:
            self._init_default(name, arr)


def _check_array(desc: str, arr: Any) -> None:
    if not isinstance(arr, np.ndarray):
        raise ParameterTypeError(
            f"Initializers fill numpy arrays in place; got {type(arr).__name__} for {desc}."
        )


def _random_fill(desc: str, arr: np.ndarray, who: str, dist: str, a: float, b: float) -> None:
    """Fill ``arr`` from the counter-based generator; refuse non-float arrays."""
    if not is_float_dtype(arr.dtype):
        raise InitializerError(
            f"{who} initializer draws random floats and cannot fill parameter {desc} of dtype "
            f"{arr.dtype.name}; use a float dtype, or Zero/One/Constant for integer parameters."
        )
    if arr.size == 0:
        return
    seed = _seed_of(desc)
    key = str(desc)
    fill = kernels.fill_uniform if dist == "uniform" else kernels.fill_normal
    direct = (
        arr.dtype in (np.dtype(np.float32), np.dtype(np.float64))
        and arr.flags.c_contiguous
        and arr.flags.writeable
    )
    if direct:
        fill(arr, a, b, seed=seed, key=key)
        return
    tmp = np.empty(arr.shape, dtype=np.float64 if arr.dtype == np.float64 else np.float32)
    fill(tmp, a, b, seed=seed, key=key)
    arr[...] = tmp


def draw_float64(desc: str, shape: tuple[int, ...], dist: str) -> np.ndarray:
    """Return a new float64 array of U(-1, 1) or N(0, 1) values keyed by ``(seed, desc)``."""
    tmp = np.empty(shape, dtype=np.float64)
    if tmp.size:
        if dist == "uniform":
            kernels.fill_uniform(tmp, -1.0, 1.0, seed=_seed_of(desc), key=str(desc))
        else:
            kernels.fill_normal(tmp, 0.0, 1.0, seed=_seed_of(desc), key=str(desc))
    return tmp


# --- registry and create() ---------------------------------------------------------------------


def _plugin_names() -> list[str]:
    from paramarena.hooks.manager import initializer_specs

    try:
        return list(initializer_specs())
    except ParamarenaError:
        return []


def registered_names() -> list[str]:
    """Return every name :func:`create` accepts (run-time registrations and plugins), sorted."""
    return sorted(set(_RUNTIME_REGISTRY) | set(_plugin_names()))


def _lookup(name: str) -> Callable[..., Initializer]:
    key = name.lower()
    if key in _RUNTIME_REGISTRY:
        return _RUNTIME_REGISTRY[key]
    from paramarena.hooks.manager import get_initializer_spec

    try:
        return get_initializer_spec(key).factory
    except UnknownNameError:
        valid = ", ".join(repr(n) for n in registered_names()) or "(none)"
        raise UnknownNameError(
            f"Unknown initializer {name!r}: it is not registered. Valid names: {valid}. "
            "Register a class with paramarena.init.register (or from a plugin's "
            "paramarena_initializers hook) first."
        ) from None


def _existing(name: str) -> Any:
    if name in _RUNTIME_REGISTRY:
        return _RUNTIME_REGISTRY[name]
    from paramarena.hooks.manager import initializer_specs

    try:
        spec = initializer_specs().get(name)
    except ParamarenaError:
        return None
    return None if spec is None else spec.factory


def _register_as(klass: type[Initializer], name: str) -> None:
    if not (isinstance(klass, type) and issubclass(klass, Initializer)):
        raise InitializerError(
            f"Can only register subclasses of paramarena.init.Initializer, got {klass!r}."
        )
    key = name.lower()
    old = _existing(key)
    if old is not None:
        warnings.warn(
            f"New initializer {klass.__module__}.{klass.__qualname__} registered with name "
            f"{key} is overriding existing initializer "
            f"{getattr(old, '__module__', '?')}.{getattr(old, '__qualname__', repr(old))}",
            UserWarning,
            stacklevel=3,
        )
    _RUNTIME_REGISTRY[key] = klass


def register(klass: _T, name: str | None = None) -> _T:
    """Register an ``Initializer`` subclass under ``name`` (default its lower-cased class name).

    Usable as a class decorator. Registering a name again warns and overrides.

    Parameters
    ----------
    klass : type
        A subclass of :class:`Initializer`.
    name : str, optional
        The name; ``klass.__name__.lower()`` by default.

    Returns
    -------
    type
        ``klass`` unchanged.

    Raises
    ------
    paramarena.errors.InitializerError
        ``klass`` is not an ``Initializer`` subclass.
    """
    _register_as(klass, klass.__name__ if name is None else name)
    return klass


def alias(*names: str) -> Callable[[_T], _T]:
    """Return a class decorator registering the class under each of ``names``.

    Parameters
    ----------
    *names : str
        Further (case-insensitive) names.

    Returns
    -------
    callable
        The decorator.
    """

    def decorate(klass: _T) -> _T:
        for n in names:
            _register_as(klass, n)
        return klass

    return decorate


def create(*args: Any, **kwargs: Any) -> Initializer:
    """Build an initializer from an instance, a name, a JSON string or a dict.

    Parameters
    ----------
    *args, **kwargs
        The first positional argument (or ``initializer=``) is one of: an ``Initializer``
        instance (returned as is); a registered name, case-insensitive (the remaining
        arguments go to its constructor); a ``dumps()`` string ``'["name", {kwargs}]'``; a
        JSON object string ``'{"initializer": "name", ...}'``; or a dict of the same form.

    Returns
    -------
    Initializer

    Raises
    ------
    paramarena.errors.UnknownNameError
        The name is not registered (the message lists the valid names).
    paramarena.errors.InitializerError
        Anything else is wrong with the argument.
    """
    if args:
        spec, rest = args[0], args[1:]
    elif "initializer" in kwargs:
        spec, rest = kwargs.pop("initializer"), ()
    else:
        raise InitializerError("create() needs an initializer (instance, name or JSON string).")
    if isinstance(spec, Initializer):
        if rest or kwargs:
            raise InitializerError(
                f"initializer {spec!r} is already an instance. Additional arguments are invalid."
            )
        return spec
    if isinstance(spec, dict):
        if rest or kwargs:
            raise InitializerError("create(dict) takes no further arguments.")
        return create(**spec)
    if not isinstance(spec, str):
        raise InitializerError(
            f"initializer must be an Initializer instance or of string type, got "
            f"{type(spec).__name__} ({spec!r}). Mixed and Load are called directly with "
            "(name, array); they cannot serve as a parameter's initializer."
        )
    text = spec.strip()
    if text.startswith(("[", "{")):
        if rest or kwargs:
            raise InitializerError("create(json_string) takes no further arguments.")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InitializerError(f"Invalid initializer JSON {spec!r}: {exc}.") from None
        if isinstance(parsed, dict):
            return create(**parsed)
        if (
            not isinstance(parsed, list)
            or len(parsed) != 2
            or not isinstance(parsed[0], str)
            or not isinstance(parsed[1], dict)
        ):
            raise InitializerError(
                f'Invalid initializer JSON {spec!r}: expected ["name", {{kwargs}}].'
            )
        return create(parsed[0], **parsed[1])
    return _lookup(text)(*rest, **kwargs)
