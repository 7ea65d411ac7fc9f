"""The next save of a path removes the temporaries a killed save left, never a live writer's."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paramarena import storage
from paramarena.storage.fileio import remove_stale_temps, temp_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and pids")

ARRAYS = {"w": np.arange(12, dtype=np.float32)}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


def _temp(path: Path, pid: int, suffix: str = ".tmp") -> Path:
    tmp = path.parent / f".{path.name}.{pid}-0123456789ab{suffix}"
    if suffix.endswith(".d"):
        tmp.mkdir()
        (tmp / "chunk").write_bytes(b"x" * 100)
    else:
        tmp.write_bytes(b"x" * 100)
    return tmp


@pytest.mark.parametrize("suffix", [".npz", ".params", ".zarr.zip"])
def test_save_removes_a_dead_writers_temporaries(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"ckpt{suffix}"
    dead = _temp(path, _dead_pid())
    dead_dir = _temp(path, _dead_pid(), ".tmp.d")
    other = _temp(tmp_path / f"other{suffix}", _dead_pid())  # another path's: not ours
    storage.save(path, ARRAYS)
    assert not dead.exists()
    assert not dead_dir.exists()
    assert other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, other.name])


def test_a_live_writers_temporary_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.npz"
    mine = _temp(path, os.getpid())  # this process is alive: kept though unlocked
    locked = _temp(path, _dead_pid())  # a dead pid, but someone holds its lock
    fd = os.open(locked, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        storage.save(path, ARRAYS)
        assert mine.exists()
        assert locked.exists()
    finally:
        os.close(fd)
    storage.save(path, ARRAYS)  # lock released: now it goes
    assert not locked.exists()
    assert mine.exists()


def test_an_unlocked_temporary_older_than_the_grace_period_goes(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.params"
    old = _temp(path, os.getpid())
    hours_ago = time.time() - 7200
    os.utime(old, (hours_ago, hours_ago))
    assert remove_stale_temps(str(path), grace=3600) == [str(old)]


def test_temp_path_pattern() -> None:
    name = os.path.basename(temp_path("/x/ckpt.npz"))
    assert name.startswith(f".ckpt.npz.{os.getpid()}-")
    assert name.endswith(".tmp")
