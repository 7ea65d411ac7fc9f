"""Issue 12.3: formats are detected from the content (the suffix is a hint); a name with no
known suffix is saved in MXNet's format; ``storage.dumps`` / ``storage.loads`` in memory."""

from __future__ import annotations

import shutil
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramarena import hookimpl, storage
from paramarena.errors import PluginError, UnknownNameError
from paramarena.hooks.manager import get_plugin_manager, invalidate_caches
from paramarena.hooks.records import StorageSpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
ARRAYS = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.int64)}
MXNET_MAGIC = bytes.fromhex("1201000000000000")


def _same(loaded: Any, expected: dict[str, np.ndarray]) -> None:
    assert isinstance(loaded, dict)
    assert list(loaded) == list(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(loaded[name], value)
        assert loaded[name].dtype == value.dtype


@pytest.mark.parametrize("name", ["weights", "model.bin", "x.ckpt"])
def test_save_to_a_name_without_known_suffix_writes_mxnet(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    storage.save(path, ARRAYS)
    assert path.read_bytes()[:8] == MXNET_MAGIC
    _same(storage.load(path), ARRAYS)


def test_mxnet_fixture_under_any_name(tmp_path: Path) -> None:
    path = tmp_path / "pretrained"
    shutil.copy(FIXTURES / "gluon_paramarena_full.params", path)
    _same(storage.load(path), storage.load(FIXTURES / "gluon_paramarena_full.params"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("written", "renamed"), [(".npz", "x.params"), (".params", "x.npz")])
def test_content_beats_a_misleading_suffix(tmp_path: Path, written: str, renamed: str) -> None:
    source = tmp_path / f"src{written}"
    storage.save(source, ARRAYS)
    target = tmp_path / renamed
    source.rename(target)
    _same(storage.load(target), ARRAYS)
    assert [a.name for a in storage.inspect(target).arrays] == list(ARRAYS)


def test_zarr_zip_and_directory_under_any_name(tmp_path: Path) -> None:
    storage.save(tmp_path / "c.zarr.zip", ARRAYS)
    (tmp_path / "c.zarr.zip").rename(tmp_path / "c.bin")
    _same(storage.load(tmp_path / "c.bin"), ARRAYS)
    storage.save(tmp_path / "d.zarr", ARRAYS)
    (tmp_path / "d.zarr").rename(tmp_path / "ckpt")
    _same(storage.load(tmp_path / "ckpt"), ARRAYS)


def test_safetensors_content_detected(tmp_path: Path) -> None:
    pytest.importorskip("paramarena_safetensors")
    path = tmp_path / "model.bin"
    storage.save(path, ARRAYS, format="safetensors")
    _same(storage.load(path), ARRAYS)


def test_unknown_content_and_suffix_still_errors(tmp_path: Path) -> None:
    path = tmp_path / "notes"
    path.write_bytes(b"hello, this is not a checkpoint")
    with pytest.raises(UnknownNameError, match="without a suffix"):
        storage.load(path)


def test_dumps_loads_roundtrip_and_match_files(tmp_path: Path) -> None:
    data = storage.dumps(ARRAYS)
    storage.save(tmp_path / "a.params", ARRAYS)
    assert data == (tmp_path / "a.params").read_bytes()
    _same(storage.loads(data), ARRAYS)
    npz = storage.dumps(ARRAYS, format="npz")
    assert npz[:4] == b"PK\x03\x04"
    _same(storage.loads(npz), ARRAYS)
    assert storage.loads(data, names=["b"])["b"].tolist() == [1, 1, 1]  # type: ignore[call-overload]


def test_loads_mxnet_fixture_bytes_like_load_frombuffer() -> None:
    raw = (FIXTURES / "ndarray_list.params").read_bytes()
    loaded = storage.loads(raw)
    assert isinstance(loaded, list)
    assert len(loaded) == 3


def test_dumps_loads_refuse_zarr_and_garbage() -> None:
    with pytest.raises(UnknownNameError, match="zarr"):
        storage.dumps(ARRAYS, format="zarr")
    with pytest.raises(UnknownNameError, match="cannot tell the format"):
        storage.loads(b"\x00" * 32)


class _FakeBackend:
    def load(self, uri: str, *, names: Any = None, **options: Any) -> Any:
        return {"fake": np.zeros(1)}


def _register(**hooks: Any) -> None:
    plugin = types.SimpleNamespace(**{k: hookimpl(v) for k, v in hooks.items()})
    get_plugin_manager().register(plugin, name="sniffer")
    invalidate_caches()


@pytest.mark.usefixtures("paramarena_fresh_plugin_manager")
def test_plugin_sniffer_is_asked_first(tmp_path: Path) -> None:
    calls: list[tuple[bytes, str]] = []

    def paramarena_sniff_format(head: bytes, uri: str) -> str | None:
        calls.append((head, uri))
        return "fake" if head.startswith((b"FAKE", MXNET_MAGIC)) else None

    def paramarena_storage_backends() -> Any:
        yield StorageSpec("fake", _FakeBackend())  # type: ignore[arg-type]

    _register(
        paramarena_sniff_format=paramarena_sniff_format,
        paramarena_storage_backends=paramarena_storage_backends,
    )
    path = tmp_path / "weights.params"
    path.write_bytes(b"FAKE" + bytes(100))
    assert list(storage.load(path)) == ["fake"]
    assert calls[-1] == ((b"FAKE" + bytes(100))[:64], str(path))
    storage.save(tmp_path / "m.params", ARRAYS)
    assert list(storage.load(tmp_path / "m.params")) == ["fake"]  # the plugin wins
    assert list(storage.loads(b"FAKE" + bytes(10))) == ["fake"]
    assert calls[-1][1] == "<bytes>"


@pytest.mark.usefixtures("paramarena_fresh_plugin_manager")
def test_plugin_sniffer_garbage_is_plugin_error(tmp_path: Path) -> None:
    _register(paramarena_sniff_format=lambda head, uri: 42)
    storage.save(tmp_path / "m.params", ARRAYS)
    with pytest.raises(PluginError, match="paramarena_sniff_format"):
        storage.load(tmp_path / "m.params")


def test_parameter_dict_save_and_load_without_suffix(tmp_path: Path) -> None:
    import paramarena as pa

    params = pa.ParameterDict("net_")
    params.get("w", shape=(2, 3))
    params.initialize(seed=0)
    params.save(tmp_path / "net_weights")
    assert (tmp_path / "net_weights").read_bytes()[:8] == MXNET_MAGIC
    other = pa.ParameterDict("net_")
    other.get("w", shape=(2, 3))
    other.load(tmp_path / "net_weights")
    np.testing.assert_array_equal(other["net_w"].data(), params["net_w"].data())


def test_dumps_safetensors_through_the_plugin() -> None:
    pytest.importorskip("paramarena_safetensors")
    _same(storage.loads(storage.dumps(ARRAYS, format="safetensors")), ARRAYS)


def test_detected_plugin_format_not_installed_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paramarena_fresh_plugin_manager: None
) -> None:
    # a safetensors header: u64 length of the JSON header, then the header
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    data = len(header).to_bytes(8, "little") + header + bytes(4)
    (tmp_path / "model.bin").write_bytes(data)
    monkeypatch.setenv("PARAMARENA_DISABLE_PLUGIN_AUTOLOAD", "1")  # builtins only
    invalidate_caches()
    with pytest.raises(UnknownNameError, match="paramarena-safetensors"):
        storage.load(tmp_path / "model.bin")
