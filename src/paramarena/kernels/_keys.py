"""Stream keys of many names with the compiled BLAKE2b kernel (:mod:`._cpu_keys`).

:func:`paramarena.kernels.prepare_stream_keys` (and so ``stream_keys``) calls
:func:`plan_stream_keys` for many names (its ``hashlib`` loop costs ~0.3 µs a name, mostly
Python): the names go to the kernel as one buffer, cut into one piece per kernel thread;
:func:`stream_keys_compiled` does both steps at once. The values are those of ``hashlib`` (tests
compare them on names of every length around the 128-byte block size, and on non-ASCII
ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from paramarena.kernels._threads import get_num_threads, run_chunks

__all__ = ["plan_stream_keys", "stream_keys_compiled"]

#: names per kernel call at least (fewer: one call)
_PER_CALL = 4096


def stream_keys_compiled(seed: int, keys: Sequence[object]) -> np.ndarray:
    """Return what :func:`paramarena.kernels.stream_keys` returns, computed by the kernel.

    ``seed`` must already be validated (an int in ``[0, 2**64)``).
    """
    out, derive = plan_stream_keys(seed, keys)
    derive()
    return out


def plan_stream_keys(seed: int, keys: Sequence[object]) -> tuple[np.ndarray, Callable[[], None]]:
    """Return the stream keys' output array (not written yet) and the call that writes it.

    All the Python and numpy work (the names' bytes and ends) is done here; the call only runs
    the kernel on the kernel threads (it releases the GIL), so that it can run in another
    thread. ``seed`` must already be validated.
    """
    import ctypes

    from paramarena.kernels import _native

    names: Sequence[str]
    try:
        joined = "".join(keys)  # type: ignore[arg-type]
        names = keys  # type: ignore[assignment]
    except TypeError:  # a key that is not a str: its str(), as hashlib's loop takes it
        names = [k if type(k) is str else str(k) for k in keys]
        joined = "".join(names)
    count = len(names)
    data = joined.encode("utf-8")
    if len(data) == len(joined):  # ASCII: a name's bytes are its characters
        lengths = np.fromiter(map(len, names), np.int64, count)
    else:
        lengths = np.fromiter((len(n.encode("utf-8")) for n in names), np.int64, count)
    buf = np.empty(8 + len(data), np.uint8)
    buf[:8] = np.frombuffer(int(seed).to_bytes(8, "little"), np.uint8)
    buf[8:] = np.frombuffer(data, np.uint8)
    ends = np.zeros(count + 1, np.int64)
    np.cumsum(lengths, out=ends[1:])
    out = np.empty((count, 4), np.uint32)
    calls = max(1, min(get_num_threads(), count // _PER_CALL))
    bounds = np.linspace(0, count, calls + 1).astype(np.int64).tolist()
    scratch = np.zeros((calls, 16), np.uint64)  # each call's message block
    kernel = _native.fill_kernel("stream_keys")
    arg_buf = ctypes.c_ubyte.from_buffer(buf)  # type: ignore[arg-type]

    def run(g: int) -> None:
        kernel(
            arg_buf, ends.ctypes.data, scratch[g].ctypes.data, out.ctypes.data,
            bounds[g], bounds[g + 1],
        )  # fmt: skip

    def derive() -> None:
        # the buffers the kernel reads stay alive with this closure
        _keep = (buf, ends, scratch, arg_buf)
        run_chunks(run, calls)

    return out, derive
