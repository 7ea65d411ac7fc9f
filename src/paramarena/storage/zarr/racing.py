"""Reads that race a writer: start again from the new ``COMMIT`` when the version moved.

A load, verify or inspect whose version a concurrent save re-committed (and may have deleted)
fails for a reason that is not corruption: :func:`retrying` reads ``COMMIT`` again and starts
over, a bounded number of times (docs/checkpoints.md, "Concurrency").
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from paramarena.errors import ConcurrentWriteError
from paramarena.storage.zarr.commit import COMMIT_MARKER
from paramarena.storage.zarr.location import Location
from paramarena.storage.zarr.zip import ZipLocation

__all__ = ["READ_ATTEMPTS", "READ_BACKOFF_MAX", "moved", "retrying"]

_Root = Location | ZipLocation

#: Reads of one load / verify / inspect while concurrent commits keep replacing the version.
READ_ATTEMPTS = 25
#: Longest pause between two attempts (seconds): attempt ``k`` waits up to
#: ``min(READ_BACKOFF_MAX, 0.005 * 2**k)``, jittered, so that a reader slower than one save of a
#: writer saving in a loop gets a window between two commits.
READ_BACKOFF_MAX = 0.5
_T = TypeVar("_T")


def moved(loc: _Root) -> bool:
    """Whether the checkpoint was re-committed since ``loc`` read ``COMMIT`` (or replaced)."""
    try:
        if isinstance(loc, ZipLocation):
            return loc.replaced()
        return loc.seen_commit is not None and loc.read_bytes(COMMIT_MARKER) != loc.seen_commit
    except Exception:
        return False


def retrying(
    open_root: Callable[[str, Mapping[str, Any]], _Root],
    uri: str,
    options: Mapping[str, Any],
    read: Callable[[_Root], _T],
    failed: Callable[[_T], bool] = lambda _result: False,
) -> _T:
    """Run ``read`` on a fresh root until it succeeds or fails on a version still committed.

    A read that fails (any error, or a result ``failed`` rejects) while a concurrent save
    re-committed the checkpoint (``COMMIT`` changed, or the ``.zarr.zip`` was replaced) lost its
    version to that save, which may have deleted it: the read starts again from the new
    ``COMMIT`` after a short jittered pause, at most :data:`READ_ATTEMPTS` times. A failure with
    ``COMMIT`` unchanged is real.

    Raises
    ------
    paramarena.errors.ConcurrentWriteError
        The checkpoint was re-committed during every attempt.
    """
    last: BaseException | None = None
    for attempt in range(READ_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0.0, min(READ_BACKOFF_MAX, 0.005 * 2**attempt)))
        loc = open_root(uri, options)
        try:
            result = read(loc)
        except Exception as exc:
            if not moved(loc):
                raise
            last = exc
            continue
        finally:
            loc.close()
        if not (failed(result) and moved(loc)):
            return result
    raise ConcurrentWriteError(
        f"zarr checkpoint {uri!r} was re-committed by concurrent saves during each of "
        f"{READ_ATTEMPTS} attempts to read it; try again."
    ) from last
