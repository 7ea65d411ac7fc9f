"""``durable=False``: single-file saves that stay atomic but skip the fsyncs (docs/storage.md).

npz and MXNet ``.params`` honour it; a zarr checkpoint refuses it (its commit protocol is
durable by construction); remote single-file saves accept it and change nothing.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramarena import ParameterDict, storage
from paramarena.errors import ConfigurationError, StorageError
from paramarena.storage import fileio, npz_write

pytestmark = pytest.mark.timeout(120)

FILE_SUFFIXES = [".npz", ".params"]


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {f"w{i}": rng.standard_normal((64, 33)).astype(np.float32) for i in range(6)}
    out["tiny"] = np.arange(4, dtype=np.float32)
    out["i8"] = np.arange(-3, 9, dtype=np.int64).reshape(3, 4)
    return out


def same(got: Any, want: dict[str, np.ndarray]) -> None:
    assert isinstance(got, dict)
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype
        np.testing.assert_array_equal(got[name], value)


@pytest.fixture(params=[False, True], ids=["calling-thread", "writer-thread"])
def threaded(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run the npz writer on the calling thread, or on its writer thread with writeback steps."""
    if request.param:
        monkeypatch.setattr(npz_write, "_THREAD_MIN_BYTES", 0)
        monkeypatch.setattr(npz_write, "_WRITEBACK_STEP", 1)
        monkeypatch.setattr(npz_write, "_FIRST_BATCH_BYTES", 1)
        monkeypatch.setattr(npz_write, "_BATCH_BYTES", 1)
    return bool(request.param)


class Calls:
    """Counts ``os.fsync`` and writeback (``sync_file_range``) calls; both still happen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fsync: list[int] = []
        self.writeback: list[tuple[int, int, int]] = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            self.fsync.append(fd)
            real_fsync(fd)

        def writeback(fd: int, offset: int, nbytes: int) -> None:
            self.writeback.append((fd, offset, nbytes))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(fileio, "_WRITEBACK", [writeback])


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(monkeypatch)


# ------------------------------------------------------------------------------ behaviour


@pytest.mark.parametrize("suffix", FILE_SUFFIXES)
def test_round_trip_without_durability(tmp_path: Path, suffix: str, threaded: bool) -> None:
    want = arrays()
    path = tmp_path / f"a{suffix}"
    storage.save(path, want, durable=False)
    same(storage.load(path), want)
    assert storage.verify(path).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


@pytest.mark.parametrize("suffix", FILE_SUFFIXES)
def test_the_file_is_byte_identical_to_a_durable_save(
    tmp_path: Path, suffix: str, threaded: bool
) -> None:
    want = arrays(3)
    storage.save(tmp_path / f"durable{suffix}", want)
    storage.save(tmp_path / f"fast{suffix}", want, durable=False)
    durable = (tmp_path / f"durable{suffix}").read_bytes()
    assert durable == (tmp_path / f"fast{suffix}").read_bytes()


@pytest.mark.parametrize("suffix", FILE_SUFFIXES)
def test_durable_false_skips_every_fsync_and_the_writeback(
    tmp_path: Path, suffix: str, threaded: bool, calls: Calls
) -> None:
    storage.save(tmp_path / f"a{suffix}", arrays(), durable=False)
    assert calls.fsync == []
    assert calls.writeback == []
    same(storage.load(tmp_path / f"a{suffix}"), arrays())


@pytest.mark.parametrize("suffix", FILE_SUFFIXES)
@pytest.mark.parametrize("explicit", [False, True], ids=["default", "durable=True"])
def test_a_durable_save_fsyncs_the_file_and_its_directory(
    tmp_path: Path, suffix: str, explicit: bool, threaded: bool, calls: Calls
) -> None:
    options = {"durable": True} if explicit else {}
    storage.save(tmp_path / f"a{suffix}", arrays(), **options)
    assert len(calls.fsync) == 2  # the temporary file, then the directory
    if suffix == ".npz" and threaded and fileio.writeback_starter() is not None:
        assert calls.writeback, "the npz writer starts the writeback as the data goes"


def test_parameter_dict_save_passes_durable_through(tmp_path: Path, calls: Calls) -> None:
    shapes = {"w": (16, 8), "b": (8,)}
    params = ParameterDict("net_")
    for name, shape in shapes.items():
        params.get(name, shape=shape)
    params.initialize()
    path = tmp_path / "net.npz"
    params.save(path, durable=False)
    assert calls.fsync == []
    fresh = ParameterDict("net_")
    for name, shape in shapes.items():
        fresh.get(name, shape=shape)
    fresh.load(path)
    for name, param in params.items():
        np.testing.assert_array_equal(fresh[name].data(), param.data())


# ------------------------------------------------------------------------------ atomicity


def _fail_after(
    monkeypatch: pytest.MonkeyPatch, target: Any, name: str, calls_before_failure: int
) -> list[int]:
    """Make ``target.name`` raise ENOSPC from its ``calls_before_failure + 1``-th call on."""
    real: Callable[..., Any] = getattr(target, name)
    seen: list[int] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        seen.append(1)
        if len(seen) > calls_before_failure:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)
    return seen


@pytest.mark.parametrize("suffix", FILE_SUFFIXES)
def test_a_failure_in_the_middle_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, suffix: str, threaded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"a{suffix}"
    old = arrays(1)
    storage.save(path, old, durable=False)
    before = path.read_bytes()
    # 2 MiB: several writes on the calling thread too (the first after 256 KiB)
    new = {f"b{i}": np.full(1 << 17, i, np.float32) for i in range(4)}
    if suffix == ".npz":  # the direct writer: pwritev on the descriptor
        seen = _fail_after(monkeypatch, os, "pwritev", 1)
    else:  # the .params writer: sequential writes through the buffered file
        from paramarena.storage.mxnet import backend

        real = backend.write_params
        seen = []

        def failing(fh: Any, *args: Any, **kwargs: Any) -> None:
            fh.write(b"\0" * 4096)  # the temporary file has content when the failure comes
            fh.flush()
            seen.append(1)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(backend, "write_params", failing)
        assert real is not failing
    with pytest.raises(StorageError, match=rf"a\{suffix}.*No space left on device"):
        storage.save(path, new, durable=False)
    assert seen, "the failure was injected"
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    same(storage.load(path), old)


@pytest.mark.parametrize("suffix", FILE_SUFFIXES)
def test_a_failed_rename_keeps_the_old_file(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"a{suffix}"
    storage.save(path, arrays(1))
    before = path.read_bytes()
    _fail_after(monkeypatch, os, "replace", 0)
    with pytest.raises(StorageError, match="No space left on device"):
        storage.save(path, arrays(2), durable=False)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_the_new_file_replaces_the_old_one_only_when_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the save writes, the target is still the old file (the data goes to a temporary)."""
    path = tmp_path / "a.npz"
    old = arrays(1)
    storage.save(path, old)
    before = path.read_bytes()
    seen: list[bytes] = []
    real = os.pwritev

    def watching(fd: int, buffers: Any, offset: int) -> int:
        seen.append(path.read_bytes())
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", watching)
    storage.save(path, arrays(2), durable=False)
    monkeypatch.undo()
    assert seen
    assert all(content == before for content in seen)
    same(storage.load(path), arrays(2))


