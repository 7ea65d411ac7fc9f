"""paramarena: a standalone home for neural-network parameters.

MXNet Gluon's ``ParameterDict`` (``Parameter``, ``Constant``, initializers, ``.params`` files)
rebuilt on numpy + Numba, with pluggable initializers, storage formats and devices.

Examples
--------
>>> import paramarena as pa
>>> params = pa.ParameterDict("net_")
>>> w = params.get("weight", shape=(4, 3))
>>> params.initialize(pa.init.Xavier(), seed=0)
>>> w.data().shape
(4, 3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paramarena import errors, init
from paramarena import init as initializer
from paramarena.devices.context import (
    Context,
    cpu,
    cpu_pinned,
    cpu_shared,
    current_context,
    gpu,
    num_gpus,
)
from paramarena.errors import (  # ParamdictError: pre-rename alias, kept on purpose for one release
    DeferredInitializationError,
    ParamarenaError,
    ParamdictError,
)
from paramarena.hooks.specs import hookimpl
from paramarena.kernels.seeds import seed
from paramarena.params import registry
from paramarena.params.parameter import Constant, Parameter
from paramarena.params.parameter_dict import ParameterDict

if TYPE_CHECKING:
    from paramarena import storage, testing

__version__ = "0.2.0"

#: Submodules loaded on first attribute access (``pa.storage``), so ``import paramarena``
#: stays fast: it imports neither Numba nor zarr.
_LAZY_SUBMODULES = frozenset({"storage", "testing"})


def __getattr__(name: str) -> Any:
    """Import the lazily loaded submodules (``storage``, ``testing``) on first access."""
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"paramarena.{name}")
    raise AttributeError(f"module 'paramarena' has no attribute {name!r}")


__all__ = [
    "Constant",
    "Context",
    "DeferredInitializationError",
    "ParamarenaError",
    "ParamdictError",
    "Parameter",
    "ParameterDict",
    "__version__",
    "cpu",
    "cpu_pinned",
    "cpu_shared",
    "current_context",
    "errors",
    "gpu",
    "hookimpl",
    "init",
    "initializer",
    "num_gpus",
    "registry",
    "seed",
    "storage",
    "testing",
]
