"""The ``client='obstore'`` option: option translation and clear errors (S3 runs in tests/s3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from paramarena import storage
from paramarena.errors import ConfigurationError
from paramarena.storage.zarr.obstore import obstore_options


def test_s3fs_style_options_are_translated() -> None:
    config, client = obstore_options(
        {
            "key": "AK",
            "secret": "SK",
            "token": "T",
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"},
        },
        "s3://b/x.zarr",
    )
    assert config == {
        "aws_access_key_id": "AK",
        "aws_secret_access_key": "SK",
        "aws_session_token": "T",
        "aws_endpoint": "http://127.0.0.1:9000",
        "aws_region": "eu-west-1",
    }
    assert client == {"allow_http": True}


def test_native_keys_pass_through_and_https_needs_no_allow_http() -> None:
    config, client = obstore_options(
        {"aws_endpoint": "https://s3.example", "client_options": {"timeout": "30s"}}, "s3://b/x"
    )
    assert config == {"aws_endpoint": "https://s3.example"}
    assert client == {"timeout": "30s"}


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"anon": True}, "'anon' has no obstore equivalent"),
        ({"client_kwargs": {"verify": False}}, r"client_kwargs\['verify'\]"),
    ],
)
def test_untranslatable_options_are_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        obstore_options(options, "s3://b/x.zarr")


def test_bad_client_value_and_unsupported_scheme(tmp_path: Path) -> None:
    arrays = {"w": np.zeros(3, np.float32)}
    with pytest.raises(ConfigurationError, match="client must be one of 'fsspec', 'obstore'"):
        storage.save(tmp_path / "a.zarr", arrays, client="boto")
    with pytest.raises(ConfigurationError, match=r"does not serve memory:// URLs"):
        storage.save("memory://b/a.zarr", arrays, client="obstore")
