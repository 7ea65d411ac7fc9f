"""Averaging a parameter's copies on several contexts into one host array (for saving)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["host_average"]


def host_average(hosts: list[np.ndarray], dtype: np.dtype[Any]) -> np.ndarray:
    """Return the copy, or the element-wise average of several host copies, as ``dtype``.

    Parameters
    ----------
    hosts : list of numpy.ndarray
        The parameter's copies, one per context, already on the host.
    dtype : numpy.dtype
        The parameter's dtype (the result's).

    Returns
    -------
    numpy.ndarray
        ``hosts[0]`` itself for one copy; otherwise a new array.
    """
    if len(hosts) == 1:
        return hosts[0]
    total = hosts[0].astype(dtype, copy=True)
    for h in hosts[1:]:
        total = total + h
    return np.asarray(total / len(hosts)).astype(dtype)
