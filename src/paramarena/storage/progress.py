"""Progress bars for long saves and loads (tqdm, bytes and rate).

``enabled=None`` (automatic) shows a bar when the transfer is larger than
:data:`AUTO_THRESHOLD_BYTES` and standard error is a terminal; ``True`` forces it on and
``False`` off.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["AUTO_THRESHOLD_BYTES", "progress_bar"]

#: Transfers above this size show a bar automatically on a terminal (about 100 MB).
AUTO_THRESHOLD_BYTES = 100 * 1024 * 1024


def _noop(_n: int) -> None:
    return None


@contextmanager
def progress_bar(
    total_bytes: int, desc: str, enabled: bool | None
) -> Iterator[Callable[[int], None]]:
    """Yield a function to call with each increment of bytes done.

    Parameters
    ----------
    total_bytes : int
        Size of the whole transfer.
    desc : str
        Label shown before the bar (e.g. ``"save ckpt.zarr"``).
    enabled : bool or None
        ``True``/``False`` force the bar on/off; ``None`` shows it for transfers over
        :data:`AUTO_THRESHOLD_BYTES` when standard error is a terminal.

    Yields
    ------
    callable
        ``update(n)`` adds ``n`` bytes to the bar (a no-op when the bar is off).
    """
    show = (
        enabled
        if enabled is not None
        else (total_bytes > AUTO_THRESHOLD_BYTES and sys.stderr.isatty())
    )
    if not show:
        yield _noop
        return
    from tqdm import tqdm

    with tqdm(
        total=total_bytes,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
    ) as bar:
        yield bar.update
