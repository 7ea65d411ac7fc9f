"""``ShardedParameterDict``: every rank holds its rows of the large parameters of a dict.

>>> import paramarena as pa
>>> from paramarena.distributed import shard
>>> net = pa.ParameterDict("net_")
>>> _ = net.get("weight", shape=(1024, 512))
>>> sharded = shard(net, min_bytes=0)         # run the same code on every rank (mpirun -n N)
>>> sharded.initialize(pa.init.Xavier(), seed=0)
>>> sharded.layout["net_weight"].rows(0)      # one rank here: all rows
(0, 1024)

The source dict declares the *full* shapes and stays untouched; :attr:`ShardedParameterDict.local`
is a new ``ParameterDict`` whose parameters (same names, dtypes, ``grad_req``, ``lr_mult``,
``init`` ...) hold this rank's rows, in their own arenas (``zero_grad`` is one kernel per arena).
See :mod:`paramarena.distributed.layout` for the layout rules.
"""

from __future__ import annotations

import json
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any

import numpy as np

from paramarena.distributed.layout import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MIN_BYTES,
    ShardLayout,
    plan_layout,
)
from paramarena.distributed.sharded_init import DEFAULT_WHOLE_LIMIT_BYTES, ShardFill
from paramarena.errors import ParameterTypeError, ShardingError
from paramarena.hooks.manager import get_communicator
from paramarena.hooks.records import Communicator
from paramarena.params import checks as chk
from paramarena.params.collectives import check_same_parameters
from paramarena.params.loading import LoadReport
from paramarena.params.parameter import Constant, Parameter
from paramarena.params.parameter_dict import ParameterDict

__all__ = ["ShardedParameterDict", "shard"]


def _dtype_name(p: Parameter) -> str:
    dtype = chk.as_np_dtype(p.dtype)
    return "bfloat16" if dtype.name == "bfloat16" else dtype.name


