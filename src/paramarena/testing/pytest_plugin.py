"""pytest plugin of paramarena (entry point ``pytest11: paramarena``): shared fixtures.

Loaded automatically by pytest wherever paramarena is installed, so it imports nothing heavy
(no numba, no zarr) at import time. The conformance suites themselves live in
:mod:`paramarena.testing`; subclass one of them in a test module to run it.

Fixtures
--------
paramarena_fresh_plugin_manager
    Rebuilds the plugin manager before and after the test (for tests that register plugins).
paramarena_no_plugin_autoload
    Sets ``PARAMARENA_DISABLE_PLUGIN_AUTOLOAD=1`` and rebuilds the plugin manager, so only the
    built-in plugins are visible during the test.
paramarena_seed
    Sets the global seed (:func:`paramarena.kernels.seeds.seed`) to 0 and restores the previous one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

__all__ = [
    "paramarena_fresh_plugin_manager",
    "paramarena_no_plugin_autoload",
    "paramarena_seed",
]


@pytest.fixture
def paramarena_fresh_plugin_manager() -> Iterator[None]:
    """Rebuild the plugin manager before and after the test."""
    from paramarena.hooks.manager import reset_plugin_manager

    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def paramarena_no_plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hide third-party plugins: ``PARAMARENA_DISABLE_PLUGIN_AUTOLOAD=1`` for the test."""
    from paramarena.hooks.manager import AUTOLOAD_ENV, reset_plugin_manager

    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    reset_plugin_manager()
    yield
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    reset_plugin_manager()


@pytest.fixture
def paramarena_seed() -> Iterator[int]:
    """Set the global seed to 0 for the test and restore the previous seed afterwards."""
    from paramarena.kernels import seeds

    previous = seeds.get_seed()
    seeds.seed(0)
    yield 0
    seeds.seed(previous)
