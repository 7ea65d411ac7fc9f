"""The global seed stream used by initializers when ``initialize(seed=None)``.

Initial values are a pure function of ``(key, full parameter name, element index)``: they do
not depend on initialization order, thread count or device. ``initialize(seed=s)`` uses ``s``
as the key; without a seed every ``initialize`` call takes a fresh 64-bit key from the global
stream (:func:`next_key`), which :func:`seed` restarts, so a whole program is reproducible
from one ``seed(n)`` and the same call order (as in MXNet).
"""

from __future__ import annotations

import os
import threading

__all__ = ["get_seed", "next_key", "seed"]

_lock = threading.Lock()
# 63 random bits from the OS, as secrets.randbits(63) (importing secrets costs ~8 ms)
_seed: int = int.from_bytes(os.urandom(8), "little") >> 1
_drawn: int = 0  # keys drawn from the stream since the last seed()
_MASK = (1 << 64) - 1


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
    global _seed, _drawn
    with _lock:
        _seed = value
        _drawn = 0


def get_seed() -> int:
    """Return the current global seed (random per process until :func:`seed` is called)."""
    return _seed


def _splitmix64(state: int) -> int:
    """SplitMix64's output function of ``state`` (a bijection of 64-bit integers)."""
    z = state & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def next_key() -> int:
    """Take the next 64-bit key from the global seed stream (thread-safe).

    The ``i``-th key after ``seed(n)`` is ``splitmix64(n + (i + 1) * 0x9E3779B97F4A7C15)``:
    a pure function of ``(n, i)``.

    Returns
    -------
    int
        A key in ``[0, 2**64)``.
    """
    global _drawn
    with _lock:
        _drawn += 1
        return _splitmix64(_seed + _drawn * 0x9E3779B97F4A7C15)
