"""The random-fill kernels as native functions, cached as machine code that loads without Numba.

Numba's own cache (``cache=True``) saves compiling, but a process still imports Numba and builds
its typing and lowering tables before the first cached kernel runs: ~0.3 s of CPU, half of a
warm first ``initialize``. The fill kernels of :mod:`paramarena.kernels._cpu_fills` take only
pointers and integers (``numba.cfunc``), so their machine code needs nothing from Numba at run
time. The first process compiles a kernel with Numba and stores its object code (ELF) in a
checksummed file; later processes link that file into an llvmlite MCJIT engine (~20 ms, llvmlite
is Numba's own LLVM binding) and call the function through ``ctypes``, which releases the GIL
for the call as a ``nogil`` kernel does.

Cache files live in ``$NUMBA_CACHE_DIR/paramarena`` when that is set, else in this package's
``__pycache__`` when it is writable, else in ``$XDG_CACHE_HOME/paramarena`` (``~/.cache``). A
file is named by a digest of everything its code depends on (the kernel sources, Numba's and
llvmlite's versions, the CPU name and features, ``NUMBA_*`` settings), written atomically
(temporary file, then rename), and checked before use: format, digest of the contents, and
every symbol the code imports must resolve in this process. A file that fails any check is
ignored (and replaced by a fresh compile). Where the code cannot be loaded this way (not Linux,
so no ELF objects; no llvmlite), Numba's own cached ``cfunc`` is used: same code, same values.
This module must not import numba (it does so only to compile).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import os
import struct
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["fill_kernel"]

#: kernel(buf, items, params, keys, i0, i1): see ``_cpu_fills``
FillKernel = Callable[[Any, Any, Any, Any, int, int], None]

_MAGIC = b"PAKERNEL\x01\x00\x00\x00"
_HERE = Path(__file__).resolve().parent
_SOURCES = ("_bodies.py", "_bitcast.py", "_cpu_fills.py", "_cpu_keys.py")
#: the buffer is passed as ``ctypes.c_ubyte.from_buffer(array)`` (cheaper than ``array.ctypes``)
_PROTOTYPE = ctypes.CFUNCTYPE(
    None, ctypes.POINTER(ctypes.c_ubyte), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
    ctypes.c_int64, ctypes.c_int64,
)  # fmt: skip

#: the stream-key kernel (``_cpu_keys``): same argument layout, served the same way
_KEYS = "stream_keys"
_lock = threading.Lock()
_loaded: dict[str, FillKernel] = {}
_keep: list[Any] = []  # engines / cfuncs that own the loaded code: alive for the process


def fill_kernel(name: str) -> FillKernel:
    """Return kernel ``name`` (``"f32_uniform"``, ... of ``_cpu_fills``, or ``"stream_keys"``)."""
    fn = _loaded.get(name)
    if fn is None:
        with _lock:
            fn = _loaded.get(name)
            if fn is None:
                fn = _loaded[name] = _obtain(name)
    return fn


def _obtain(name: str) -> FillKernel:
    if os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0"):
        from paramarena.kernels import _cpu_fills, _cpu_keys  # debugging: nothing compiled

        if name == _KEYS:
            return _cpu_keys.python_kernel()  # type: ignore[no-any-return]
        return _cpu_fills.python_kernel(name)  # type: ignore[no-any-return]
    if not sys.platform.startswith("linux"):  # object code is not ELF: Numba's own cache
        return _from_numba(name, cache=True)
    try:
        llvm: Any = _llvm()
        key = _key(name, llvm)
    except Exception:  # no usable llvmlite: Numba's own cache
        return _from_numba(name, cache=True)
    directory = _cache_dir()
    path = None if directory is None else directory / f"{name}-{key.hex()[:32]}.bin"
    if path is not None:
        record = _read(path, key)
        if record is not None:
            fn = _link(llvm, *record)
            if fn is not None:
                return fn
    # compile (once per cache directory; a function loaded from Numba's cache has no object code)
    cfunc = _compile(name, cache=False)
    if path is not None:
        try:
            symbol, obj = _object_code(cfunc)
            if _elf_imports(obj) is not None:
                _write(path, key, symbol, obj)
        except Exception:  # the cache is an optimisation: never fail a fill over it
            pass
    _keep.append(cfunc)
    return _PROTOTYPE(cfunc.address)


def _from_numba(name: str, *, cache: bool) -> FillKernel:
    cfunc = _compile(name, cache=cache)
    _keep.append(cfunc)
    return _PROTOTYPE(cfunc.address)


def _compile(name: str, *, cache: bool) -> Any:
    if name == _KEYS:
        from paramarena.kernels import _cpu_keys

        return _cpu_keys.compile_kernel(cache=cache)
    from paramarena.kernels import _cpu_fills

    return _cpu_fills.compile_kernel(name, cache=cache)


def _object_code(cfunc: Any) -> tuple[str, bytes]:
    """Return the C-ABI symbol and ELF object code of a compiled ``cfunc`` (as Numba caches)."""
    _, kind, payload = cfunc._library.serialize_using_object_code()
    if kind != "object":
        raise ValueError(f"unexpected library kind {kind!r}")
    return str(cfunc.native_name), bytes(payload[0])


# --- llvmlite ---------------------------------------------------------------------------------

_LLVM: list[Any] = []


def _llvm() -> Any:
    if not _LLVM:
        import llvmlite.binding as llvm  # type: ignore[import-untyped]

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _LLVM.append(llvm)
    return _LLVM[0]


def _link(llvm: Any, symbol: str, obj: bytes) -> FillKernel | None:
    """Link ``obj`` into a new MCJIT engine; the function ``symbol``, or None if refused."""
    imports = _elf_imports(obj)
    if imports is None:
        return None
    process = ctypes.CDLL(None)
    for sym in imports:  # every import must resolve here, or LLVM would abort the process
        if llvm.address_of_symbol(sym):
            continue
        try:
            addr = ctypes.cast(getattr(process, sym), ctypes.c_void_p).value
        except AttributeError:
            return None
        if not addr:
            return None
        llvm.add_symbol(sym, addr)
    try:
        target = llvm.Target.from_default_triple()
        engine = llvm.create_mcjit_compiler(
            llvm.parse_assembly(""), target.create_target_machine(jit=True)
        )
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        addr = engine.get_function_address(symbol)
    except Exception:
        return None
    if not addr:
        return None
    _keep.append(engine)
    return _PROTOTYPE(addr)


def _elf_imports(obj: bytes) -> list[str] | None:
    """Names of the undefined symbols of a 64-bit little-endian ELF object, or None if not one."""
    try:
        if obj[:6] != b"\x7fELF\x02\x01":
            return None
        shoff, shentsize, shnum = (
            struct.unpack_from("<Q", obj, 0x28)[0],
            struct.unpack_from("<H", obj, 0x3A)[0],
            struct.unpack_from("<H", obj, 0x3C)[0],
        )
        if shentsize != 64 or shoff + shnum * 64 > len(obj):
            return None
        sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * 64) for i in range(shnum)]
        names: list[str] = []
        for sh in sections:
            if sh[1] != 2:  # SHT_SYMTAB
                continue
            off, size, link, entsize = sh[4], sh[5], sh[6], sh[9]
            if entsize != 24 or link >= shnum or off + size > len(obj):
                return None
            str_off, str_size = sections[link][4], sections[link][5]
            if str_off + str_size > len(obj):
                return None
            for e in range(off, off + size - size % 24, 24):
                st_name, _, _, st_shndx = struct.unpack_from("<IBBH", obj, e)
                if st_shndx == 0 and st_name:
                    if st_name >= str_size:
                        return None
                    end = obj.index(b"\0", str_off + st_name, str_off + str_size)
                    names.append(obj[str_off + st_name : end].decode("ascii"))
        return names
    except (struct.error, ValueError, UnicodeDecodeError):
        return None


# --- the cache file ---------------------------------------------------------------------------


def _key(name: str, llvm: Any) -> bytes:
    """Digest of everything the machine code of kernel ``name`` depends on."""
    import llvmlite

    h = hashlib.sha256(_MAGIC + name.encode())
    for source in _SOURCES:
        h.update((_HERE / source).read_bytes())
    h.update(_numba_version())
    settings = sorted(
        (k, v)
        for k, v in os.environ.items()
        if k.startswith("NUMBA_") and k not in ("NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS")
    )
    h.update(
        repr(
            (
                llvmlite.__version__, llvm.llvm_version_info, llvm.get_host_cpu_name(),
                llvm.get_host_cpu_features().flatten(), llvm.get_process_triple(), settings,
                sys.byteorder,
            )
        ).encode()
    )  # fmt: skip
    return h.digest()


def _numba_version() -> bytes:
    """Numba's version file (found without importing Numba), else its installed version."""
    spec = importlib.util.find_spec("numba")
    if spec is not None and spec.origin:
        version_file = Path(spec.origin).parent / "_version.py"
        if version_file.is_file():
            return version_file.read_bytes()
    from importlib.metadata import version

    return version("numba").encode()


