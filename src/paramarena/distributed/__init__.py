"""Across processes: communicators, replicated and sharded parameter dicts, sharded checkpoints.

The engine is MPI (``mpi4py`` over Open MPI, the ``[mpi]`` extra) behind the
``paramarena_communicators`` hook; without MPI every call runs on the one-rank
``"single"`` communicator. Importing this package imports neither mpi4py nor Numba.

* Replicated (data parallel): :meth:`ParameterDict.broadcast
  <paramarena.params.parameter_dict.ParameterDict.broadcast>` and
  :meth:`ParameterDict.allreduce_grads
  <paramarena.params.parameter_dict.ParameterDict.allreduce_grads>` (one collective per
  arena).
* Sharded: :func:`shard` returns a :class:`ShardedParameterDict` whose ``layout`` says which
  rows of each parameter each rank holds; ``initialize``, ``save`` and ``load`` work on the
  local slices and agree bit for bit with the unsharded dict at any world size.

See ``docs/distributed.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paramarena.distributed.layout import ParameterShard, ShardLayout
    from paramarena.distributed.sharded import ShardedParameterDict, shard

__all__ = [
    "ParameterShard",
    "ShardLayout",
    "ShardedParameterDict",
    "get_communicator",
    "shard",
]

_LAZY = {
    "ParameterShard": "paramarena.distributed.layout",
    "ShardLayout": "paramarena.distributed.layout",
    "ShardedParameterDict": "paramarena.distributed.sharded",
    "shard": "paramarena.distributed.sharded",
}


def get_communicator(comm: Any = None) -> Any:
    """Return the communicator ``comm`` names (``hooks.manager.get_communicator``)."""
    from paramarena.hooks.manager import get_communicator as resolve

    return resolve(comm)


def __getattr__(name: str) -> Any:
    """Import the sharding classes on first access (keeps ``import`` of this package light)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paramarena.distributed' has no attribute {name!r}")
