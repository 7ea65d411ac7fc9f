"""Built-in plugin: gpu (placeholder registered by the manager; filled in by its owner)."""

from __future__ import annotations
