"""docs/quickstart.md, S3 part included, runs as written against a local moto server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.s3

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
DOC_ENDPOINT = "http://127.0.0.1:5000"


@pytest.fixture(scope="module")
def quickstart_endpoint() -> Iterator[str]:
    """A moto S3 server on a free local port (the quickstart says port 5000)."""
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


def test_quickstart_runs_against_s3(
    quickstart_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("s3fs")
    from paramarena.hooks.manager import storage_specs

    if "zarr" not in storage_specs():
        pytest.skip("the zarr backend is not registered")
    monkeypatch.chdir(tmp_path)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    text = QUICKSTART.read_text(encoding="utf-8")
    assert DOC_ENDPOINT in text
    blocks = re.findall(
        r"```python\n(.*?)```", text.replace(DOC_ENDPOINT, quickstart_endpoint), re.S
    )
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(QUICKSTART), "exec"), namespace)
    info = namespace["info"]
    assert getattr(info, "committed", False) is True
    assert list(namespace["part"]) == ["mlp_dense1_bias"]  # type: ignore[call-overload]
