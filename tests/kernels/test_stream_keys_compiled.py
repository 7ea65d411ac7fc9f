"""The compiled BLAKE2b stream-key kernel gives ``hashlib``'s keys for every kind of name."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from paramarena import kernels
from paramarena.kernels._keys import stream_keys_compiled

# names of every length around the 128-byte block (the seed's 8 bytes come first), empty and
# non-ASCII names, and names that are not str
NAMES: list[object] = (
    ["", "a", "net_dense0_weight", "é✓ünï", "\U0001f600" * 40]
    + ["x" * n for n in (111, 112, 119, 120, 121, 127, 128, 239, 240, 241, 248, 249, 1000)]
    + [7, 2.5]
)


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63, 2**64 - 1])
def test_compiled_keys_equal_hashlib_keys(seed: int) -> None:
    got = stream_keys_compiled(seed, NAMES)
    assert got.dtype == np.uint32
    assert got.shape == (len(NAMES), 4)
    for row, name in zip(got, NAMES, strict=True):
        np.testing.assert_array_equal(row, kernels.stream_key(seed, str(name)))


def test_many_names_are_cut_into_calls_with_the_same_keys() -> None:
    names = [f"net_layer{i}_weight" for i in range(3 * 4096 + 5)]
    got = kernels.stream_keys(99, names)  # over the threshold: the compiled kernel, in pieces
    for i in (0, 4095, 4096, 8191, 8192, len(names) - 1):
        np.testing.assert_array_equal(got[i], kernels.stream_key(99, names[i]))
    before = kernels.get_num_threads()
    kernels.set_num_threads(1)
    try:
        np.testing.assert_array_equal(kernels.stream_keys(99, names), got)
    finally:
        kernels.set_num_threads(before)


@pytest.mark.timeout(120)
def test_the_python_stand_in_gives_the_same_keys_without_the_jit() -> None:
    """``NUMBA_DISABLE_JIT=1``: nothing is compiled, the kernel's stand-in runs hashlib."""
    code = (
        "import numpy as np\n"
        "from paramarena.kernels._keys import stream_keys_compiled\n"
        f"names = {[str(n) for n in NAMES]!r}\n"
        "print(stream_keys_compiled(3, names).tobytes().hex())\n"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=100
    )
    assert out.returncode == 0, out.stderr
    want = stream_keys_compiled(3, [str(n) for n in NAMES]).tobytes().hex()
    assert out.stdout.strip() == want


@pytest.mark.parametrize("count", [3, 5000])
def test_prepared_keys_are_written_by_the_call_from_another_thread(count: int) -> None:
    import threading

    names = [f"net_layer{i}_weight" for i in range(count)]
    out, derive = kernels.prepare_stream_keys(5, names)
    assert out.dtype == np.uint32
    assert out.shape == (count, 4)
    worker = threading.Thread(target=derive)
    worker.start()
    worker.join()
    np.testing.assert_array_equal(out, kernels.stream_keys(5, names))
    np.testing.assert_array_equal(out[count - 1], kernels.stream_key(5, names[-1]))


def test_prepared_keys_check_the_seed_before_any_call() -> None:
    from paramarena.errors import ParameterValueError

    for seed in (-1, 2**64, 1.5, True):
        with pytest.raises(ParameterValueError, match="seed must be an int"):
            kernels.prepare_stream_keys(seed, ["a"] * 5000)  # type: ignore[arg-type]