class ShardedParameterDict:
    """The rows of every parameter of ``params`` that this rank holds (see :func:`shard`)."""

    def __init__(
        self,
        params: ParameterDict,
        comm: Communicator | str | None = None,
        *,
        axis: int = 0,
        min_bytes: int = DEFAULT_MIN_BYTES,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        replicate: tuple[str, ...] = (),
        whole_limit_bytes: int = DEFAULT_WHOLE_LIMIT_BYTES,
    ) -> None:
        self.comm: Communicator = get_communicator(comm)
        self.source = params
        unknown = [n for n, p in params.items() if not chk.shape_is_known(p.shape, n)]
        if unknown:
            raise ShardingError(
                f"cannot shard parameter {unknown[0]!r}: its shape {params[unknown[0]].shape} is "
                "not fully known (deferred initialization is not supported when sharding)."
            )
        rows = [
            (n, tuple(int(s) for s in (p.shape or ())), _dtype_name(p), isinstance(p, Constant))
            for n, p in params.items()
        ]
        check_same_parameters(
            self.comm,
            [[n, list(shape), dtype, const] for n, shape, dtype, const in rows],
            "sharded ParameterDict",
        )
        self.layout: ShardLayout = plan_layout(
            rows,
            self.comm.size,
            self.comm.rank,
            axis=axis,
            min_bytes=min_bytes,
            chunk_bytes=chunk_bytes,
            replicate=replicate,
        )
        self.whole_limit_bytes = whole_limit_bytes
        self.local = ParameterDict(params.prefix)
        for s in self.layout:
            p = params[s.name]
            if isinstance(p, Constant):
                q: Parameter = Constant(s.name, p.value)
            else:
                q = Parameter(
                    s.name,
                    grad_req=p.grad_req,
                    shape=s.local_shape(self.comm.rank),
                    dtype=p.dtype,
                    lr_mult=p.lr_mult,
                    wd_mult=p.wd_mult,
                    init=p.init,
                    differentiable=p._differentiable,
                )
            q._storage = self.local._storage
            self.local._params[s.name] = q

    # --- mapping of the local parameters ----------------------------------------------------

    def __getitem__(self, name: str) -> Parameter:
        return self.local[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.local)

    def __len__(self) -> int:
        return len(self.local)

    def __contains__(self, name: object) -> bool:
        return name in self.local

    def items(self) -> ItemsView[str, Parameter]:
        """Return ``(name, local Parameter)`` pairs."""
        return self.local.items()

    def keys(self) -> KeysView[str]:
        """Return the parameter names."""
        return self.local.keys()

    def values(self) -> ValuesView[Parameter]:
        """Return the local parameters."""
        return self.local.values()

    def __repr__(self) -> str:
        return f"ShardedParameterDict(rank={self.comm.rank}, size={self.comm.size})\n{self.layout}"

    # --- initialization --------------------------------------------------------------------

    def _agreed_seed(self, seed: int | None) -> int:
        """Return rank 0's seed (its global seed when ``None``); raise everywhere on a mismatch."""
        from paramarena.kernels.seeds import get_seed

        mine = [seed, get_seed()]
        seen = [json.loads(r) for r in self.comm.allgather_bytes(json.dumps(mine).encode())]
        for rank, (given, _default) in enumerate(seen):
            if given != seen[0][0]:
                raise ShardingError(
                    f"initialize(seed={seen[0][0]}) on rank 0 but seed={given} on rank {rank}: "
                    "every rank must pass the same seed."
                )
        return int(seen[0][0] if seen[0][0] is not None else seen[0][1])

    def initialize(
        self,
        init: Any = None,
        ctx: Any = None,
        verbose: bool = False,
        force_reinit: bool = False,
        seed: int | None = None,
    ) -> None:
        """Fill this rank's rows with the values ``ParameterDict.initialize`` gives them.

        Same arguments as :meth:`ParameterDict.initialize`; the gathered result is bit for bit
        the single-process one at any world size. ``seed=None`` uses rank 0's global seed.

        Raises
        ------
        paramarena.errors.ShardingError
            The ranks pass different seeds, or a whole-array initializer (``Orthogonal``, ...)
            meets a parameter larger than ``whole_limit_bytes`` (the message names it).
        """
        agreed = self._agreed_seed(seed)
        if init is None:
            from paramarena import init as initializer

            init = initializer.Uniform()
        from paramarena.params import dict_loading

        dict_loading.reserve(  # one segment per arena, as ParameterDict.initialize does
            self.local,
            [
                (p, p.shape, chk.as_np_dtype(p.dtype), chk.normalize_ctx(ctx, p.name))
                for p in self.local.values()
                if p._data is None or force_reinit
            ],
        )
        for s in self.layout:
            p = self.local[s.name]
            if s.replicated or isinstance(p, Constant):
                p.initialize(
                    None, ctx, init, force_reinit=force_reinit, seed=agreed, verbose=verbose
                )
                continue
            inner = init if p.init is None else p.init
            fill = ShardFill(
                inner, s.shape, s.rows(self.comm.rank)[0], self.comm, self.whole_limit_bytes
            )
            p.initialize(fill, ctx, init, force_reinit=force_reinit, seed=agreed, verbose=verbose)

    def zero_grad(self) -> None:
        """Zero every local gradient (one kernel per arena)."""
        self.local.zero_grad()

    # --- whole values ------------------------------------------------------------------------

    def gather(self) -> dict[str, np.ndarray]:
        """Return every parameter's full value on every rank (one broadcast per rank and shard).

        Meant for checks and small models: it builds the whole dict on every rank.
        """
        out: dict[str, np.ndarray] = {}
        rank = self.comm.rank
        for s in self.layout:
            p = self.local[s.name]
            mine = np.ascontiguousarray(p._reduce())
            if s.replicated:
                out[s.name] = mine
                continue
            whole = np.empty(s.shape, dtype=mine.dtype)
            for r in range(self.comm.size):
                start, stop = s.rows(r)
                part = whole[start:stop]
                if r == rank:
                    part[...] = mine
                self.comm.broadcast_buffer(part, r)
            out[s.name] = whole
        return out

    # --- files ---------------------------------------------------------------------------------

    def save(self, filename: Any, strip_prefix: str = "", **options: Any) -> None:
        """Write one ordinary zarr checkpoint from every rank's rows (call it on every rank).

        Every rank writes the chunks of its rows; rank 0 writes the manifest and ``COMMIT``
        once every rank has reported success. Any failure raises
        :class:`~paramarena.errors.ShardedCheckpointError` on every rank and commits nothing.
        Options as for the zarr backend (``storage_options``, ``concurrency``, ``client``,
        ``progress``); ``compression`` is not supported.
        """
        from paramarena.distributed.checkpoint import save_sharded

        save_sharded(self, filename, strip_prefix=strip_prefix, **options)

    def load(
        self,
        filename: Any,
        ctx: Any = None,
        allow_missing: bool = False,
        ignore_extra: bool = False,
        restore_prefix: str = "",
        **options: Any,
    ) -> LoadReport:
        """Load this rank's rows from any checkpoint (call it on every rank).

        A zarr checkpoint (saved by any number of ranks, or by one process) is read by byte
        range: only this rank's rows, verified by chunk, by parameter, or (rows split over
        ranks) by combining every rank's crc32c. Other formats are read whole and sliced.
        Errors on any rank are raised on every rank, before any parameter changes.
        """
        from paramarena.distributed.sharded_load import load_sharded

        return load_sharded(
            self,
            filename,
            ctx=ctx,
            allow_missing=allow_missing,
            ignore_extra=ignore_extra,
            restore_prefix=restore_prefix,
            **options,
        )


