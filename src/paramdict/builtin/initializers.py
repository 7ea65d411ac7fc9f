"""Built-in plugin: initializers (placeholder registered by the manager; filled in by its owner)."""

from __future__ import annotations
