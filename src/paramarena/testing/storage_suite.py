"""``StorageTests``: the conformance suite every storage backend should pass.

Subclass it in a test module, give the two fixtures, declare what the backend can do, and
pytest runs the whole suite against the backend::

    import pytest
    from paramarena.testing import StorageTests

    class TestMyFormat(StorageTests):
        supports_unnamed = False          # capabilities: see the class attributes

        @pytest.fixture
        def storage_format(self):
            return "myformat"             # the StorageSpec.name

        @pytest.fixture
        def storage_uri(self, tmp_path):
            return str(tmp_path / "ckpt.myf")   # a path or URL with the backend's suffix

Every test goes through :mod:`paramarena.storage` (so suffix resolution is tested too) and
checks behaviour, including the error paths: a missing file, a truncated file, an unknown name
and, for formats with a commit protocol, an uncommitted checkpoint.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

__all__ = ["ALL_STORAGE_DTYPES", "ODD_NAMES", "StorageTests", "arrays_equal", "sample_array"]

#: Logical dtype names the suite round-trips (those a backend lacks are skipped).
ALL_STORAGE_DTYPES: tuple[str, ...] = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
)

#: Parameter names with characters that trip up naive formats.
ODD_NAMES: tuple[str, ...] = (
    "layer.0.weight",
    "encoder/block_1/dense:bias",
    "with space",
    "ünïcødé_γ",
    "dash-and+plus",
    "x" * 200,
)


def _dtype(name: str) -> np.dtype[Any]:
    if name == "bfloat16":
        import ml_dtypes

        bf16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bf16
    return np.dtype(name)


def sample_array(dtype_name: str, shape: tuple[int, ...], salt: int = 0) -> np.ndarray:
    """Return a deterministic array of ``dtype_name`` whose values exercise the dtype.

    Floats include negative values, fractions, ``inf`` and ``nan`` (when large enough);
    integers span the signed range; bools alternate.
    """
    dtype = _dtype(dtype_name)
    count = int(np.prod(shape, dtype=np.int64))
    rng = np.random.default_rng(1234 + salt)
    if dtype.kind == "b":
        flags: np.ndarray = (np.arange(count) + salt) % 3 == 0
        return flags.reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=count, dtype=dtype, endpoint=True)
        return values.reshape(shape)
    values64 = rng.standard_normal(count) * 100.0
    if count >= 4:
        values64[:4] = [np.inf, -np.inf, np.nan, -0.0]
    return values64.astype(dtype).reshape(shape)


def arrays_equal(expected: np.ndarray, got: np.ndarray) -> bool:
    """Whether ``got`` has the dtype, shape and exact bytes of ``expected`` (NaN-safe)."""
    got = np.asarray(got)
    if got.dtype != expected.dtype or got.shape != expected.shape:
        return False
    a = np.ascontiguousarray(expected)
    b = np.ascontiguousarray(got)
    return a.tobytes() == b.tobytes()


def _assert_same(expected: Mapping[str, np.ndarray], got: Any) -> None:
    assert isinstance(got, dict), f"expected a dict of arrays, got {type(got).__name__}"
    assert list(got) == list(expected), "names or their order differ"
    for name, arr in expected.items():
        assert arrays_equal(arr, got[name]), (
            f"array {name!r} differs: expected {arr.dtype} {arr.shape}, "
            f"got {np.asarray(got[name]).dtype} {np.asarray(got[name]).shape}"
        )


def _local(uri: str) -> str | None:
    from paramarena.storage.fileio import local_path

    return local_path(uri)


class StorageTests:
    """Conformance tests for a storage backend; subclass and provide the fixtures.

    Fixtures to provide
    -------------------
    storage_format
        The backend's registered format name (``StorageSpec.name``).
    storage_uri
        A fresh path or URL (as ``str``) ending in the backend's suffix, where nothing exists
        yet; usually built from ``tmp_path``.

    Capabilities (class attributes to override)
    -------------------------------------------
    supported_dtypes : tuple of str
        Logical dtypes the backend stores; the others are skipped.
    unsupported_dtypes_raise : bool
        Whether saving a dtype outside ``supported_dtypes`` must raise a ParamarenaError.
    supports_unnamed : bool
        Whether a list of arrays is saved and loaded back as a list.
    supports_zero_dim, supports_empty : bool
        0-d arrays and arrays with a zero-length axis.
    odd_names : tuple of str
        Names the backend must keep exactly.
    detects_bit_flips : bool
        Whether ``verify`` and ``load`` notice a flipped byte in the data (checksums).
    has_commit_protocol : bool
        Whether an uncommitted checkpoint is refused; then override :meth:`uncommit`.
    """

    supported_dtypes: ClassVar[tuple[str, ...]] = ALL_STORAGE_DTYPES
    unsupported_dtypes_raise: ClassVar[bool] = True
    supports_unnamed: ClassVar[bool] = True
    supports_zero_dim: ClassVar[bool] = True
    supports_empty: ClassVar[bool] = True
    odd_names: ClassVar[tuple[str, ...]] = ODD_NAMES
    detects_bit_flips: ClassVar[bool] = False
    has_commit_protocol: ClassVar[bool] = False

    # ------------------------------------------------------------------ fixtures to provide

    @pytest.fixture
    def storage_format(self) -> str:
        """Return the backend's format name; override in the subclass."""
        raise NotImplementedError("define a `storage_format` fixture returning the format name")

    @pytest.fixture
    def storage_uri(self, tmp_path: Path) -> str:
        """Return a fresh path or URL with the backend's suffix; override in the subclass."""
        raise NotImplementedError("define a `storage_uri(tmp_path)` fixture returning a path")

    # ------------------------------------------------------------------ damage helpers

    #: ``storage_options`` the damage helpers pass to fsspec for remote URIs.
    damage_storage_options: ClassVar[dict[str, Any]] = {}

    def _largest_object(self, uri: str) -> tuple[Any, str]:
        """Return ``(fsspec filesystem, path)`` of the checkpoint's largest file.

        Works for local paths and any fsspec URL (``memory://``, ``s3://``, ...), for
        single-file checkpoints and for directory stores alike.
        """
        fsspec = pytest.importorskip("fsspec")
        path = _local(uri)
        if path is not None:
            fs, root = fsspec.filesystem("file"), str(Path(path).resolve())
        else:
            fs, root = fsspec.core.url_to_fs(uri, **self.damage_storage_options)
        if fs.isdir(root):
            sizes = fs.find(root, detail=True)
            if not sizes:
                pytest.fail(f"checkpoint directory {uri!r} holds no files")
            return fs, max(sizes, key=lambda p: sizes[p]["size"])
        return fs, root

    def truncate(self, uri: str) -> None:
        """Cut the checkpoint's (largest) file to half its length."""
        fs, target = self._largest_object(uri)
        data = fs.cat_file(target)
        fs.pipe_file(target, data[: len(data) // 2])

    def flip_byte(self, uri: str) -> None:
        """Flip one byte in the middle of the checkpoint's (largest) file (array data)."""
        fs, target = self._largest_object(uri)
        data = bytearray(fs.cat_file(target))
        data[len(data) // 2] ^= 0xFF
        fs.pipe_file(target, bytes(data))

    def uncommit(self, uri: str) -> None:
        """Make a saved checkpoint look as if its save never finished (remove the commit marker).

        Override in subclasses with ``has_commit_protocol = True``.
        """
        raise NotImplementedError("override uncommit() for a backend with a commit protocol")

    # ------------------------------------------------------------------ helpers

    def _save(self, uri: str, arrays: Any, fmt: str, **options: Any) -> None:
        from paramarena import storage

        storage.save(uri, arrays, format=fmt, **options)

    def _load(self, uri: str, fmt: str, **options: Any) -> Any:
        from paramarena import storage

        return storage.load(uri, format=fmt, **options)

    def _basic(self) -> dict[str, np.ndarray]:
        return {
            "dense0_weight": sample_array("float32", (4, 3)),
            "dense0_bias": sample_array("float32", (4,), salt=1),
            "dense1_weight": sample_array("float32", (2, 4), salt=2),
        }

    # ------------------------------------------------------------------ resolution

    def test_suffix_resolves_to_backend(self, storage_format: str, storage_uri: str) -> None:
        """The URI's suffix (or scheme) selects this backend for reading and writing."""
        from paramarena import storage

        assert storage.resolve(storage_uri, "w").name == storage_format
        assert storage.resolve(storage_uri, "r").name == storage_format

    def test_save_load_without_format_argument(self, storage_uri: str) -> None:
        """``save``/``load`` without ``format=`` round-trip through suffix resolution."""
        from paramarena import storage

        arrays = self._basic()
        storage.save(storage_uri, arrays)
        _assert_same(arrays, storage.load(storage_uri))

    # ------------------------------------------------------------------ round trips

    @pytest.mark.parametrize("dtype_name", ALL_STORAGE_DTYPES)
    def test_roundtrip_dtype(self, storage_format: str, storage_uri: str, dtype_name: str) -> None:
        """Each supported dtype round-trips bit-exactly; unsupported ones are refused."""
        from paramarena.errors import ParamarenaError

        arrays = {"a": sample_array(dtype_name, (3, 5)), "b": sample_array(dtype_name, (7,), 1)}
        if dtype_name not in self.supported_dtypes:
            if not self.unsupported_dtypes_raise:
                pytest.skip(f"{storage_format} does not store {dtype_name}")
            with pytest.raises(ParamarenaError):
                self._save(storage_uri, arrays, storage_format)
            return
        self._save(storage_uri, arrays, storage_format)
        _assert_same(arrays, self._load(storage_uri, storage_format))

    def test_roundtrip_keeps_order(self, storage_format: str, storage_uri: str) -> None:
        """Names come back in the order they were saved."""
        names = ["zeta", "alpha", "mid_1", "mid_0", "Beta"]
        arrays = {n: sample_array("float32", (2,), salt=i) for i, n in enumerate(names)}
        self._save(storage_uri, arrays, storage_format)
        _assert_same(arrays, self._load(storage_uri, storage_format))

    def test_roundtrip_zero_dim(self, storage_format: str, storage_uri: str) -> None:
        """0-d arrays come back 0-d."""
        if not self.supports_zero_dim:
            pytest.skip(f"{storage_format} does not store 0-d arrays")
        arrays = {"scalar": np.array(3.5, dtype=np.float32), "other": sample_array("int64", ())}
        self._save(storage_uri, arrays, storage_format)
        got = self._load(storage_uri, storage_format)
        _assert_same(arrays, got)
        assert got["scalar"].shape == ()

    def test_roundtrip_empty(self, storage_format: str, storage_uri: str) -> None:
        """Arrays with a zero-length axis round-trip."""
        if not self.supports_empty:
            pytest.skip(f"{storage_format} does not store empty arrays")
        arrays: dict[str, np.ndarray] = {
            "empty_1d": np.zeros((0,), dtype=np.float32),
            "empty_2d": np.zeros((3, 0), dtype=np.float64),
            "full": sample_array("float32", (2, 2)),
        }
        self._save(storage_uri, arrays, storage_format)
        _assert_same(arrays, self._load(storage_uri, storage_format))

    def test_roundtrip_empty_dict(self, storage_format: str, storage_uri: str) -> None:
        """An empty checkpoint saves and loads."""
        self._save(storage_uri, {}, storage_format)
        got = self._load(storage_uri, storage_format)
        assert len(got) == 0

    def test_roundtrip_many_arrays(self, storage_format: str, storage_uri: str) -> None:
        """150 small arrays round-trip."""
        arrays = {
            f"block{i // 10}_layer{i % 10}_weight": sample_array("float32", (i % 5 + 1, 3), i)
            for i in range(150)
        }
        self._save(storage_uri, arrays, storage_format)
        _assert_same(arrays, self._load(storage_uri, storage_format))

    def test_roundtrip_odd_names(self, storage_format: str, storage_uri: str) -> None:
        """Names with dots, slashes, colons, spaces and non-ASCII are kept exactly."""
        arrays = {n: sample_array("float32", (2, 2), salt=i) for i, n in enumerate(self.odd_names)}
        self._save(storage_uri, arrays, storage_format)
        _assert_same(arrays, self._load(storage_uri, storage_format))

    def test_roundtrip_non_contiguous_input(self, storage_format: str, storage_uri: str) -> None:
        """Fortran-ordered and strided inputs save their logical values."""
        base = sample_array("float32", (6, 8))
        arrays = {"fortran": np.asfortranarray(base), "strided": base[::2, 1::3]}
        self._save(storage_uri, arrays, storage_format)
        got = self._load(storage_uri, storage_format)
        for name, arr in arrays.items():
            np.testing.assert_array_equal(got[name], arr)
            assert got[name].dtype == arr.dtype

    def test_unnamed_list(self, storage_format: str, storage_uri: str) -> None:
        """A list of arrays loads back as a list (MXNet ``nd.save`` style)."""
        if not self.supports_unnamed:
            pytest.skip(f"{storage_format} stores named arrays only")
        arrays = [sample_array("float32", (2, 3)), sample_array("int32", (4,), 1)]
        self._save(storage_uri, arrays, storage_format)
        got = self._load(storage_uri, storage_format)
        assert isinstance(got, list)
        assert len(got) == 2
        for a, b in zip(arrays, got, strict=True):
            assert arrays_equal(a, b)

    def test_overwrite_replaces_previous(self, storage_format: str, storage_uri: str) -> None:
        """Saving over a checkpoint replaces it completely."""
        self._save(storage_uri, self._basic(), storage_format)
        second = {"only": sample_array("float64", (3,), salt=9)}
        self._save(storage_uri, second, storage_format)
        _assert_same(second, self._load(storage_uri, storage_format))

    def test_failed_save_keeps_previous(self, storage_format: str, storage_uri: str) -> None:
        """A save that fails (object array) leaves the previous checkpoint loadable."""
        from paramarena.errors import ParamarenaError

        first = self._basic()
        self._save(storage_uri, first, storage_format)
        bad = {"ok": sample_array("float32", (2,)), "bad": np.array([object()], dtype=object)}
        with pytest.raises(ParamarenaError):
            self._save(storage_uri, bad, storage_format)
        _assert_same(first, self._load(storage_uri, storage_format))

    def test_loaded_arrays_are_writable_numpy(self, storage_format: str, storage_uri: str) -> None:
        """Loaded arrays are writable numpy arrays owned by the caller."""
        self._save(storage_uri, self._basic(), storage_format)
        got = self._load(storage_uri, storage_format)
        for arr in got.values():
            assert isinstance(arr, np.ndarray)
            arr[...] = 0  # the caller owns the result

    # ------------------------------------------------------------------ partial loads

    def test_load_names_subset(self, storage_format: str, storage_uri: str) -> None:
        """``load(names=...)`` returns exactly the requested arrays."""
        arrays = self._basic()
        self._save(storage_uri, arrays, storage_format)
        got = self._load(storage_uri, storage_format, names=["dense1_weight", "dense0_bias"])
        assert set(got) == {"dense1_weight", "dense0_bias"}
        for name in got:
            assert arrays_equal(arrays[name], got[name])

    def test_load_names_from_backend_directly(self, storage_format: str, storage_uri: str) -> None:
        """The backend itself honours ``names=`` and returns a dict."""
        from paramarena.hooks.manager import get_storage_spec

        arrays = self._basic()
        self._save(storage_uri, arrays, storage_format)
        backend = get_storage_spec(storage_format).backend
        got = backend.load(storage_uri, names=["dense0_bias"])
        assert isinstance(got, dict)
        assert list(got) == ["dense0_bias"]
        assert arrays_equal(arrays["dense0_bias"], got["dense0_bias"])

    def test_load_unknown_name(self, storage_format: str, storage_uri: str) -> None:
        """An unknown name raises MissingParameterError (a KeyError) naming it."""
        from paramarena.errors import MissingParameterError

        self._save(storage_uri, self._basic(), storage_format)
        with pytest.raises(MissingParameterError, match="no_such_param"):
            self._load(storage_uri, storage_format, names=["dense0_bias", "no_such_param"])
        with pytest.raises(KeyError):
            self._load(storage_uri, storage_format, names=["no_such_param"])

    # ------------------------------------------------------------------ inspect / verify

    def test_inspect(self, storage_format: str, storage_uri: str) -> None:
        """``inspect`` reports format, committed, names, shapes, logical dtypes and sizes."""
        from paramarena import storage

        arrays = dict(self._basic())
        if "bfloat16" in self.supported_dtypes:
            arrays["half"] = sample_array("bfloat16", (5, 2))
        self._save(storage_uri, arrays, storage_format)
        info = storage.inspect(storage_uri, format=storage_format)
        assert info.format == storage_format
        assert info.committed is True
        assert info.named is True
        assert [a.name for a in info.arrays] == list(arrays)
        for a in info.arrays:
            expected = arrays[a.name]
            assert a.shape == expected.shape
            assert a.dtype == expected.dtype.name
            assert a.nbytes == expected.nbytes

    def test_inspect_unnamed(self, storage_format: str, storage_uri: str) -> None:
        """``inspect`` of a list checkpoint reports ``named=False``."""
        from paramarena import storage

        if not self.supports_unnamed:
            pytest.skip(f"{storage_format} stores named arrays only")
        self._save(storage_uri, [sample_array("float32", (3,))], storage_format)
        info = storage.inspect(storage_uri, format=storage_format)
        assert info.named is False
        assert len(info.arrays) == 1

    def test_verify_ok(self, storage_format: str, storage_uri: str) -> None:
        """``verify`` of a fresh checkpoint is ok and checks every array."""
        from paramarena import storage

        arrays = self._basic()
        self._save(storage_uri, arrays, storage_format)
        report = storage.verify(storage_uri, format=storage_format)
        assert report.ok, report.problems
        assert report.checked == len(arrays)

    # ------------------------------------------------------------------ error paths

    def test_missing_checkpoint(self, storage_format: str, storage_uri: str) -> None:
        """A missing checkpoint raises StorageError from load, inspect and verify."""
        from paramarena import storage
        from paramarena.errors import StorageError

        named = re.escape(os.path.basename(storage_uri.rstrip("/")))  # messages name the file
        with pytest.raises(StorageError, match=named):
            storage.load(storage_uri, format=storage_format)
        with pytest.raises(OSError, match=named):  # StorageError is an OSError
            storage.inspect(storage_uri, format=storage_format)
        with pytest.raises(StorageError, match=named):
            storage.verify(storage_uri, format=storage_format)

    def test_truncated_checkpoint_refused(self, storage_format: str, storage_uri: str) -> None:
        """A truncated checkpoint is refused by load and reported by verify."""
        from paramarena import storage
        from paramarena.errors import StorageError

        arrays = {"w": sample_array("float32", (64, 64)), "b": sample_array("float32", (64,))}
        self._save(storage_uri, arrays, storage_format)
        self.truncate(storage_uri)
        with pytest.raises(StorageError):
            storage.load(storage_uri, format=storage_format)
        try:
            report = storage.verify(storage_uri, format=storage_format)
        except StorageError:
            return
        assert not report.ok

    def test_garbage_file_refused(self, storage_format: str, storage_uri: str) -> None:
        """A file that is not a checkpoint at all is refused with StorageError."""
        from paramarena import storage
        from paramarena.errors import StorageError

        path = _local(storage_uri)
        if path is None:
            pytest.skip("writes garbage to a local path only")
        p = Path(path)
        if p.suffix and not p.name.endswith((".zarr", ".zarr/")):
            p.write_bytes(b"this is not a checkpoint at all\x00\xff" * 10)
        else:
            p.mkdir(parents=True)
            (p / "garbage.bin").write_bytes(b"\x00\xff" * 10)
        with pytest.raises(StorageError):
            storage.load(storage_uri, format=storage_format)
        with pytest.raises(StorageError):
            storage.inspect(storage_uri, format=storage_format)

    def test_bit_flip_detected(self, storage_format: str, storage_uri: str) -> None:
        """A flipped data byte is reported by verify and refused by load (checksums)."""
        from paramarena import storage
        from paramarena.errors import CorruptCheckpointError, StorageError

        if not self.detects_bit_flips:
            pytest.skip(f"{storage_format} has no checksums")
        arrays = {"w": sample_array("float32", (64, 64))}
        self._save(storage_uri, arrays, storage_format)
        self.flip_byte(storage_uri)
        report = storage.verify(storage_uri, format=storage_format)
        assert not report.ok
        assert any("w" in name or "w" in what for name, what in report.problems)
        with pytest.raises((CorruptCheckpointError, StorageError)):
            storage.load(storage_uri, format=storage_format)

    def test_uncommitted_checkpoint_refused(self, storage_format: str, storage_uri: str) -> None:
        """An uncommitted checkpoint is refused (load) or reported (inspect)."""
        from paramarena import storage
        from paramarena.errors import UncommittedCheckpointError

        if not self.has_commit_protocol:
            pytest.skip(f"{storage_format} has no commit protocol")
        self._save(storage_uri, self._basic(), storage_format)
        self.uncommit(storage_uri)
        with pytest.raises(UncommittedCheckpointError):
            storage.load(storage_uri, format=storage_format)
        with pytest.raises(UncommittedCheckpointError):
            storage.load(storage_uri, format=storage_format, names=["dense0_bias"])
        try:
            info = storage.inspect(storage_uri, format=storage_format)
        except UncommittedCheckpointError:
            pass
        else:
            assert info.committed is False

    # ------------------------------------------------------------------ ParameterDict

    def test_parameter_dict_roundtrip(self, storage_uri: str) -> None:
        """``ParameterDict.save``/``load`` round-trip through this backend."""
        import paramarena as pa

        params = pa.ParameterDict("net_")
        params.get("weight", shape=(3, 4))
        params.get("bias", shape=(3,), init="zeros")
        params.initialize(pa.init.Uniform(), seed=11)
        params.save(storage_uri)
        fresh = pa.ParameterDict("net_")
        fresh.get("weight", shape=(3, 4))
        fresh.get("bias", shape=(3,))
        fresh.load(storage_uri)
        for name, param in params.items():
            np.testing.assert_array_equal(fresh[name].data(), param.data())
