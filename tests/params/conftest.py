"""Fixtures shared by the parameter tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def initialized_calls() -> Iterator[list[tuple[str, Any]]]:
    """``(parameter name, ctx)`` of every ``paramarena_parameter_initialized`` call in the test.

    A plugin implementing the hook is registered for the test's duration (so the batched
    paths see a listener), and unregistered afterwards even if the test fails.
    """
    from paramarena.hooks.manager import get_plugin_manager
    from paramarena.hooks.specs import hookimpl

    calls: list[tuple[str, Any]] = []

    class Listener:
        @hookimpl
        def paramarena_parameter_initialized(self, parameter: Any, ctx: Any) -> None:
            calls.append((parameter.name, ctx))

    pm = get_plugin_manager()
    plugin = Listener()
    pm.register(plugin)
    try:
        yield calls
    finally:
        pm.unregister(plugin)
