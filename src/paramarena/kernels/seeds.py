"""The global seed used by initializers when ``initialize(seed=None)``.

Initial values are a pure function of ``(seed, full parameter name, element index)``: they do
not depend on initialization order, thread count or device.
"""

from __future__ import annotations

import secrets
import threading

__all__ = ["get_seed", "seed"]

_lock = threading.Lock()
_seed: int = secrets.randbits(63)


def seed(value: int) -> None:
    """Set the global seed used by every later ``initialize`` that is not given a seed.

    Parameters
    ----------
    value : int
        A non-negative integer below ``2**64``.

    Raises
    ------
    paramarena.errors.ParameterValueError
        If ``value`` is not an integer in ``[0, 2**64)``.
    """
    from paramarena.errors import ParameterValueError

    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise ParameterValueError(f"seed must be an int in [0, 2**64), got {value!r}.")
    global _seed
    with _lock:
        _seed = value


def get_seed() -> int:
    """Return the current global seed (random per process until :func:`seed` is called)."""
    return _seed
