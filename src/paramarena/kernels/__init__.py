"""Typed public entry points of the compute kernels (fill, cast, zero) for numpy arrays.

The jitted implementations are private (``_cpu.py`` for ``numba.njit``, ``_cuda.py`` for
``numba.cuda``); both compile the same scalar bodies in ``_bodies.py``. Numba is imported only
when a kernel first runs, never by ``import paramarena``; compiled kernels are cached on disk
(``cache=True``) so a second process does not compile again.

Random values come from Philox4x32-10 keyed by ``(seed, key)`` (see :func:`stream_key`): element
``i`` of a C-ordered array is a pure function of ``(seed, key, i, dtype)`` and does not depend on
thread count, initialization order or device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from paramarena.kernels._memory import empty, zeros
from paramarena.kernels._streams import PARALLEL_THRESHOLD, _fill_stream, _nothing, _plan_items
from paramarena.kernels._threads import get_num_threads, run_chunks, set_num_threads

__all__ = [
    "PARALLEL_THRESHOLD",
    "cast",
    "cast_into",
    "empty",
    "fill_normal",
    "fill_random_ranges",
    "fill_uniform",
    "fill_value",
    "get_num_threads",
    "has_cast_kernel",
    "prepare_random_ranges",
    "prepare_stream_keys",
    "set_num_threads",
    "stream_key",
    "stream_keys",
    "zero",
    "zero_ranges",
    "zeros",
]

# Cast work items handed to the kernel threads one at a time (see ``_threads``; the fills' are
# in ``_streams``): small enough that a thread slowed down by a busy core holds up the end of a
# call by well under a millisecond, big enough that the Python dispatch per chunk stays small.
_CAST_CHUNK = 1 << 18  # elements
# zeroing: memset is fastest in long calls (rep stosb / streaming stores): a range is cut into
# one chunk per thread, at least 8 MiB each (2 per thread measured 30-40% slower; zeroing is
# bound by memory bandwidth, so a busy core delays it little: bench_contention.py)
_ZERO_CHUNK = 1 << 23  # bytes
_ZERO_CHUNKS_PER_THREAD = 1

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


_BF16: list[np.dtype[Any]] = []


def _bf16() -> np.dtype[Any]:
    if not _BF16:
        import ml_dtypes

        _BF16.append(np.dtype(ml_dtypes.bfloat16))
    return _BF16[0]


#: BLAKE2b personalisation of the stream keys. The old package name stays in it on purpose: it is
#: part of the stream-key derivation, so changing it would change every initialized value and
#: break ``initialize(seed=s)`` reproducibility across the rename to paramarena.
_STREAM_PERSON = b"paramdict-phx4"


def _stream_digest(seed: int, key: str) -> bytes:
    """Return the 16 bytes of the four little-endian 32-bit stream words."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**64:
        from paramarena.errors import ParameterValueError

        raise ParameterValueError(f"seed must be an int in [0, 2**64), got {seed!r}.")
    import hashlib  # not at module level: ``import paramarena`` stays light

    return hashlib.blake2b(
        int(seed).to_bytes(8, "little") + str(key).encode("utf-8"),
        digest_size=16,
        person=_STREAM_PERSON,
    ).digest()


def _stream_words(seed: int, key: str) -> np.ndarray:
    """Return the four 32-bit stream words as a ``uint32`` array (what the kernels take)."""
    return np.frombuffer(_stream_digest(seed, key), dtype="<u4")


def stream_key(seed: int, key: str) -> np.ndarray:
    """Return the Philox key and counter high words ``(k0, k1, n0, n1)`` for one stream.

    Parameters
    ----------
    seed : int
        Non-negative integer below ``2**64``.
    key : str
        The stream's name (the full parameter name).

    Returns
    -------
    numpy.ndarray
        Four ``uint64`` values each holding 32 bits, from the 128-bit BLAKE2b digest of the seed
        and the UTF-8 name (stable across processes and platforms). ``(k0, k1)`` is the Philox
        key; ``(n0, n1)`` are the counter's high words, the low words being the block index.

    Raises
    ------
    paramarena.errors.ParameterValueError
        If ``seed`` is not an integer in ``[0, 2**64)``.
    """
    return _stream_words(seed, key).astype(np.uint64)


#: from this many names on, :func:`stream_keys` runs the compiled BLAKE2b kernel (``_keys``,
#: ~0.13 µs a name and ~30 µs a call, against ``hashlib``'s ~0.27 µs a name; loading it takes
#: ~2 ms once a process): below it ``hashlib`` is as fast, and a small dict never loads it
_COMPILED_KEYS_FROM = 512


