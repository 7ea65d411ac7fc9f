"""Replicated (data-parallel) collectives of a ``ParameterDict``: broadcast and allreduce.

Both work arena by arena: the live views of one ``(context, dtype)`` arena form one flat span
(normally one per arena), so ``allreduce_grads`` is one ``Allreduce`` per gradient arena
whatever the number of parameters (Horovod's tensor fusion, without a fusion buffer), in
place. Parameters that live outside the dict's arenas (from a ``shared`` dict or ``update``)
take one call each.

Before the first collective of a plan, the ranks compare one 16-byte digest of what they
hold (names, shapes, dtypes, gradient requirements, spans); on a mismatch every rank raises
:class:`~paramarena.errors.RankMismatchError` naming the first differing parameter, instead
of reducing garbage or hanging. When only the arena spans differ (a rank re-allocated a
gradient), the collective falls back to one call per parameter.

The communicator comes from the ``paramarena_communicators`` hook
(:func:`paramarena.hooks.manager.get_communicator`): ``"single"`` in a plain process,
``"mpi"`` under ``mpirun``.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena.errors import ConfigurationError, RankMismatchError
from paramarena.hooks.manager import get_communicator, get_device_spec
from paramarena.hooks.records import Communicator

if TYPE_CHECKING:
    from paramarena.params.parameter_dict import ParameterDict

__all__ = ["allreduce_grads", "broadcast", "check_same_parameters", "describe_parameters"]

_OPS = ("mean", "sum")


def describe_parameters(params: Iterable[tuple[str, Any]]) -> list[list[Any]]:
    """Return ``[name, shape, dtype, grad_req]`` for each ``(name, Parameter)`` in order."""
    out: list[list[Any]] = []
    for name, p in params:
        shape = None if p.shape is None else [int(s) for s in p.shape]
        out.append([name, shape, np.dtype(p._np_dtype).name, p.grad_req])
    return out


def _digest(document: Any) -> bytes:
    raw = json.dumps(document, separators=(",", ":")).encode()
    return hashlib.blake2b(raw, digest_size=16).digest()


def first_difference(mine: list[list[Any]], theirs: list[list[Any]]) -> str:
    """Describe the first parameter where two descriptions differ."""
    fields = ("name", "shape", "dtype", "grad_req")
    for i, (a, b) in enumerate(zip(mine, theirs, strict=False)):
        if a != b:
            diffs = [f"{f} {x!r} vs {y!r}" for f, x, y in zip(fields, a, b, strict=True) if x != y]
            return f"parameter #{i} {a[0]!r}: {'; '.join(diffs)}"
    if len(mine) != len(theirs):
        longer = mine if len(mine) > len(theirs) else theirs
        return (
            f"parameter #{min(len(mine), len(theirs))} {longer[min(len(mine), len(theirs))][0]!r} "
            f"exists on one rank only ({len(mine)} vs {len(theirs)} parameters)"
        )
    return "the arena layouts differ"


def check_same_parameters(
    comm: Communicator, description: list[list[Any]], what: str = "ParameterDict"
) -> None:
    """Raise on every rank unless every rank holds the same parameters (one digest allgather).

    Parameters
    ----------
    comm : Communicator
        The ranks to compare.
    description : list
        This rank's :func:`describe_parameters` (or any JSON-able list of rows whose first
        entry is the name).
    what : str
        Named in the error message.

    Raises
    ------
    paramarena.errors.RankMismatchError
        On every rank, naming the first parameter where some rank differs from rank 0.
    """
    if comm.size == 1:
        return
    digests = comm.allgather_bytes(_digest(description))
    if all(d == digests[0] for d in digests):
        return
    # the slow path runs only on a mismatch: every rank learns every description
    docs = [json.loads(raw) for raw in comm.allgather_bytes(json.dumps(description).encode())]
    for rank, doc in enumerate(docs):
        if doc != docs[0]:
            raise RankMismatchError(
                f"{what}: rank {rank} differs from rank 0 at {first_difference(docs[0], doc)}. "
                "Every rank must create the same parameters (names, shapes, dtypes) in the "
                "same order."
            )


def _backend_of(ctx: Any) -> Any:
    return get_device_spec(ctx.device_type).backend


def _on_host(array: Any, op: Callable[[np.ndarray], None], backend: Any) -> None:
    """Run ``op`` on ``array`` (numpy) or on a host copy of a device array, copied back."""
    if isinstance(array, np.ndarray):
        op(array)
        return
    host = np.ascontiguousarray(backend.to_host(array))
    op(host)
    backend.copy_into(array, host)


def _plan(params: ParameterDict, kind: str) -> list[tuple[Any, Any]]:
    """Return ``(array, device backend)`` pairs covering every live array of ``kind`` once.

    Arrays in the dict's arenas are covered by the arenas' live spans; the others one by one.
    """
    storage = params._storage
    arenas = storage.arenas(kind)
    plan: list[tuple[Any, Any]] = []
    for arena in arenas.arenas():
        plan.extend((span, arena.backend) for span in arena.live_spans())
    for p in params.values():
        arrays = p._data if kind == "data" else p._grad
        if arrays is None or p._ctx_list is None:
            continue
        for c, a in zip(p._ctx_list, arrays, strict=True):
            if not (p._storage is storage and arenas.owns(c, a)) and a.size:
                plan.append((a, _backend_of(c)))
    return plan


def _per_parameter(params: ParameterDict, kind: str) -> list[tuple[Any, Any]]:
    plan: list[tuple[Any, Any]] = []
    for p in params.values():
        arrays = p._data if kind == "data" else p._grad
        if arrays is not None and p._ctx_list is not None:
            plan.extend(
                (a, _backend_of(c)) for c, a in zip(p._ctx_list, arrays, strict=True) if a.size
            )
    return plan


def _agreed_plan(params: ParameterDict, kind: str, comm: Communicator) -> list[tuple[Any, Any]]:
    """Check the ranks hold the same parameters; return the fused plan if all agree on it."""
    check_same_parameters(comm, describe_parameters(params.items()))
    fused = _plan(params, kind)
    shape = [[str(getattr(a, "dtype", "")), int(a.size)] for a, _ in fused]
    if comm.size == 1:
        return fused
    digests = comm.allgather_bytes(_digest(shape))
    if all(d == digests[0] for d in digests):
        return fused
    return _per_parameter(params, kind)


#: dict -> (its parameters' gradient lists, communicator, allreduce plan). The gradient lists
#: are compared by identity: any re-allocated gradient (or a new parameter) rebuilds the plan,
#: which re-runs the digest check; ``Parameter._grad_epoch`` is global to the process, so it
#: cannot tell whether this dict changed (and ranks would disagree about re-checking).
_PLANS: weakref.WeakKeyDictionary[ParameterDict, tuple[list[Any], Any, list[tuple[Any, Any]]]] = (
    weakref.WeakKeyDictionary()
)


def _same_grads(params: ParameterDict, known: list[Any]) -> bool:
    current = [p._grad for p in params.values()]
    return len(current) == len(known) and all(a is b for a, b in zip(current, known, strict=True))


def broadcast(params: ParameterDict, root: int = 0, comm: Communicator | str | None = None) -> None:
    """Give every rank root's parameter values (see :meth:`ParameterDict.broadcast`)."""
    communicator = get_communicator(comm)
    uninitialized = [n for n, p in params.items() if p._data is None]
    if uninitialized:
        from paramarena.errors import NotInitializedError

        raise NotInitializedError(
            f"broadcast needs initialized parameters; {uninitialized[0]!r} is not (call "
            "initialize() on every rank first; root's values then replace the others)."
        )
    for array, backend in _agreed_plan(params, "data", communicator):
        _on_host(array, lambda a: communicator.broadcast_buffer(a, root), backend)


def allreduce_grads(
    params: ParameterDict, op: str = "mean", comm: Communicator | str | None = None
) -> None:
    """Sum or average the gradients over the ranks in place (see ``ParameterDict``)."""
    if op not in _OPS:
        raise ConfigurationError(f"allreduce_grads op must be 'mean' or 'sum', got {op!r}.")
    communicator = get_communicator(comm)
    cached = _PLANS.get(params)
    if cached is None or cached[1] is not communicator or not _same_grads(params, cached[0]):
        grads = [p._grad for p in params.values()]
        cached = (grads, communicator, _agreed_plan(params, "grad", communicator))
        _PLANS[params] = cached
    size = communicator.size

    def reduce(a: np.ndarray) -> None:
        communicator.allreduce_buffer(a, "sum")
        if op == "mean" and size > 1:
            np.divide(a, size, out=a, casting="unsafe")

    for array, backend in cached[2]:
        _on_host(array, reduce, backend)
