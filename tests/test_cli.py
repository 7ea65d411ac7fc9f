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
from paramarena.errors import StorageError

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
    assert code == 3  # readable, but .params carries no checksums
    assert out.startswith("readable, 8 arrays")
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


# --- one clean error line for every way the input cannot be read (issue 13, item 1) -------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on exit: connections are refused


def _plain_zarr_group(tmp_path: Path) -> str:
    import zarr

    path = tmp_path / "plain.zarr"
    zarr.open_group(str(path), mode="w").create_array("a", shape=(3,), dtype="f4")
    return str(path)


def _regular_file(tmp_path: Path) -> str:
    path = tmp_path / "bytes.zarr"
    path.write_bytes(os.urandom(300))
    return str(path)


def _empty_dir(tmp_path: Path) -> str:
    path = tmp_path / "empty.zarr"
    path.mkdir()
    return str(path)


# (id, make the input -> path, command, exception type, words every message has)
READ_CASES: list[tuple[str, Any, str, type[Exception], tuple[str, ...]]] = [
    ("missing", lambda t: str(t / "gone.zarr"), "verify", StorageError, ("does not exist",)),
    (
        "random-bytes-file",
        _regular_file,
        "verify",
        StorageError,
        ("is not a zarr checkpoint", "regular file (300 bytes)"),
    ),
    ("empty-dir", _empty_dir, "inspect", StorageError, ("an empty directory",)),
    ("plain-group-inspect", _plain_zarr_group, "inspect", StorageError, ("not a checkpoint of",)),
    ("plain-group-convert", _plain_zarr_group, "convert", StorageError, ("not a checkpoint of",)),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("make", "command", "error", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in READ_CASES],
)
def test_unreadable_inputs_are_one_error_line(
    tmp_path: Path, make: Any, command: str, error: type[Exception], words: tuple[str, ...]
) -> None:
    from paramarena.errors import ParamarenaError

    path = make(tmp_path)
    api = {"verify": storage.verify, "inspect": storage.inspect, "convert": storage.load}[command]
    with pytest.raises(error) as caught:
        api(path)
    assert isinstance(caught.value, ParamarenaError)
    for text in (str(caught.value),):
        assert path in text
        assert all(w in text for w in words), text
    argv = [command, path] + ([str(tmp_path / "out.npz")] if command == "convert" else [])
    code, out, err = run(*argv)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert path in lines[0]
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.timeout(60)
def test_random_bytes_and_empty_directory_are_told_apart(tmp_path: Path) -> None:
    messages = set()
    for make in (_regular_file, _empty_dir, lambda t: str(t / "gone.zarr")):
        with pytest.raises(StorageError) as caught:
            storage.load(make(tmp_path))
        messages.add(str(caught.value).split(":", 1)[-1])
    assert len(messages) == 3


@pytest.mark.timeout(60)
def test_saving_over_a_regular_file_is_a_clean_error(tmp_path: Path) -> None:
    target = tmp_path / "x.zarr"
    target.write_bytes(b"not a directory")
    with pytest.raises(StorageError, match="regular file") as caught:
        storage.save(target, {"w": np.zeros(3, np.float32)})
    assert not isinstance(caught.value, NotADirectoryError)
    assert str(target) in str(caught.value)
    code, out, err = run("convert", str(FIXTURES / "ndarray_list.params"), str(target))
    assert out == ""
    assert code == 2
    assert err.startswith("error: ")
    assert len(err.splitlines()) == 1
    assert "regular file" in err
    assert target.read_bytes() == b"not a directory"  # untouched


@pytest.mark.timeout(60)
@pytest.mark.parametrize("url", ["s3://bucket/ckpt.zarr", "s3://bucket/ckpt.npz"])
def test_missing_s3_extra_says_what_to_install(url: str) -> None:
    """Simulate an install without ``[s3]``: fsspec and s3fs cannot be imported."""
    script = (
        "import sys, json\n"
        "sys.modules['fsspec'] = None; sys.modules['s3fs'] = None  # import now fails\n"
        "from paramarena import storage, errors\n"
        "from paramarena.cli import main\n"
        "try:\n"
        f"    storage.verify({url!r})\n"
        "    api = 'no error'\n"
        "except Exception as exc:\n"
        "    api = [type(exc).__name__, isinstance(exc, errors.ParamarenaError), str(exc)]\n"
        "print(json.dumps(api), flush=True)\n"
        f"sys.exit(main(['verify', {url!r}]))\n"
    )
    env = {**os.environ, "PARAMARENA_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=50,
        check=False,
    )
    name, is_ours, message = json.loads(result.stdout.splitlines()[0])
    assert (name, is_ours) == ("MissingDependencyError", True)
    assert url in message
    assert "pip install 'paramarena[s3]'" in message
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert url in lines[0]
    assert "pip install 'paramarena[s3]'" in lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("client", ["fsspec", "obstore"])
