"""paramarena-safetensors: a ``safetensors`` storage backend for paramarena.

Installing this distribution registers the backend through the ``paramarena`` entry-point group;
afterwards ``params.save("model.safetensors")`` and
``paramarena convert model.params model.safetensors`` work with no other change.
"""

from __future__ import annotations

from paramarena_safetensors.format import (
    DTYPE_CODES,
    SafetensorsBackend,
    read_header,
    read_metadata,
)

__version__ = "0.1.0"

__all__ = ["DTYPE_CODES", "SafetensorsBackend", "__version__", "read_header", "read_metadata"]
