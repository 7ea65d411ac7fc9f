"""The functional storage API: backend resolution, argument checks, option passing."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import (
    ConfigurationError,
    MissingParameterError,
    ParameterTypeError,
    PluginError,
    UnknownNameError,
)
from paramarena.hooks.manager import get_plugin_manager
from paramarena.hooks.records import (
    ArraysLike,
    CheckpointInfo,
    LoadedArrays,
    StorageSpec,
    VerifyReport,
)
from paramarena.hooks.specs import hookimpl


class RecordingBackend:
    """Remembers its calls; loads two fixed arrays."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def save(self, uri: str, arrays: ArraysLike, **options: Any) -> None:
        self.calls.append(("save", uri, {"arrays": arrays, **options}))

    def load(
        self, uri: str, *, names: Collection[str] | None = None, **options: Any
    ) -> LoadedArrays:
        self.calls.append(("load", uri, {"names": names, **options}))
        return {"a": np.zeros(1), "b": np.ones(1)}

    def inspect(self, uri: str, **options: Any) -> CheckpointInfo:
        self.calls.append(("inspect", uri, options))
        return CheckpointInfo(uri, "fake", True, True, ())

    def verify(self, uri: str, **options: Any) -> VerifyReport:
        self.calls.append(("verify", uri, options))
        return VerifyReport(uri, 0)


class FakePlugin:
    def __init__(self) -> None:
        self.short = RecordingBackend()
        self.long = RecordingBackend()
        self.scheme = RecordingBackend()
        self.hooked: StorageSpec | None = None

    @hookimpl
    def paramarena_storage_backends(self) -> Iterator[StorageSpec]:
        yield StorageSpec("fake-short", self.short, suffixes=(".ck",))
        yield StorageSpec("fake-long", self.long, suffixes=(".big.ck",))
        yield StorageSpec("fake-scheme", self.scheme, schemes=("fakefs",))

    @hookimpl
    def paramarena_resolve_storage(self, uri: str, mode: str) -> StorageSpec | None:
        if "hooked" in uri:
            return self.hooked
        return None


@pytest.fixture
def fake(fresh_plugin_manager: None) -> FakePlugin:
    plugin = FakePlugin()
    get_plugin_manager().register(plugin, name="fake")
    return plugin


def test_builtin_suffixes() -> None:
    assert storage.resolve("x.npz").name == "npz"
    assert storage.resolve("dir/x.params").name == "mxnet"
    assert storage.resolve(Path("X.NPZ")).name == "npz"
    assert storage.resolve("s3://bucket/x.npz?version=3").name == "npz"


def test_longest_suffix_wins_then_scheme(fake: FakePlugin) -> None:
    assert storage.resolve("model.ck").name == "fake-short"
    assert storage.resolve("model.big.ck").name == "fake-long"
    assert storage.resolve("model.big.ck/").name == "fake-long"
    assert storage.resolve("fakefs://bucket/model").name == "fake-scheme"
    assert storage.resolve("fakefs://bucket/model.npz").name == "npz"  # suffix beats scheme


def test_format_beats_hook_beats_suffix(fake: FakePlugin) -> None:
    fake.hooked = StorageSpec("hooked", fake.scheme)
    assert storage.resolve("hooked.npz").name == "hooked"
    assert storage.resolve("hooked.npz", format="mxnet").name == "mxnet"
    assert storage.resolve("other.npz").name == "npz"


def test_hook_returning_garbage_is_a_plugin_error(fake: FakePlugin) -> None:
    fake.hooked = "npz"  # type: ignore[assignment]
    with pytest.raises(PluginError, match="StorageSpec"):
        storage.resolve("hooked.npz")


@pytest.fixture
def builtins_only(monkeypatch: pytest.MonkeyPatch, fresh_plugin_manager: None) -> None:
    """Only the built-in plugins (an installed paramarena-safetensors is not loaded)."""
    monkeypatch.setenv("PARAMARENA_DISABLE_PLUGIN_AUTOLOAD", "1")


