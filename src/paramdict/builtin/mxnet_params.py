"""Built-in plugin: mxnet_params (placeholder registered by the manager; filled in by its owner)."""

from __future__ import annotations
