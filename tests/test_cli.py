"""The ``paramarena`` command line: inspect, convert, verify, formats, demo dispatch."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramarena import cli, storage

FIXTURES = Path(__file__).parent / "fixtures" / "mxnet"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_inspect_table() -> None:
    code, out, err = run("inspect", str(FIXTURES / "ndarray_sparse.params"))
    assert code == 0, err
    assert "format: mxnet" in out
    assert "committed: yes" in out
    lines = out.splitlines()
    assert lines[2].split() == ["name", "shape", "dtype", "size", "stype"]
    assert lines[3].split() == ["rsp", "(6,", "3)", "float32", "40", "B", "row_sparse"]


def test_inspect_list_file_without_stype_column() -> None:
    code, out, _ = run("inspect", str(FIXTURES / "ndarray_list.params"))
    assert code == 0
    assert "named: no (list)" in out
    assert out.splitlines()[2].split() == ["name", "shape", "dtype", "size"]
    assert "arr_0  (3,)" in out


def test_inspect_json() -> None:
    code, out, _ = run("inspect", "--json", str(FIXTURES / "checkpoint-0000.params"))
    assert code == 0
    data = json.loads(out)
    assert data["format"] == "mxnet"
    assert data["arrays"][0] == {
        "name": "arg:fc1_weight",
        "shape": [4, 3],
        "dtype": "float32",
        "nbytes": 48,
        "stype": "default",
    }


def test_convert_params_to_npz_and_back_is_byte_identical(tmp_path: Path) -> None:
    src = FIXTURES / "ndarray_all_dtypes.params"
    code, out, err = run("convert", str(src), str(tmp_path / "c.npz"))
    assert code == 0, err
    assert "(mxnet) ->" in out
    assert "(npz)" in out
    code, _, err = run("convert", str(tmp_path / "c.npz"), str(tmp_path / "back.params"))
    assert code == 0, err
    assert (tmp_path / "back.params").read_bytes() == src.read_bytes()


def test_convert_with_explicit_formats(tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes((FIXTURES / "ndarray_list.params").read_bytes())
    code, _, err = run(
        "convert", str(src), str(tmp_path / "out.data"), "--format-in", "mxnet",
        "--format-out", "npz", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert len(storage.load(tmp_path / "out.data", format="npz")) == 3


def test_verify_ok_and_bad(tmp_path: Path) -> None:
    code, out, _ = run("verify", str(FIXTURES / "gluon_paramarena_full.params"))
    assert code == 0
    assert out.startswith("OK: 8 arrays verified")
    storage.save(tmp_path / "c.npz", {"a": np.zeros(1000, np.float32), "b": np.ones(3)})
    data = bytearray((tmp_path / "c.npz").read_bytes())
    data[600] ^= 0xFF
    (tmp_path / "c.npz").write_bytes(bytes(data))
    code, out, _ = run("verify", str(tmp_path / "c.npz"))
    assert code == 1
    assert "FAILED: 1 problem(s)" in out
    assert "\n  a: " in out
    assert "\n  b: " not in out


def test_unreadable_input_exits_2_without_traceback(tmp_path: Path) -> None:
    for command in ("verify", "inspect"):
        code, out, err = run(command, str(tmp_path / "missing.params"))
        assert code == 2
        assert err.startswith("error: ")
        assert "missing.params" in err
        assert "Traceback" not in err
        assert out == ""
    (tmp_path / "junk.params").write_bytes(b"\x00" * 40)
    code, _, err = run("verify", str(tmp_path / "junk.params"))
    assert code == 2
    assert "not an MXNet .params file" in err


def test_unknown_format_and_suffix_are_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugin_manager: None
) -> None:
    monkeypatch.setenv("PARAMARENA_DISABLE_PLUGIN_AUTOLOAD", "1")  # builtins only
    code, _, err = run("inspect", str(tmp_path / "x.safetensors"))
    assert code == 2
    assert "paramarena-safetensors" in err
    code, _, err = run("convert", str(FIXTURES / "ndarray_list.params"), str(tmp_path / "x.npz"))
    assert code == 0
    # an unknown suffix: MXNet's format, as MXNet's nd.save writes any name (issue 12)
    code, _, err = run("convert", str(tmp_path / "x.npz"), str(tmp_path / "out.weird"))
    assert code == 0, err
    assert (tmp_path / "out.weird").read_bytes()[:8] == bytes.fromhex("1201000000000000")


def test_storage_options_go_to_remote_urls_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    real_inspect = storage.inspect

    def fake_inspect(uri: str, *, format: str | None = None, **options: Any) -> Any:
        seen.append((uri, options))
        return real_inspect(FIXTURES / "ndarray_list.params")

    monkeypatch.setattr(storage, "inspect", fake_inspect)
    code, _, err = run(
        "inspect", "s3://bucket/x.params", "--storage-option", "anon=true",
        "-o", "endpoint_url=http://127.0.0.1:5555", "-o", "client_kwargs={\"region_name\": \"x\"}",
    )  # fmt: skip
    assert code == 0, err
    assert seen[-1] == (
        "s3://bucket/x.params",
        {
            "storage_options": {
                "anon": True,
                "endpoint_url": "http://127.0.0.1:5555",
                "client_kwargs": {"region_name": "x"},
            }
        },
    )
    code, _, err = run("inspect", "local.params", "-o", "anon=true")
    assert seen[-1] == ("local.params", {})
    assert "ignored" in err


def test_memory_url_convert_and_verify(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    url = "memory://paramarena-cli/ckpt.npz"
    code, _, err = run("convert", str(FIXTURES / "checkpoint-0000.params"), url)
    assert code == 0, err
    code, out, _ = run("verify", url, "-o", "skip_instance_cache=true")
    assert code == 0
    assert "OK: 8 arrays" in out


def test_bad_storage_option_syntax_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run("inspect", "x.params", "-o", "novalue")
    assert code == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_formats_lists_builtins() -> None:
    code, out, _ = run("formats")
    assert code == 0
    assert any(line.startswith("mxnet") and ".params" in line for line in out.splitlines())
    assert any(line.startswith("npz") for line in out.splitlines())


def test_demo_dispatches_to_demo_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    calls: list[tuple[Any, ...]] = []
    fake = types.ModuleType("paramarena.demo")

    def fake_run(out_dir: str | None, fmt: str, seed: int) -> int:
        calls.append((out_dir, fmt, seed))
        return 0

    fake.run = fake_run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "paramarena.demo", fake)
    import paramarena

    monkeypatch.setattr(paramarena, "demo", fake, raising=False)
    code, _, _ = run("demo", "--out", "d", "--format", "npz", "--seed", "7")
    assert code == 0
    assert calls == [("d", "npz", 7)]


def test_demo_missing_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paramarena.demo", None)  # makes the import fail
    import paramarena

    monkeypatch.delattr(paramarena, "demo", raising=False)
    code, _, err = run("demo")
    assert code == 2
    assert "demo is not available" in err


def test_console_script_subprocess_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "PARAMARENA_DISABLE_PLUGIN_AUTOLOAD": "1"}
    script = Path(sys.executable).parent / "paramarena"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "paramarena.cli"]
    result = subprocess.run(
        [*command, "inspect", str(FIXTURES / "ndarray_list.params")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "arr_2" in result.stdout
    result = subprocess.run(
        [*command, "verify", str(tmp_path / "gone.npz")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_inspect_uncommitted_checkpoint_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    from paramarena.errors import UncommittedCheckpointError

    def uncommitted(uri: str, **options: Any) -> Any:
        raise UncommittedCheckpointError(f"checkpoint {uri!r} has no commit marker")

    monkeypatch.setattr(storage, "inspect", uncommitted)
    code, out, _ = run("inspect", "half.zarr")
    assert code == 1
    assert "committed: NO" in out
    assert "no commit marker" in out
    code, out, _ = run("inspect", "--json", "half.zarr")
    assert code == 1
    assert json.loads(out)["committed"] is False


def test_convert_to_a_plugin_format_when_installed(tmp_path: Path) -> None:
    from paramarena.hooks.manager import storage_specs

    if "safetensors" not in storage_specs():
        pytest.skip("paramarena-safetensors is not installed")
    src = FIXTURES / "gluon_paramarena_full.params"
    code, _, err = run("convert", str(src), str(tmp_path / "m.safetensors"))
    assert code == 0, err
    code, _, err = run("convert", str(tmp_path / "m.safetensors"), str(tmp_path / "back.params"))
    assert code == 0, err
    assert (tmp_path / "back.params").read_bytes() == src.read_bytes()