def test_unknown_suffix_lists_formats_and_install_hint(builtins_only: None) -> None:
    with pytest.raises(UnknownNameError) as info:
        storage.resolve("model.safetensors")
    message = str(info.value)
    assert "'.safetensors'" in message
    assert "npz (.npz)" in message
    assert "mxnet (.params)" in message
    assert "paramarena-safetensors" in message
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError, match="without a suffix"):
        storage.resolve("model")


def test_unknown_format_name() -> None:
    with pytest.raises(UnknownNameError, match="'npz'"):
        storage.resolve("x.npz", format="nonesuch")


def test_bad_mode_and_bad_path_type() -> None:
    with pytest.raises(ConfigurationError, match="mode"):
        storage.resolve("x.npz", mode="a")
    with pytest.raises(ParameterTypeError, match=r"str or os\.PathLike"):
        storage.load(42)  # type: ignore[arg-type]


def test_save_checks_the_container() -> None:
    with pytest.raises(ParameterTypeError, match="key 1"):
        storage.save("x.npz", {1: np.ones(1)})  # type: ignore[dict-item]
    with pytest.raises(ParameterTypeError, match=r"'w'.*str"):
        storage.save("x.npz", {"w": "not an array"})  # type: ignore[dict-item]
    with pytest.raises(ParameterTypeError, match=r"'arr_1'.*list"):
        storage.save("x.npz", [np.ones(1), [1.0, 2.0]])
    with pytest.raises(ParameterTypeError, match="int"):
        storage.save("x.npz", 3)  # type: ignore[arg-type]


def test_options_and_progress_are_passed_through(fake: FakePlugin) -> None:
    storage.save("m.ck", [np.ones(1), np.float32(2.0)], concurrency=4)
    kind, uri, opts = fake.short.calls[-1]
    assert (kind, uri) == ("save", "m.ck")
    assert opts["concurrency"] == 4
    assert "progress" not in opts
    assert isinstance(opts["arrays"], list)
    assert all(isinstance(a, np.ndarray) for a in opts["arrays"])
    storage.save("m.ck", np.ones(2), progress=False)
    assert fake.short.calls[-1][2]["progress"] is False
    assert len(fake.short.calls[-1][2]["arrays"]) == 1
    storage.inspect("m.ck", storage_options={"k": "v"})
    assert fake.short.calls[-1] == ("inspect", "m.ck", {"storage_options": {"k": "v"}})
    assert storage.verify("m.ck").ok


def test_load_names_are_checked_and_ordered(fake: FakePlugin) -> None:
    got = storage.load("m.ck", names=["b", "a", "b"])
    assert list(got) == ["b", "a"]
    assert fake.short.calls[-1][2]["names"] == ["b", "a"]
    with pytest.raises(MissingParameterError, match=r"m\.ck.*'zz'"):
        storage.load("m.ck", names=["a", "zz"])
    with pytest.raises(ParameterTypeError, match="strings"):
        storage.load("m.ck", names=[1])  # type: ignore[list-item]


def test_convert_between_formats_is_lossless(tmp_path: Path, mxnet_fixtures: Path) -> None:
    original = mxnet_fixtures / "ndarray_all_dtypes.params"
    arrays = storage.load(original)
    storage.save(tmp_path / "a.npz", arrays)
    storage.save(tmp_path / "b.params", storage.load(tmp_path / "a.npz"))
    assert (tmp_path / "b.params").read_bytes() == original.read_bytes()


def test_format_overrides_suffix_for_save_and_load(tmp_path: Path) -> None:
    storage.save(tmp_path / "weights.bin", {"a": np.arange(3)}, format="mxnet")
    assert (tmp_path / "weights.bin").read_bytes()[:8] == (0x112).to_bytes(8, "little")
    assert storage.inspect(tmp_path / "weights.bin", format="mxnet").arrays[0].shape == (3,)