def shard(
    params: ParameterDict | Parameter,
    comm: Communicator | str | None = None,
    *,
    axis: int = 0,
    min_bytes: int = DEFAULT_MIN_BYTES,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    replicate: tuple[str, ...] = (),
    whole_limit_bytes: int = DEFAULT_WHOLE_LIMIT_BYTES,
) -> ShardedParameterDict:
    """Shard a dict (or one parameter) along axis 0 over the ranks of ``comm``.

    Call it on every rank with the same dict (full shapes, not yet initialized).

    Parameters
    ----------
    params : ParameterDict or Parameter
        Parameters with known full shapes.
    comm : Communicator or str, optional
        Default ``"mpi"`` under ``mpirun``, else ``"single"``.
    axis : int, optional
        Only 0.
    min_bytes : int, optional
        Parameters smaller than this are replicated (default 1 MiB).
    chunk_bytes : int, optional
        Largest checkpoint chunk of a sharded parameter (default 32 MiB).
    replicate : tuple of str, optional
        Names to replicate whatever their size.
    whole_limit_bytes : int, optional
        Largest parameter a whole-array initializer (``Orthogonal``, ...) may build on rank 0.

    Returns
    -------
    ShardedParameterDict

    Raises
    ------
    paramarena.errors.RankMismatchError
        The ranks' dicts differ (every rank raises, naming the first differing parameter).
    paramarena.errors.ShardingError
        A shape is unknown, or ``axis`` is not 0.
    """
    if isinstance(params, Parameter):
        single = ParameterDict()
        single._params[params.name] = params
        params = single
    if not isinstance(params, ParameterDict):
        raise ParameterTypeError(
            f"shard() takes a ParameterDict or a Parameter, got {type(params).__name__}."
        )
    return ShardedParameterDict(
        params,
        comm,
        axis=axis,
        min_bytes=min_bytes,
        chunk_bytes=chunk_bytes,
        replicate=replicate,
        whole_limit_bytes=whole_limit_bytes,
    )
