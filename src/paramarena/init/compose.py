"""``Mixed`` (pick an initializer by name pattern) and ``Load`` (values from a checkpoint).

Like MXNet's, neither is an ``Initializer`` subclass nor registered by name: call them
directly with ``(name, array)``. ``create()`` (and so ``Parameter.initialize``) rejects them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from paramarena.errors import InitializerError, ParameterTypeError
from paramarena.init.base import create

__all__ = ["Load", "Mixed"]

logger = logging.getLogger("paramarena.init")

InitCallable = Callable[[str, np.ndarray], None]


def _as_callable(init: Any) -> InitCallable:
    if isinstance(init, str):
        return create(init)
    if not callable(init):
        raise InitializerError(
            f"Expected an initializer (instance, registered name or callable), got {init!r}."
        )
    result: InitCallable = init
    return result


class Mixed:
    """Initialize each parameter with the first initializer whose pattern matches its name.

    Parameters
    ----------
    patterns : sequence of str
        Regular expressions, tried in order with ``re.match`` (anchored at the start).
    initializers : sequence
        One initializer per pattern (instances, or registered names / JSON strings).

    Raises
    ------
    paramarena.errors.InitializerError
        The two sequences have different lengths.

    Examples
    --------
    >>> import numpy as np
    >>> import paramarena.init as init
    >>> mixed = init.Mixed([".*bias", ".*"], [init.Zero(), init.One()])
    >>> arr = np.empty(2, dtype=np.float32)
    >>> mixed(init.InitDesc("fc_bias"), arr)
    >>> arr
    array([0., 0.], dtype=float32)
    """

    def __init__(self, patterns: Sequence[str], initializers: Sequence[Any]) -> None:
        if len(patterns) != len(initializers):
            raise InitializerError(
                f"Mixed needs one initializer per pattern: got {len(patterns)} patterns and "
                f"{len(initializers)} initializers."
            )
        self.map: list[tuple[re.Pattern[str], InitCallable]] = [
            (re.compile(p), _as_callable(i)) for p, i in zip(patterns, initializers, strict=True)
        ]

    def __call__(self, name: str, arr: np.ndarray) -> None:
        """Fill ``arr`` with the initializer of the first pattern matching ``name``.

        Parameters
        ----------
        name : InitDesc or str
            Passed on unchanged (a plain ``str`` takes the deprecated legacy path of the
            chosen initializer, as in MXNet).
        arr : numpy.ndarray
            Filled in place.

        Raises
        ------
        paramarena.errors.InitializerError
            No pattern matches ``name``.
        """
        for prog, init in self.map:
            if prog.match(name):
                init(name, arr)
                return
        raise InitializerError(
            f'Parameter name {name} did not match any pattern. Consider adding a ".*" '
            "pattern at the end with a default initializer."
        )


def _strip_prefix(name: str) -> str:
    if name.startswith(("arg:", "aux:")):
        return name[4:]
    return name


class Load:
    """Initialize parameters from saved values, falling back to ``default_init``.

    Parameters
    ----------
    param : str, os.PathLike or dict
        A checkpoint path/URL (read with :func:`paramarena.storage.load`, any format) or a dict
        name -> array. ``arg:``/``aux:`` name prefixes are stripped.
    default_init : initializer, optional
        Used for names not in ``param``; without it such names are an error.
    verbose : bool, default False
        Log ``Initialized <name> by loading`` / ``by default`` (INFO).

    Raises
    ------
    paramarena.errors.InitializerError
        ``param`` is neither a dict nor a file of named arrays.
    """

    def __init__(self, param: Any, default_init: Any = None, verbose: bool = False) -> None:
        if isinstance(param, (str, os.PathLike)):
            from paramarena import storage

            param = storage.load(param)
        if not isinstance(param, Mapping):
            raise InitializerError(
                f"Load needs a dict of name -> array or a file of named arrays, got "
                f"{type(param).__name__}."
            )
        self.param: dict[str, np.ndarray] = {
            _strip_prefix(str(name)): np.asarray(arr) for name, arr in param.items()
        }
        self.default_init: InitCallable | None = (
            None if default_init is None else _as_callable(default_init)
        )
        self.verbose = verbose

    def __call__(self, name: str, arr: np.ndarray) -> None:
        """Copy the saved value of ``name`` into ``arr`` (casting), or use ``default_init``.

        Raises
        ------
        paramarena.errors.InitializerError
            Shapes differ, or ``name`` is unknown and there is no ``default_init``.
        """
        if not isinstance(arr, np.ndarray):
            raise ParameterTypeError(
                f"Load fills numpy arrays in place; got {type(arr).__name__} for {name}."
            )
        key = str(name)
        if key in self.param:
            loaded = self.param[key]
            if tuple(arr.shape) != tuple(loaded.shape):
                raise InitializerError(
                    f"Parameter {key} cannot be initialized from loading. Shape mismatch, "
                    f"target {tuple(arr.shape)} vs loaded {tuple(loaded.shape)}"
                )
            arr[...] = loaded
            if self.verbose:
                logger.info("Initialized %s by loading", key)
            return
        if self.default_init is None:
            raise InitializerError(
                f"Cannot Initialize {key}. Not found in loaded param and no default "
                "Initializer is provided."
            )
        self.default_init(name, arr)
        if self.verbose:
            logger.info("Initialized %s by default", key)
