"""``paramarena demo``: every step printed as it finishes, first and warm timings, checks pass."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from paramarena import demo
from paramarena.errors import ConfigurationError

STEPS = ["build", "initialize", "zero_grad", "zero_grad, 1000 x (4,)", "save", "load", "verify"]
DURATION = r"(?:\d[\d.]* (?:s|ms|µs|ns)|-)"
ROW = re.compile(rf"^\| (?P<step>.+?) +\| +(?P<first>{DURATION}) \| +(?P<warm>{DURATION}) \| (.+)$")


class FlushLog(io.StringIO):
    """A text stream remembering what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[str] = []

    def flush(self) -> None:
        self.snapshots.append(self.getvalue())
        super().flush()


def rows(text: str) -> list[re.Match[str]]:
    return [m for line in text.splitlines() if (m := ROW.match(line))]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fmt", ["zarr", "npz", "params"])
def test_tiny_demo_prints_every_step_in_order_with_warm_timings(fmt: str, tmp_path: Path) -> None:
    stream = FlushLog()
    code = demo.run(str(tmp_path), fmt, 3, stream=stream, model="tiny", progress=False)
    text = stream.getvalue()
    assert code == 0, text
    table = rows(text)
    assert [m["step"] for m in table] == STEPS
    assert all(m["first"] != "-" and m["warm"] != "-" for m in table)
    header = next(line for line in text.splitlines() if line.startswith("| step"))
    assert re.match(r"\| step +\| +first \| +warm \| detail", header)
    assert text.count("compiles") == 1  # said once, before the table
    assert text.index("compiles") < text.index("| step")
    assert "OK: checkpoint verified" in text
    assert (tmp_path / f"tiny{demo.FORMAT_SUFFIXES[fmt]}").exists()


@pytest.mark.timeout(300)
def test_each_step_is_flushed_before_the_next_one_runs(tmp_path: Path) -> None:
    stream = FlushLog()
    assert demo.run(str(tmp_path), "npz", stream=stream, model="tiny", progress=False) == 0
    seen = [len(rows(snapshot)) for snapshot in stream.snapshots]
    # one flush per row: the table grows by exactly one step at a time
    assert [n for k, n in enumerate(seen) if k == 0 or n != seen[k - 1]] == list(
        range(seen[0], len(STEPS) + 1)
    )
    assert seen[0] == 0  # the title and the note about compiling come out before any step


@pytest.mark.timeout(300)
def test_progress_bars_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    assert demo.run(str(tmp_path), "zarr", stream=stream, model="tiny", progress=True) == 0
    err = capsys.readouterr().err
    assert "initialize (first call compiles the kernels)" in err
    assert "initialize (first" not in stream.getvalue()


def test_unknown_model_and_format_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="model 'vgg'"):
        demo.run(model="vgg", stream=io.StringIO())
    with pytest.raises(ConfigurationError, match="format 'hdf5'"):
        demo.run(fmt="hdf5", stream=io.StringIO())


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (4.2e-6, "4.2 µs"), (0.0031, "3.1 ms"), (176e-3, "176 ms"), (1.234, "1.23 s")],
)
def test_durations_keep_three_digits_and_a_unit(seconds: float | None, text: str) -> None:
    assert demo._fmt_seconds(seconds) == text


def test_models_have_the_documented_sizes() -> None:
    tiny = demo.build_tiny()
    assert len(list(tiny.keys())) == 4
    resnet = demo.build_resnet50()
    assert len(list(resnet.keys())) == 161