# ------------------------------------------------------------------------------ invalid values


@pytest.mark.parametrize("suffix", [*FILE_SUFFIXES, ".zarr", ".zarr.zip"])
@pytest.mark.parametrize("value", ["no", "False", 0, 1, None, np.bool_(False)])
def test_a_durable_value_that_is_not_a_bool_is_refused(
    tmp_path: Path, suffix: str, value: object
) -> None:
    path = tmp_path / f"a{suffix}"
    with pytest.raises(ConfigurationError, match=r"durable must be True or False; got .*a\."):
        storage.save(path, arrays(), durable=value)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("suffix", FILE_SUFFIXES)
def test_durable_is_a_save_option_only(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"a{suffix}"
    storage.save(path, arrays())
    with pytest.raises(ConfigurationError, match="durable"):
        storage.load(path, durable=False)


# ------------------------------------------------------------------------------ zarr, remote


@pytest.mark.parametrize("suffix", [".zarr", ".zarr.zip"])
def test_zarr_refuses_durable_false_and_keeps_the_previous_checkpoint(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"ckpt{suffix}"
    old = arrays(1)
    storage.save(path, old)
    listing = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(
        ConfigurationError, match=r"zarr checkpoint .*cannot be saved with durable=False"
    ):
        storage.save(path, arrays(2), durable=False)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == listing
    same(storage.load(path), old)


@pytest.mark.parametrize("suffix", [".zarr", ".zarr.zip"])
def test_zarr_accepts_durable_true_and_stays_durable(
    tmp_path: Path, suffix: str, calls: Calls
) -> None:
    path = tmp_path / f"ckpt{suffix}"
    storage.save(path, arrays(), durable=True)
    assert calls.fsync  # the commit protocol flushed its files and directories
    same(storage.load(path), arrays())


@pytest.mark.parametrize("suffix", FILE_SUFFIXES)
def test_remote_single_file_saves_accept_durable_false(suffix: str) -> None:
    """An object store has the object durably once it acknowledged it: nothing to skip."""
    pytest.importorskip("fsspec")
    url = f"memory://nondurable/a{suffix}"
    storage.save(url, arrays(), durable=False)
    same(storage.load(url), arrays())
    with pytest.raises(ConfigurationError, match="durable must be True or False"):
        storage.save(url, arrays(), durable="no")
