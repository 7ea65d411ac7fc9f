"""Shared test configuration: fixture paths and a clean plugin manager per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MXNET_FIXTURES = FIXTURES / "mxnet"


@pytest.fixture
def mxnet_fixtures() -> Path:
    """Directory of real MXNet 1.9.1 files (copied from shared/fixtures/mxnet)."""
    return MXNET_FIXTURES


@pytest.fixture
def fresh_plugin_manager() -> Iterator[None]:
    """Rebuild the plugin manager before and after a test that registers plugins."""
    from paramarena.hooks.manager import reset_plugin_manager

    reset_plugin_manager()
    yield
    reset_plugin_manager()