def stream_keys(seed: int, keys: Sequence[str]) -> np.ndarray:
    """Return the stream words of many streams of one seed at once (batched initialization).

    Parameters
    ----------
    seed : int
        Non-negative integer below ``2**64``.
    keys : sequence of str
        Stream names (full parameter names).

    Returns
    -------
    numpy.ndarray
        ``uint32`` array of shape ``(len(keys), 4)``; row ``j`` equals the words
        :func:`stream_key` gives for ``(seed, keys[j])``.

    Raises
    ------
    paramarena.errors.ParameterValueError
        If ``seed`` is not an integer in ``[0, 2**64)``.
    """
    out, derive = prepare_stream_keys(seed, keys)
    derive()
    return out


def _hashed_keys(seed: int, keys: Sequence[str]) -> np.ndarray:
    """Return the stream words of ``keys`` by ``hashlib`` (few names; ``seed`` checked)."""
    import hashlib  # not at module level: ``import paramarena`` stays light

    start = hashlib.blake2b(int(seed).to_bytes(8, "little"), digest_size=16, person=_STREAM_PERSON)
    copy = start.copy

    def digest(key: str) -> bytes:
        h = copy()
        h.update((key if type(key) is str else str(key)).encode("utf-8"))
        return h.digest()

    joined = b"".join(map(digest, keys))
    return np.frombuffer(joined, dtype="<u4").reshape(-1, 4).astype(np.uint32)


def prepare_stream_keys(seed: int, keys: Sequence[str]) -> tuple[np.ndarray, Callable[[], None]]:
    """Prepare :func:`stream_keys`: return its output array and the call that writes it.

    The seed is checked and, for many names, their bytes are laid out here; the returned call
    only runs the compiled BLAKE2b kernel on the kernel threads (it holds the GIL just to start
    them), so that it can run in another thread while this one goes on with Python work. Until
    the call has run, the array's contents are undefined. For fewer names the keys are derived
    here and the call does nothing. Same arguments, values and exceptions as
    :func:`stream_keys`.

    Returns
    -------
    tuple of numpy.ndarray and callable
        The ``uint32`` array of shape ``(len(keys), 4)`` and the call that fills it.
    """
    _stream_words(seed, "")  # validates the seed
    if len(keys) >= _COMPILED_KEYS_FROM:
        from paramarena.kernels._keys import plan_stream_keys

        return plan_stream_keys(seed, keys)
    return _hashed_keys(seed, keys), _nothing


def fill_random_ranges(
    buffer: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
    dists: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    keys: np.ndarray,
) -> None:
    """Fill many ranges of one flat buffer with random streams in as few kernel calls as possible.

    Range ``j`` (``buffer[offsets[j]:offsets[j] + sizes[j]]``) receives exactly the values that
    :func:`fill_uniform` (``dists[j] == 0``: ``low = a[j]``, ``high - low = b[j]``) or
    :func:`fill_normal` (``dists[j] == 1``: ``mean = a[j]``, ``std = b[j]``) would write into an
    array of that size with stream words ``keys[j]`` (from :func:`stream_keys`). Small ranges go
    through one kernel call together; when the ranges hold many values in all, they are cut into
    work items of about equal numbers of values (a big range into several) that the kernel
    threads take one at a time (:func:`set_num_threads`).

    Parameters
    ----------
    buffer : numpy.ndarray
        1-D, C-contiguous, writable float32 or float64 buffer.
    offsets, sizes : numpy.ndarray
        ``int64`` element offsets and counts, one per range (ranges must not overlap).
    dists : numpy.ndarray
        ``int64``: 0 uniform, 1 normal.
    a, b : numpy.ndarray
        ``float64`` parameters of each range, as above.
    keys : numpy.ndarray
        ``uint32`` array of shape ``(n, 4)``.

    Raises
    ------
    paramarena.errors.ParameterTypeError
        If ``buffer`` is not a 1-D C-contiguous writable float32/float64 array.
    paramarena.errors.ParameterValueError
        If the arrays differ in length, a range lies outside ``buffer`` or a distribution is
        not 0 or 1.
    """
    _planned_ranges(buffer, offsets, sizes, dists, a, b, keys, None)()