def _cache_dir() -> Path | None:
    base = os.environ.get("NUMBA_CACHE_DIR", "").strip()
    candidates = [Path(base) / "paramarena"] if base else [_HERE / "__pycache__"]
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    with contextlib.suppress(RuntimeError):  # no home directory (no HOME, no passwd entry)
        candidates.append(Path(xdg or Path.home() / ".cache") / "paramarena")
    for directory in candidates:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK | os.X_OK):
            return directory
    return None


def _read(path: Path, key: bytes) -> tuple[str, bytes] | None:
    """(symbol, object code) of a valid cache file for ``key``, else None."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + 64 + 2
    if len(data) < head or data[: len(_MAGIC)] != _MAGIC:
        return None
    stored_key = data[len(_MAGIC) : len(_MAGIC) + 32]
    digest = data[len(_MAGIC) + 32 : len(_MAGIC) + 64]
    if stored_key != key or hashlib.sha256(data[len(_MAGIC) + 64 :]).digest() != digest:
        return None
    (nsym,) = struct.unpack_from("<H", data, head - 2)
    if head + nsym > len(data):
        return None
    try:
        symbol = data[head : head + nsym].decode("ascii")
    except UnicodeDecodeError:
        return None
    if not symbol.isprintable():
        return None
    return symbol, data[head + nsym :]


def _write(path: Path, key: bytes, symbol: str, obj: bytes) -> None:
    body = struct.pack("<H", len(symbol)) + symbol.encode("ascii") + obj
    data = _MAGIC + key + hashlib.sha256(body).digest() + body
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
