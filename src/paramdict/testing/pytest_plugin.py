"""pytest plugin of paramdict (entry point ``pytest11: paramdict``): shared fixtures.

Loaded automatically by pytest wherever paramdict is installed, so it imports nothing heavy
(no numba, no zarr) at import time. The conformance suites themselves live in
:mod:`paramdict.testing`; subclass one of them in a test module to run it.

Fixtures
--------
paramdict_fresh_plugin_manager
    Rebuilds the plugin manager before and after the test (for tests that register plugins).
paramdict_no_plugin_autoload
    Sets ``PARAMDICT_DISABLE_PLUGIN_AUTOLOAD=1`` and rebuilds the plugin manager, so only the
    built-in plugins are visible during the test.
paramdict_seed
    Sets the global seed (:func:`paramdict.random.seed`) to 0 and restores the previous one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

__all__ = [
    "paramdict_fresh_plugin_manager",
    "paramdict_no_plugin_autoload",
    "paramdict_seed",
]


@pytest.fixture
def paramdict_fresh_plugin_manager() -> Iterator[None]:
    """Rebuild the plugin manager before and after the test."""
    from paramdict.manager import reset_plugin_manager

    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def paramdict_no_plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hide third-party plugins: ``PARAMDICT_DISABLE_PLUGIN_AUTOLOAD=1`` for the test."""
    from paramdict.manager import AUTOLOAD_ENV, reset_plugin_manager

    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    reset_plugin_manager()
    yield
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    reset_plugin_manager()


@pytest.fixture
def paramdict_seed() -> Iterator[int]:
    """Set the global seed to 0 for the test and restore the previous seed afterwards."""
    from paramdict import random as pd_random

    previous = pd_random.get_seed()
    pd_random.seed(0)
    yield 0
    pd_random.seed(previous)