def prepare_random_ranges(
    buffer: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
    dists: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    keys: np.ndarray,
) -> Callable[[], None]:
    """Check and prepare :func:`fill_random_ranges`; return the call that runs the kernels.

    Everything that can raise, and all the numpy work, happens here; the returned call only
    hands the work to the kernel threads, one call per thread (it takes the GIL once per
    thread), so that it can run in another thread while this one goes on with Python work.
    Arguments and exceptions as :func:`fill_random_ranges`; the same values.
    """
    return _planned_ranges(buffer, offsets, sizes, dists, a, b, keys, get_num_threads())


def _planned_ranges(
    buffer: Any, offsets: Any, sizes: Any, dists: Any, a: Any, b: Any, keys: Any, calls: Any
) -> Callable[[], None]:
    """Check the ranges and plan their kernel calls (``calls``: how many; None: by chunk)."""
    offsets, sizes, dists, a, b, keys = _checked_ranges(buffer, offsets, sizes, dists, a, b, keys)
    runs = []
    for dist in (0, 1):
        pick = dists == dist
        if pick.all():
            runs.append(_plan_items(buffer, dist, offsets, sizes, a, b, keys, calls=calls))
        elif pick.any():
            picked = (offsets[pick], sizes[pick], a[pick], b[pick], keys[pick])
            runs.append(_plan_items(buffer, dist, *picked, calls=calls))

    def run() -> None:
        for r in runs:
            r()

    return run


