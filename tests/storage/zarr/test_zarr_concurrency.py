"""Two writers and racing readers of one local zarr checkpoint (issue 9 items 1 and 2).

The stress test runs ``PARAMARENA_STRESS_LOADS`` loads (default 500) against a writer process
re-saving the checkpoint; ``PARAMARENA_STRESS_LOADS=4000`` is the long run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import ConcurrentWriteError, CorruptCheckpointError
from paramarena.storage.zarr.commit import (
    COMMIT_MARKER,
    claim_version,
    committed_version,
    is_version_name,
    new_version_name,
    remove_superseded,
)
from paramarena.storage.zarr.location import Location

SETS = textwrap.dedent(
    """
    import numpy as np

    def make_sets():
        sets = []
        for k in range(2):
            rng = np.random.default_rng(k)
            sets.append({
                "w": rng.standard_normal((40, 30)).astype(np.float32),
                "b": np.full(17 + 5 * k, k, np.float64),
                "i": np.arange(9 + k, dtype=np.int32),
                f"only{k}": np.ones(3 + k, np.float16),
            })
        return sets
    """
)
_namespace: dict[str, object] = {}
exec(SETS, _namespace)  # the same arrays in this process and in the writer processes
SET_LIST: list[dict[str, np.ndarray]] = _namespace["make_sets"]()  # type: ignore[operator]

WRITER = SETS + textwrap.dedent(
    """
    import os, sys
    from paramarena import storage

    path, stop, which = sys.argv[1], sys.argv[2], sys.argv[3]
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else None
    sets = make_sets()
    saves = 0
    while not os.path.exists(stop) and (limit is None or saves < limit):
        k = (saves + 1) % 2 if which == "alternate" else int(which)
        storage.save(path, sets[k], chunk_bytes=1024)
        saves += 1
        if saves == 1:
            print("ready", flush=True)  # the first save is done: imports no longer count
    print(saves, flush=True)
    """
)


def _matches_a_set(got: object) -> bool:
    if not isinstance(got, dict):
        return False
    for s in SET_LIST:
        if list(got) == list(s) and all(
            got[n].dtype == v.dtype and np.array_equal(got[n], v) for n, v in s.items()
        ):
            return True
    return False


def _join_cleanups() -> None:
    for t in threading.enumerate():
        if t.name == "paramarena-zarr-cleanup":
            t.join(timeout=30)


def _versions(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if is_version_name(p.name))


def _current(path: Path) -> str | None:
    return committed_version((path / COMMIT_MARKER).read_bytes())


@pytest.mark.timeout(120)
def test_two_writer_threads_leave_one_complete_version(tmp_path: Path) -> None:
    for trial in range(5):
        path = tmp_path / f"t{trial}.zarr"
        outcomes: list[str] = []

        def write(k: int, path: Path = path, outcomes: list[str] = outcomes) -> None:
            for _ in range(4):
                try:
                    storage.save(path, SET_LIST[k], chunk_bytes=1024)
                    outcomes.append("ok")
                except ConcurrentWriteError:
                    outcomes.append("conflict")
                except Exception as exc:
                    outcomes.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=write, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        _join_cleanups()
        assert len(outcomes) == 8
        assert set(outcomes) <= {"ok", "conflict"}, outcomes
        assert outcomes.count("ok") >= 1
        assert _matches_a_set(storage.load(path))
        assert storage.verify(path).ok
        assert _versions(path) == [_current(path)]  # every replaced version was removed


@pytest.mark.timeout(180)
def test_two_writer_processes_leave_one_complete_version(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    stop = tmp_path / "never"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(stop), str(k), "15"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in (0, 1)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err.decode()
        assert out.split()[-1] == b"15"  # every save succeeded
    assert _matches_a_set(storage.load(path))
    assert storage.verify(path).ok
    assert _versions(path) == [_current(path)]


def test_cleanup_keeps_a_live_writers_version_and_removes_an_abandoned_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.zarr"
    storage.save(path, SET_LIST[0])
    loc = Location(str(path), None)
    live = new_version_name()
    claim = claim_version(loc, live)  # another writer, still writing
    (path / live / "partial").write_bytes(b"x")
    storage.save(path, SET_LIST[1])
    _join_cleanups()
    assert (path / live / "partial").exists()
    claim.release()  # that writer died (its lock is gone with it)
    # one killed two hours ago between creating its version and naming it
    staging = path / f".claim-v{time.time_ns() - 7200 * 10**9:x}-abcdef"
    staging.mkdir()
    storage.save(path, SET_LIST[0])
    _join_cleanups()
    assert not (path / live).exists()
    assert not staging.exists()
    assert _versions(path) == [_current(path)]
    assert _matches_a_set(storage.load(path))


def test_cleanup_never_deletes_the_committed_version(tmp_path: Path) -> None:
    path = tmp_path / "n.zarr"
    storage.save(path, SET_LIST[0])
    _join_cleanups()
    current = _current(path)
    assert current is not None
    loc = Location(str(path), None)
    # even when told that the committed version was replaced, cleanup re-reads COMMIT
    assert remove_superseded(loc, new_version_name(), current, grace=0.0) == []
    assert _matches_a_set(storage.load(path))


def test_remote_cleanup_waits_out_the_grace_period() -> None:
    import fsspec

    url = f"memory://grace-{os.getpid()}-{time.time_ns()}/g.zarr"
    storage.save(url, SET_LIST[0])
    fs = fsspec.filesystem("memory")
    root = url.removeprefix("memory://")
    young = new_version_name()
    fs.pipe_file(f"{root}/{young}/zarr.json", b"{}")  # another writer's save in progress
    storage.save(url, SET_LIST[1])
    assert fs.exists(f"{root}/{young}/zarr.json")
    storage.save(url, SET_LIST[0], cleanup_grace=0)
    assert not fs.exists(f"{root}/{young}/zarr.json")
    assert _matches_a_set(storage.load(url))


def _stress(path: Path, loads: int, readers: int = 2) -> tuple[int, int, list[str]]:
    """Load ``path`` ``loads`` times from ``readers`` threads while a process re-saves it."""
    storage.save(path, SET_LIST[0], chunk_bytes=1024)
    stop = path.parent / f"{path.name}.stop"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(stop), "alternate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    errors: list[str] = []
    done = [0]
    lock = threading.Lock()

    def read() -> None:
        while True:
            with lock:
                if done[0] >= loads:
                    return
                done[0] += 1
            try:
                got = storage.load(path)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if not _matches_a_set(got):
                errors.append("loaded arrays match neither saved set")

    try:
        threads = [threading.Thread(target=read) for _ in range(readers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop.touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    return done[0], int(out.split()[-1]), errors


LOADS = int(os.environ.get("PARAMARENA_STRESS_LOADS", "500"))


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["s.zarr", "s.zarr.zip"])
def test_loads_racing_saves_never_report_false_errors(tmp_path: Path, name: str) -> None:
    loads, saves, errors = _stress(tmp_path / name, LOADS)
    print(f"{name}: {loads} loads racing {saves} saves, {len(errors)} errors")
    assert loads == LOADS
    assert saves >= 3, "the writer hardly ran: nothing raced"
    assert errors == []


def test_a_load_that_loses_its_version_to_a_commit_reads_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paramarena.storage.zarr import reader

    path = tmp_path / "r.zarr"
    storage.save(path, SET_LIST[0], chunk_bytes=1024)
    _join_cleanups()
    real = reader.read
    calls = [0]

    def resave_first(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:  # a concurrent save commits and deletes the version being read
            storage.save(path, SET_LIST[1], chunk_bytes=1024)
            _join_cleanups()
        return real(*args, **kwargs)

    monkeypatch.setattr(reader, "read", resave_first)
    got = storage.load(path)
    assert calls[0] == 2
    assert _matches_a_set(got)
    assert list(got) == list(SET_LIST[1])  # type: ignore[arg-type]


def test_a_checkpoint_re_committed_during_every_attempt_is_a_concurrent_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import paramarena.storage.zarr.racing as racing

    path = tmp_path / "e.zarr"
    storage.save(path, SET_LIST[0])
    (path / str(_current(path)) / "packed_float32" / "zarr.json").unlink()
    monkeypatch.setattr(racing, "moved", lambda loc: True)
    with pytest.raises(ConcurrentWriteError, match="re-committed"):
        storage.load(path)
    monkeypatch.undo()
    with pytest.raises(CorruptCheckpointError, match="missing"):  # COMMIT unchanged: real
        storage.load(path)


def test_a_save_that_cannot_commit_raises_and_leaves_the_previous_checkpoint(
    tmp_path: Path,
) -> None:
    import fcntl

    path = tmp_path / "l.zarr"
    storage.save(path, SET_LIST[0])
    _join_cleanups()
    before = _versions(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another committer holds the commit lock
        with pytest.raises(ConcurrentWriteError, match="commit lock"):
            storage.save(path, SET_LIST[1], commit_timeout=0.2)
    finally:
        os.close(fd)
    assert _versions(path) == before  # its version was removed
    assert _matches_a_set(storage.load(path))
    assert list(storage.load(path)) == list(SET_LIST[0])  # type: ignore[arg-type]


def test_a_version_removed_before_its_commit_is_not_committed(tmp_path: Path) -> None:
    from paramarena.storage.zarr import writer
    from paramarena.storage.zarr.commit import commit_version

    path = tmp_path / "v.zarr"
    storage.save(path, SET_LIST[0])
    _join_cleanups()
    loc = Location(str(path), None)
    settings = writer.save_settings(str(path), {})
    items, named = writer.save_items(str(path), SET_LIST[1])
    version, claim = writer.claim_new_version(loc)
    with claim:
        entries = writer.write_version(loc, version, items, settings, False)
        manifest_raw = writer.write_manifest(loc, version, entries, named, settings)
        (path / version / "manifest.json").unlink()  # removed by someone else's cleanup
        with pytest.raises(ConcurrentWriteError, match="removed by another writer"):
            commit_version(loc, version, manifest_raw)
    assert list(storage.load(path)) == list(SET_LIST[0])  # type: ignore[arg-type]
