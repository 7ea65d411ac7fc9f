"""The fill kernels' machine-code cache (``kernels._native``): reuse, validation, fallbacks."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paramarena import errors, kernels
from paramarena.kernels import _native

# a fresh process: fill, then report whether Numba was imported and the values' bytes
_CHILD = r"""
import sys, hashlib
import numpy as np
from paramarena import kernels
out = np.empty(1003, np.float32)
kernels.fill_normal(out, 0.5, 2.0, seed=9, key="w")
buf = np.zeros(70_000, np.float64)
kernels.fill_random_ranges(buf, np.array([0, 5]), np.array([5, 69_990]), np.array([0, 0]),
                           np.array([0.0, 1.0]), np.array([1.0, 2.0]), kernels.stream_keys(9, "ab"))
keys = kernels.stream_keys(9, [f"n{i}" for i in range(5000)])  # the compiled key kernel
digest = hashlib.sha256(out.tobytes() + buf.tobytes() + keys.tobytes()).hexdigest()
print("numba" in sys.modules, digest)
"""


def _child(cache: Path) -> tuple[bool, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, check=True, capture_output=True, text=True,
        timeout=300,
    ).stdout.split()  # fmt: skip
    return out[0] == "True", out[1]


def _expected() -> str:
    import hashlib

    out = np.empty(1003, np.float32)
    kernels.fill_normal(out, 0.5, 2.0, seed=9, key="w")
    buf = np.zeros(70_000, np.float64)
    for key, (o, n, a, b) in zip("ab", [(0, 5, 0.0, 1.0), (5, 69_990, 1.0, 3.0)], strict=True):
        kernels.fill_uniform(buf[o : o + n], a, b, seed=9, key=key)
    keys = np.array([kernels.stream_key(9, f"n{i}") for i in range(5000)], np.uint32)
    return hashlib.sha256(out.tobytes() + buf.tobytes() + keys.tobytes()).hexdigest()


@pytest.mark.timeout(600)
def test_second_process_loads_cached_code_without_numba(tmp_path: Path) -> None:
    expected = _expected()
    numba_used, digest = _child(tmp_path)  # compiles, writes the cache files
    assert numba_used
    assert digest == expected
    files = sorted(p.name.split("-")[0] for p in (tmp_path / "paramarena").glob("*.bin"))
    assert files == ["f32_normal", "f64_uniform", "stream_keys"]  # only the kernels that ran
    for path in (tmp_path / "paramarena").glob("*.bin"):
        record = _native._read(path, path.read_bytes()[12:44])
        assert record is not None
        imports = _native._elf_imports(record[1])
        assert imports == []  # nothing from Numba or CPython: links in a process without them
    numba_used, digest = _child(tmp_path)
    assert not numba_used  # linked from the cache files
    assert digest == expected


@pytest.mark.timeout(600)
def test_damaged_cache_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    expected = _expected()
    _child(tmp_path)
    for path in (tmp_path / "paramarena").glob("*.bin"):
        data = bytearray(path.read_bytes())
        data[-100] ^= 0xFF  # one flipped byte in the machine code: the digest no longer matches
        path.write_bytes(bytes(data))
        assert _native._read(path, data[12:44]) is None
    numba_used, digest = _child(tmp_path)
    assert numba_used  # compiled again
    assert digest == expected
    numba_used, digest = _child(tmp_path)
    assert not numba_used
    assert digest == expected


def test_read_refuses_other_keys_and_short_or_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "k.bin"
    key = bytes(range(32))
    _native._write(path, key, "sym", b"\x7fELF-not-really")
    assert _native._read(path, key) == ("sym", b"\x7fELF-not-really")
    assert _native._read(path, bytes(32)) is None  # written for another key
    path.write_bytes(path.read_bytes()[:40])
    assert _native._read(path, key) is None
    path.write_bytes(b"not a kernel file at all" * 4)
    assert _native._read(path, key) is None
    assert _native._read(tmp_path / "missing.bin", key) is None


def test_elf_imports_rejects_what_is_not_a_64_bit_elf_object() -> None:
    assert _native._elf_imports(b"") is None
    assert _native._elf_imports(b"\x7fELF\x01\x01" + bytes(100)) is None  # 32-bit
    assert _native._elf_imports(b"\x7fELF\x02\x01" + bytes(20)) is None  # truncated header
    header = bytearray(b"\x7fELF\x02\x01" + bytes(58))
    header[0x28:0x30] = (10**6).to_bytes(8, "little")  # section table past the end
    header[0x3A:0x3C] = (64).to_bytes(2, "little")
    header[0x3C:0x3E] = (3).to_bytes(2, "little")
    assert _native._elf_imports(bytes(header)) is None


def test_link_refuses_object_code_with_unresolvable_imports() -> None:
    llvm = _native._llvm()
    assert _native._link(llvm, "f", b"garbage") is None
    # the float64 normal kernel imports libm's log: link its cached code, then a copy whose
    # import is renamed to a symbol that nothing defines (LLVM would abort the process)
    kernels.fill_normal(np.empty(4, np.float64), 0.0, 1.0, seed=0, key="x")
    directory = _native._cache_dir()
    assert directory is not None
    checked = 0
    for path in directory.glob("f64_normal-*.bin"):
        record = _native._read(path, path.read_bytes()[12:44])
        if record is None:
            continue
        symbol, obj = record
        imports = _native._elf_imports(obj)
        assert imports is not None
        assert "log" in imports
        fn = _native._link(llvm, symbol, obj)
        assert fn is not None
        out, ref = np.empty(9), np.empty(9)
        items, params = np.array([0, 0, 9], np.int64), np.array([0.0, 1.0])
        keys = kernels.stream_keys(0, ["x"])
        buf = ctypes.c_ubyte.from_buffer(out)
        fn(buf, items.ctypes.data, params.ctypes.data, keys.ctypes.data, 0, 1)
        kernels.fill_normal(ref, 0.0, 1.0, seed=0, key="x")
        np.testing.assert_array_equal(out, ref)
        missing = obj.replace(b"\0log\0", b"\0zqx\0")
        assert _native._elf_imports(missing) == [
            "zqx" if name == "log" else name for name in imports
        ]
        assert _native._link(llvm, symbol, missing) is None
        checked += 1
    assert checked


@pytest.mark.parametrize(
    ("offsets", "sizes"),
    [([0, 10], [10, 7]), ([-1], [2]), ([0], [-1]), ([5], [12])],
    ids=["past-end", "negative-offset", "negative-size", "overruns"],
)
def test_ranges_outside_the_buffer_are_refused(offsets: list[int], sizes: list[int]) -> None:
    buf = np.zeros(16, np.float32)
    n = len(offsets)
    with pytest.raises(errors.ParameterValueError, match="buffer's size"):
        kernels.fill_random_ranges(
            buf, np.array(offsets), np.array(sizes), np.zeros(n, np.int64), np.zeros(n),
            np.ones(n), kernels.stream_keys(0, [str(j) for j in range(n)]),
        )  # fmt: skip
    assert not buf.any()


def test_ranges_with_mismatched_arrays_or_unknown_distributions_are_refused() -> None:
    buf = np.zeros(16, np.float32)
    keys = kernels.stream_keys(0, ["a"])
    one, zero = np.ones(1), np.zeros(1, np.int64)
    with pytest.raises(errors.ParameterValueError):
        kernels.fill_random_ranges(buf, zero, zero + 4, np.array([2]), one, one, keys)
    with pytest.raises(errors.ParameterValueError):
        kernels.fill_random_ranges(buf, zero, zero + 4, zero, one, one, np.zeros((2, 4)))
    with pytest.raises(errors.ParameterValueError):
        kernels.fill_random_ranges(buf, zero, np.array([1, 2]), zero, one, one, keys)


_VALUES = r"""
import numpy as np
from paramarena import kernels
from paramarena.kernels import offsets
parts = []
for dt in (np.float32, np.float64):
    for fill in (kernels.fill_uniform, kernels.fill_normal):
        a = np.empty(11, dt)
        fill(a, 0.5, 2.0, seed=3, key="x")
        parts.append(a.tobytes())
    b = np.empty(6, dt)
    offsets.fill_normal_at(b, 0.0, 1.0, seed=3, key="x", offset=3)
    parts.append(b.tobytes())