def _checked_ranges(
    buffer: Any,
    offsets: Any,
    sizes: Any,
    dists: Any,
    a: Any,
    b: Any,
    keys: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the arguments of :func:`fill_random_ranges` as contiguous arrays, checked."""
    if (
        not isinstance(buffer, np.ndarray)
        or buffer.dtype not in (_F32, _F64)
        or buffer.ndim != 1
        or not buffer.flags.c_contiguous
        or not buffer.flags.writeable
    ):
        from paramarena.errors import ParameterTypeError

        raise ParameterTypeError(
            "fill_random_ranges needs a 1-D C-contiguous writable float32/float64 buffer."
        )
    offsets = np.ascontiguousarray(offsets, np.int64)
    sizes = np.ascontiguousarray(sizes, np.int64)
    dists = np.ascontiguousarray(dists, np.int64)
    a = np.ascontiguousarray(a, np.float64)
    b = np.ascontiguousarray(b, np.float64)
    keys = np.ascontiguousarray(keys, np.uint32)
    n = len(offsets)
    if (
        not sizes.shape == dists.shape == a.shape == b.shape == offsets.shape == (n,)
        or keys.shape != (n, 4)
        or (n and (offsets.min() < 0 or sizes.min() < 0 or (offsets + sizes).max() > buffer.size))
        or (n and not ((dists == 0) | (dists == 1)).all())
    ):
        from paramarena.errors import ParameterValueError

        raise ParameterValueError(
            f"fill_random_ranges: {n} ranges need offsets/sizes/dists/a/b of length {n}, keys "
            f"of shape ({n}, 4), distributions 0 or 1, and 0 <= offset <= offset + size <= "
            f"{buffer.size} (the buffer's size)."
        )
    return offsets, sizes, dists, a, b, keys


def _fill_random(out: Any, dist: int, a: float, b: float, seed: int, key: str) -> None:
    if not isinstance(out, np.ndarray):
        from paramarena.errors import ParameterTypeError

        raise ParameterTypeError(f"out must be a numpy array, got {type(out).__name__}.")
    if out.dtype.kind != "f" and out.dtype != _bf16():
        from paramarena.errors import ParameterTypeError

        raise ParameterTypeError(
            f"random fills need a float16/bfloat16/float32/float64 array, got {out.dtype.name}."
        )
    digest = _stream_digest(seed, key)
    if out.size == 0:
        return
    direct = out.dtype in (_F32, _F64) and out.flags.c_contiguous and out.flags.writeable
    target = out if direct else np.empty(out.shape, _F64 if out.dtype == _F64 else _F32)
    _fill_stream(target.reshape(-1), dist, a, b, digest, 0)
    if not direct:
        if out.dtype in (_F16, _bf16()) and out.flags.c_contiguous and out.flags.writeable:
            _cast_into(target, out)
        else:
            out[...] = target


def fill_uniform(out: np.ndarray, low: float, high: float, *, seed: int, key: str) -> None:
    """Fill ``out`` in place with values uniform in ``[low, high)``, keyed by ``(seed, key)``.

    Parameters
    ----------
    out : numpy.ndarray
        float16, bfloat16, float32 or float64 array (any layout). float32/float64 are written
        directly; half types are drawn as float32 and rounded to nearest even.
    low, high : float
        Bounds; element ``i`` is ``low + (high - low) * u_i`` computed in float64, where ``u_i``
        has 24 random bits (float32/half outputs) or 53 (float64).
    seed : int
        Stream seed in ``[0, 2**64)``.
    key : str
        Stream name, normally the full parameter name.

    Raises
    ------
    paramarena.errors.ParameterTypeError
        If ``out`` is not a floating-point numpy array.
    """
    _fill_random(out, 0, float(low), float(high) - float(low), seed, key)


def fill_normal(out: np.ndarray, mean: float, std: float, *, seed: int, key: str) -> None:
    """Fill ``out`` in place with normal values ``N(mean, std)``, keyed by ``(seed, key)``.

    Box-Muller on pairs of uniforms. float64 outputs: computed in float64 (libm). float32 and
    half outputs: ``z`` computed in float32 arithmetic only (polynomial log/sin/cos, within
    ``2.5 * 2**-23 * max(1, |z|)`` of the float64 Box-Muller; bit-identical on every thread
    count and in the CUDA kernel), then ``mean + std * z`` in float64, rounded once.

    Parameters
    ----------
    out : numpy.ndarray
        float16, bfloat16, float32 or float64 array (any layout).
    mean, std : float
        Mean and standard deviation.
    seed : int
        Stream seed in ``[0, 2**64)``.
    key : str
        Stream name, normally the full parameter name.

    Raises
    ------
    paramarena.errors.ParameterTypeError
        If ``out`` is not a floating-point numpy array.
    """
    _fill_random(out, 1, float(mean), float(std), seed, key)


def fill_value(out: np.ndarray, value: Any) -> None:
    """Fill ``out`` in place with ``value`` (a scalar or anything broadcastable to it).

    Parameters
    ----------
    out : numpy.ndarray
        Destination.
    value : scalar or array_like
        Converted to ``out.dtype`` by numpy's rules (``out.fill`` for scalars: a memset-speed
        loop, no Numba needed).
    """
    if np.ndim(value) == 0:
        out.fill(value)
    else:
        out[...] = value


# --- casts ------------------------------------------------------------------------------------

_BIT_KERNELS = {  # pair -> (kernel kind, source view, destination view)
    ("float32", "float16"): (0, np.uint32, np.uint16),
    ("float16", "float32"): (1, np.uint16, np.uint32),
    ("float32", "bfloat16"): (2, np.uint32, np.uint16),
    ("bfloat16", "float32"): (3, np.uint16, np.uint32),
}
_NATIVE_PAIRS = {("float32", "float64"), ("float64", "float32")}


def has_cast_kernel(src_dtype: Any, dtype: Any) -> bool:
    """Return whether ``cast`` uses a Numba kernel (else numpy ``astype``) for this pair."""
    pair = (np.dtype(src_dtype).name, np.dtype(dtype).name)
    return pair in _BIT_KERNELS or pair in _NATIVE_PAIRS


_HW_F16: list[bool] = []


def _hardware_f16_ok() -> bool:
    """Whether the float32 -> float16 conversion instruction compiles and matches numpy."""
    if not _HW_F16:
        ok = False
        try:
            from paramarena.kernels import _cpu

            probe = np.array([0x3F800000, 0x33000001, 0x387FE000, 0x477FF000, 0x7F800001,
                              0xFFC12345, 0x00000001, 0x3F801000, 0x3F803000, 0x7F7FFFFF],
                             np.uint32)  # fmt: skip
            got = np.empty(probe.size, np.uint16)
            _cpu._f16_hw_range(probe.view(np.float32), probe, got, 0, probe.size)
            with np.errstate(all="ignore"):
                ok = bool(np.array_equal(got, probe.view(np.float32).astype(_F16).view(np.uint16)))
        except Exception:  # no half-precision lowering on this CPU: integer kernel instead
            ok = False
        _HW_F16.append(ok)
    return _HW_F16[0]


def _cast_into(src: np.ndarray, dst: np.ndarray) -> None:
    """Cast C-contiguous ``src`` into C-contiguous ``dst`` of the same size with a kernel."""
    from paramarena.kernels import _cpu

    pair = (src.dtype.name, dst.dtype.name)
    s = src.reshape(-1)
    d = dst.reshape(-1)
    n = s.size
    step = _CAST_CHUNK if n >= PARALLEL_THRESHOLD else max(n, 1)
    if pair == ("float32", "float16") and _hardware_f16_ok():
        bits, half = s.view(np.uint32), d.view(np.uint16)

        def hw_chunk(i: int) -> None:
            _cpu._f16_hw_range(s, bits, half, i * step, min(n, (i + 1) * step))

        run_chunks(hw_chunk, -(-n // step))
        return
    if pair in _BIT_KERNELS:
        kind, su, du = _BIT_KERNELS[pair]
        s, d = s.view(su), d.view(du)
    else:
        kind = 4

    def chunk(i: int) -> None:
        _cpu._cast_range(s, d, i * step, min(n, (i + 1) * step), kind)

    run_chunks(chunk, -(-n // step))


def cast(src: np.ndarray, dtype: Any) -> np.ndarray:
    """Return ``src`` converted to ``dtype`` as a new C-contiguous array.

    Bit-identical to ``src.astype(dtype)`` (numpy / ml_dtypes): round-to-nearest-even, Inf and
    NaN kept (NaN payloads handled as numpy and ml_dtypes do). float32 <-> float16, bfloat16 and
    float64 use Numba kernels (parallel above :data:`PARALLEL_THRESHOLD` elements); every other
    pair falls back to numpy ``astype``.

    Parameters
    ----------
    src : array_like
        Source values.
    dtype : dtype_like
        Target dtype (``"bfloat16"`` means ``ml_dtypes.bfloat16``).

    Returns
    -------
    numpy.ndarray
        A new array (even when the dtype is unchanged).
    """
    target = _bf16() if isinstance(dtype, str) and dtype == "bfloat16" else np.dtype(dtype)
    arr = np.asarray(src)
    if arr.size == 0 or not has_cast_kernel(arr.dtype, target):
        return arr.astype(target)
    arr = np.ascontiguousarray(arr)
    out = empty(arr.shape, target)  # huge pages when large: the kernel threads fault them in
    _cast_into(arr, out)
    return out


def cast_into(dst: np.ndarray, src: Any) -> None:
    """Write ``src`` converted to ``dst.dtype`` into ``dst``, as :func:`cast` converts.

    Parameters
    ----------
    dst : numpy.ndarray
        Writable destination of ``src``'s shape.
    src : array_like
        Source values.

    Raises
    ------
    paramarena.errors.ShapeMismatchError
        The shapes differ.
    """
    arr = np.asarray(src)
    if arr.shape != dst.shape:
        from paramarena.errors import ShapeMismatchError

        raise ShapeMismatchError(
            f"cast_into: source shape {arr.shape} differs from destination shape {dst.shape}."
        )
    if (
        arr.size
        and arr.dtype != dst.dtype
        and dst.flags.c_contiguous
        and has_cast_kernel(arr.dtype, dst.dtype)
    ):
        _cast_into(np.ascontiguousarray(arr), dst)
    else:
        np.copyto(dst, arr, casting="unsafe")


# --- zero -------------------------------------------------------------------------------------


def zero(arrays: Sequence[np.ndarray]) -> None:
    """Set every array in ``arrays`` to zero.

    For many small arrays, allocate them from one :class:`paramarena.devices.arena.Arena` and call
    :meth:`~paramarena.devices.arena.Arena.zero` instead: one kernel over the flat buffer.

    Parameters
    ----------
    arrays : sequence of numpy.ndarray
        Writable arrays.
    """
    for a in arrays:
        a.fill(0)


def zero_ranges(buffer: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> None:
    """Zero ``buffer[starts[r]:stops[r]]`` for every ``r`` in one kernel call.

    Parameters
    ----------
    buffer : numpy.ndarray
        A 1-D C-contiguous buffer (any dtype; indices are in elements).
    starts, stops : numpy.ndarray
        ``int64`` arrays of equal length, sorted and non-overlapping.
    """
    if starts.size == 0:
        return
    if starts.size == 1:
        s, e = int(starts[0]), int(stops[0])
        isz = buffer.itemsize
        if (e - s) * isz >= 2 * _ZERO_CHUNK and get_num_threads() > 1 and buffer.flags.c_contiguous:
            import ctypes  # libc memset through ctypes releases the GIL; no Numba kernel to load

            base = buffer.ctypes.data + s * isz
            nbytes = (e - s) * isz
            step = max(_ZERO_CHUNK, -(-nbytes // (_ZERO_CHUNKS_PER_THREAD * get_num_threads())))

            def chunk(i: int) -> None:
                ctypes.memset(base + i * step, 0, min(step, nbytes - i * step))

            run_chunks(chunk, -(-nbytes // step))
        else:
            buffer[s:e].fill(0)
        return
    from paramarena.kernels import _cpu

    isz = buffer.itemsize
    _cpu._zero_ranges_serial(buffer.view(np.uint8), starts * isz, stops * isz)
