"""Conformance suites for paramarena plugins (also run against the built-in backends).

Subclass a suite in a test module and provide its fixture:

- :class:`StorageTests`: fixtures ``storage_format`` and ``storage_uri(tmp_path)``;
- :class:`DeviceTests`: fixture ``device_context``;
- :class:`InitializerTests`: fixture ``initializer``.

Capabilities are class attributes (``supports_unnamed``, ``has_commit_protocol``, ...); see
each class. The suites import paramarena lazily, so importing this module does not pull in
numba or zarr. Shared fixtures come from the pytest plugin :mod:`paramarena.testing.pytest_plugin`
(registered through the ``pytest11`` entry point).
"""

from __future__ import annotations

from paramarena.testing.device_suite import DeviceTests
from paramarena.testing.initializer_suite import InitializerTests
from paramarena.testing.storage_suite import (
    ALL_STORAGE_DTYPES,
    ODD_NAMES,
    StorageTests,
    arrays_equal,
    sample_array,
)

__all__ = [
    "ALL_STORAGE_DTYPES",
    "ODD_NAMES",
    "DeviceTests",
    "InitializerTests",
    "StorageTests",
    "arrays_equal",
    "sample_array",
]