print(b"".join(parts).hex())
"""


@pytest.mark.timeout(600)
def test_same_values_with_numbas_jit_disabled(tmp_path: Path) -> None:
    def run(**extra: str) -> str:
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), **extra)
        return subprocess.run(
            [sys.executable, "-c", _VALUES], env=env, check=True, capture_output=True,
            text=True, timeout=300,
        ).stdout  # fmt: skip

    assert run(NUMBA_DISABLE_JIT="1") == run()


def _kernel_modules(name: str, seen: set[str]) -> set[str]:
    """``name`` and every ``paramarena.kernels`` module it imports, recursively (file names)."""
    import ast

    seen.add(name)
    tree = ast.parse((_native._HERE / name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "paramarena.kernels":
            for alias in node.names:
                module = f"{alias.name}.py"
                if module not in seen and (_native._HERE / module).is_file():
                    _kernel_modules(module, seen)
    return seen


def test_cache_key_covers_every_source_of_the_kernels(tmp_path: Path, monkeypatch) -> None:
    # a stale object file must never be used: every module the C-ABI kernels are compiled from
    # is part of the key, and changing any of them changes it
    assert _kernel_modules("_cpu_fills.py", set()) <= set(_native._SOURCES)
    assert _kernel_modules("_cpu_keys.py", set()) <= set(_native._SOURCES)
    llvm = _native._llvm()
    here = tmp_path / "kernels"
    here.mkdir()
    for source in _native._SOURCES:
        (here / source).write_bytes((_native._HERE / source).read_bytes())
    monkeypatch.setattr(_native, "_HERE", here)
    base = _native._key("f32_normal", llvm)
    for source in _native._SOURCES:
        original = (here / source).read_bytes()
        (here / source).write_bytes(original + b"\n# edited\n")
        assert _native._key("f32_normal", llvm) != base, source
        (here / source).write_bytes(original)
    assert _native._key("f32_normal", llvm) == base
    assert _native._key("f32_uniform", llvm) != base
