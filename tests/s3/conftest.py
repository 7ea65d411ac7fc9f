"""A real S3-compatible server for the tests in this folder: ``moto_server`` on 127.0.0.1.

The server runs as a subprocess on a free port for the whole session and is stopped afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

BUCKET = "paramarena-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[dict[str, Any]]:
    """Start ``moto_server``, create a bucket, yield endpoint and storage_options, stop it."""
    pytest.importorskip("moto.server", reason="needs moto[server]")
    s3fs = pytest.importorskip("s3fs", reason="needs s3fs (paramarena[s3])")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("moto_server did not start on " + endpoint)
                time.sleep(0.2)
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        boto3 = pytest.importorskip("boto3")
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=BUCKET)
        fs = s3fs.S3FileSystem(**options)
        yield {"endpoint_url": endpoint, "bucket": BUCKET, "storage_options": options, "fs": fs}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def fault_proxy(moto_s3: dict[str, Any]) -> Iterator[Any]:
    """A :class:`faultproxy.FaultProxy` in front of the session's moto server (127.0.0.1)."""
    from faultproxy import FaultProxy

    proxy = FaultProxy(int(moto_s3["endpoint_url"].rsplit(":", 1)[1]))
    try:
        yield proxy
    finally:
        proxy.stop()