def test_unreachable_endpoint_says_check_the_endpoint(client: str) -> None:
    pytest.importorskip("s3fs")
    if client == "obstore":
        pytest.importorskip("obstore")
    from paramarena.errors import NetworkError

    url = "s3://bucket/ckpt.zarr"
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    options = {
        "key": "k",
        "secret": "s",
        "endpoint_url": endpoint,
        "retries": 1,
        "retry_backoff": 0.01,
    }
    with pytest.raises(NetworkError) as caught:
        storage.load(url, storage_options=options, client=client)
    assert url in str(caught.value)
    assert "check the endpoint" in str(caught.value)
    argv = ["verify", url] + [a for k, v in options.items() for a in ("-o", f"{k}={v}")]
    code, out, err = run(*argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    assert url in err
    assert "check the endpoint" in err


# --- honest reports and exit codes (issue 13, item 2) --------------------------------------------


def test_verify_of_a_params_file_says_nothing_was_verified(tmp_path: Path) -> None:
    values = np.arange(100, dtype=np.float32)
    src = tmp_path / "good.params"
    storage.save(src, {"w": values, "b": np.ones(3, np.float32), "c": values, "d": values})
    damaged = tmp_path / "damaged.params"
    data = bytearray(src.read_bytes())
    data[data.index(values.tobytes()) + 17] ^= 0xFF  # a data byte: no checksum notices it
    damaged.write_bytes(bytes(data))
    assert not np.array_equal(storage.load(damaged)["w"], values)
    for path in (src, damaged):
        report = storage.verify(path)
        assert report.ok
        assert report.checksummed is False
        code, out, _ = run("verify", str(path))
        assert code == cli.EXIT_UNVERIFIED == 3
        assert "OK" not in out
        assert "readable, 4 arrays" in out
        assert "this format carries no checksums: nothing verified" in out


def test_verify_of_a_checksummed_format_is_ok(tmp_path: Path) -> None:
    storage.save(tmp_path / "c.npz", {"a": np.zeros(10, np.float32)})
    assert storage.verify(tmp_path / "c.npz").checksummed
    code, out, _ = run("verify", str(tmp_path / "c.npz"))
    assert code == 0
    assert out.startswith("OK: 1 arrays verified")


def test_inspect_of_a_zarr_checkpoint_without_commit_exits_1(tmp_path: Path) -> None:
    from paramarena.storage.zarr.checkpoint import COMMIT_MARKER

    path = tmp_path / "half.zarr"
    storage.save(path, {"w": np.ones(4, np.float32)})
    (path / COMMIT_MARKER).unlink()
    code, out, err = run("inspect", str(path))
    assert code == 1, err
    assert "committed: NO" in out
    code, out, _ = run("inspect", "--json", str(path))
    assert code == 1
    assert json.loads(out)["committed"] is False
    code, _, err = run("verify", str(path))
    assert code == 2  # verify needs a committed checkpoint: an error line, no traceback
    assert err.startswith("error: ")
    assert "commit marker" in err


def test_exit_codes_agree_with_docs() -> None:
    """docs/cli.md's exit-status table lists exactly the codes the CLI uses."""
    doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    table = doc.split("## Exit status", 1)[1].split("\n\n", 2)[1]
    documented = {int(line.split("|")[1]) for line in table.splitlines()[2:]}
    used = {cli.EXIT_OK, cli.EXIT_PROBLEMS, cli.EXIT_ERROR, cli.EXIT_UNVERIFIED}
    assert documented == used


def test_raw_oserror_is_one_line_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(uri: str, **options: Any) -> Any:
        raise PermissionError(13, "Permission denied", "/secret/ckpt.npz")

    monkeypatch.setattr(storage, "verify", broken)
    code, out, err = run("verify", "/secret/ckpt.npz")
    assert code == 2
    assert err == "error: Permission denied: '/secret/ckpt.npz'\n"
    assert out == ""
