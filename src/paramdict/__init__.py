"""paramdict: a standalone home for neural-network parameters.

MXNet Gluon's ``ParameterDict`` (``Parameter``, ``Constant``, initializers, ``.params`` files)
rebuilt on numpy + Numba, with pluggable initializers, storage formats and devices.

Examples
--------
>>> import paramdict as pd
>>> params = pd.ParameterDict("net_")
>>> w = params.get("weight", shape=(4, 3))
>>> params.initialize(pd.init.Xavier(), seed=0)
>>> w.data().shape
(4, 3)
"""

from __future__ import annotations

from paramdict import errors, initializer, registry
from paramdict import initializer as init
from paramdict.context import Context, cpu, current_context, gpu
from paramdict.errors import DeferredInitializationError, ParamdictError
from paramdict.hookspecs import hookimpl
from paramdict.parameter import Constant, Parameter
from paramdict.parameter_dict import ParameterDict
from paramdict.random import seed

__version__ = "0.1.0"

__all__ = [
    "Constant",
    "Context",
    "DeferredInitializationError",
    "ParamdictError",
    "Parameter",
    "ParameterDict",
    "__version__",
    "cpu",
    "current_context",
    "errors",
    "gpu",
    "hookimpl",
    "init",
    "initializer",
    "registry",
    "seed",
]
