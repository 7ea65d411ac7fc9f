"""A process killed while saving an npz / .params / .zarr.zip file leaves the previous file
loadable, and the next save removes the temporaries it left; so does a non-durable save
(``durable=False`` skips the fsyncs, not the temporary file and the rename)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from paramarena import storage

SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from paramarena import storage

    path = sys.argv[1]
    options = {} if sys.argv[2] == "default" else {"durable": sys.argv[2] == "durable"}
    big = {f"p{i}": np.full((1024, 1024), i + 1.0, np.float32) for i in range(24)}
    print("ready", flush=True)
    while True:
        storage.save(path, big, **options)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("suffix", "mode"),
    [
        (".npz", "default"),
        (".params", "default"),
        (".zarr.zip", "default"),
        (".npz", "not durable"),
        (".params", "not durable"),
    ],
)
def test_kill_mid_save_keeps_previous_file(tmp_path: Path, suffix: str, mode: str) -> None:
    path = tmp_path / f"ckpt{suffix}"
    old = {"p0": np.zeros((4, 4), np.float32)}
    storage.save(path, old)
    proc = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(path), mode],
        stdout=subprocess.PIPE,
        env={**os.environ, "PARAMARENA_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 60
        # Kill while a temporary file is being written (the save is in progress).
        while not any(p.name.endswith((".tmp", ".tmp.d")) for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "the saver never started writing"
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    loaded = storage.load(path)
    assert isinstance(loaded, dict)
    if list(loaded) == ["p0"] and loaded["p0"].shape == (4, 4):
        np.testing.assert_array_equal(loaded["p0"], old["p0"])  # previous version intact
    else:
        assert len(loaded) == 24  # or a complete newer version, never a partial one
        np.testing.assert_array_equal(loaded["p23"], np.full((1024, 1024), 24.0, np.float32))
    assert storage.verify(path).ok
    storage.save(path, old)  # the killed save's temporaries are removed by the next save
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
