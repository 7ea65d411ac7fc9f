"""``ParameterDict``: an ordered, prefixed collection of parameters (MXNet Gluon semantics).

Names are full names (prefix included). ``get`` creates or retrieves a parameter, reconciling
the requested attributes with the stored ones; ``shared`` dicts lend their parameters to
lookups; ``save``/``load`` go through :mod:`paramarena.storage`, so every storage backend
(``.npz``, MXNet ``.params``, zarr, plugins) works.

Differences from MXNet 1.9.1
----------------------------
- Errors are :class:`~paramarena.errors.ParamarenaError` subclasses that are also the fitting
  builtin (``ValueError`` for shape/dtype/attribute mismatches, ``KeyError`` for missing or
  extra names, ``RuntimeError`` for uninitialized parameters, ``TypeError`` for wrong argument
  types) where MXNet raises ``AssertionError``; MXNet's message texts are kept.
- ``shared`` may also be a registry name (``"namespace:name"`` or an unambiguous bare name),
  resolved by :func:`paramarena.params.registry.resolve`.
- ``get(name, **kwargs)`` (spec h.5): an unknown keyword raises
  :class:`~paramarena.errors.ParameterTypeError`; ``stype``, ``grad_stype``,
  ``allow_deferred_init`` and ``differentiable`` are compared with the existing parameter's
  values like the other attributes (MXNet silently creates useless attributes). An int
  ``shape`` means a 1-tuple, as in the constructor.
- ``get_constant`` accepts any array-like value, lists included (h.7), and raises
  :class:`~paramarena.errors.ParameterTypeError` when the name belongs to a non-constant
  parameter (MXNet returns it when no value is given).
- ``__len__`` exists (h.6). ``d[missing]`` raises
  :class:`~paramarena.errors.MissingParameterError` (a ``KeyError``) suggesting the full name.
- ``initialize(verbose=True)`` logs through the ``paramarena`` logger without changing the
  initializer passed (h.14); ``initialize`` takes ``seed``; ``init=None`` means ``Uniform()``.
- Parameters created by a dict keep their data and gradients in the dict's arenas
  (:mod:`paramarena.params.arenas`): ``zero_grad`` is one kernel call per
  ``(context, dtype)`` arena, plus one ``backend.zero`` call per context for parameters that
  live elsewhere (shared or added with ``update``); integer gradients are zeroed correctly (h.4).
- ``setattr`` only sets existing public attributes (else ``ParameterValueError``).
- ``list_ctx`` returns contexts in first-seen order (MXNet: set order).
- ``load_dict`` strips ``arg:``/``aux:`` from ``(name, array)`` pairs too, and rejects an
  unnamed list of arrays with a clear ``ParameterTypeError`` (h.8). ``load`` and ``load_dict``
  return a :class:`~paramarena.params.loading.LoadReport`; ``load`` reads only the arrays it
  needs and logs skipped names. ``save``/``load`` take backend ``**options``.
"""

from __future__ import annotations

import logging
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any

import numpy as np

from paramarena.devices.context import Context
from paramarena.errors import (
    DTypeMismatchError,
    DuplicateNameError,
    MissingParameterError,
    ParameterTypeError,
    ParameterValueError,
    ShapeMismatchError,
)
from paramarena.params import batch_init, dict_loading
from paramarena.params import checks as chk
from paramarena.params import loading as pio
from paramarena.params.arenas import ParameterStorage, foreign_grads
from paramarena.params.bulk import paused_gc
from paramarena.params.loading import LoadReport
from paramarena.params.parameter import Constant, CtxArg, Parameter

if TYPE_CHECKING:
    import os

__all__ = ["LoadReport", "ParameterDict"]

logger = logging.getLogger("paramarena")

#: Keywords ``get`` accepts, mapped to the attribute holding the existing value.
_GET_KWARGS: dict[str, str] = {
    "grad_req": "grad_req",
    "shape": "shape",
    "dtype": "dtype",
    "lr_mult": "lr_mult",
    "wd_mult": "wd_mult",
    "init": "init",
    "allow_deferred_init": "_allow_deferred_init",
    "differentiable": "_differentiable",
    "stype": "_stype",
    "grad_stype": "_grad_stype",
}
#: Attributes ``setattr`` may set.
_SETTABLE = ("grad_req", "lr_mult", "wd_mult", "init", "shape", "dtype")


class ParameterDict:
    """An ordered dict of parameters whose names start with ``prefix``.

    Parameters
    ----------
    prefix : str, optional
        Prepended to every name given to :meth:`get` / :meth:`get_constant`.
    shared : ParameterDict or str, optional
        Parameters are looked up here (by full name) when not found in this dict; a string is
        resolved through :func:`paramarena.params.registry.resolve`.

    Raises
    ------
    paramarena.errors.ParameterTypeError
        ``prefix`` is not a str, or ``shared`` is neither a ParameterDict nor a str.
    paramarena.errors.RegistryError
        ``shared`` names no registered dict.

    Examples
    --------
    >>> import paramarena as pa
    >>> params = pa.ParameterDict("net_")
    >>> params.get("weight", shape=(2, 3))
    Parameter net_weight (shape=(2, 3), dtype=<class 'numpy.float32'>)
    """

    def __init__(self, prefix: str = "", shared: ParameterDict | str | None = None) -> None:
        if not isinstance(prefix, str):
            raise ParameterTypeError(f"ParameterDict prefix must be a str; got {prefix!r}.")
        if isinstance(shared, str):
            from paramarena.params import registry

            shared = registry.resolve(shared)
        elif shared is not None and not isinstance(shared, ParameterDict):
            raise ParameterTypeError(
                "shared must be a ParameterDict, a registry name or None; got "
                f"{type(shared).__name__}."
            )
        self._prefix = prefix
        self._params: dict[str, Parameter] = {}
        self._shared = shared
        self._storage = ParameterStorage()
        # (gradient epoch, number of parameters) -> grads zero_grad zeroes outside the arenas
        self._zero_plan: tuple[tuple[int, int], list[tuple[Any, list[Any]]]] | None = None

    def __repr__(self) -> str:
        name = self._prefix + " " if self._prefix else ""
        content = "\n".join(f"  {v!r}" for v in self.values())
        return f"{name}(\n{content}\n)"

    def __getitem__(self, key: str) -> Parameter:
        try:
            return self._params[key]
        except KeyError:
            hint = ""
            if isinstance(key, str) and self._prefix + key in self._params:
                hint = f" Keys are full names: did you mean '{self._prefix + key}'?"
            raise MissingParameterError(
                f"'{key}': no such parameter in ParameterDict (prefix '{self._prefix}').{hint}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __contains__(self, key: object) -> bool:
        return key in self._params

    def __len__(self) -> int:
        return len(self._params)

    def items(self) -> ItemsView[str, Parameter]:
        """Return ``(full name, Parameter)`` pairs in insertion order."""
        return self._params.items()

    def keys(self) -> KeysView[str]:
        """Return the full names in insertion order."""
        return self._params.keys()

    def values(self) -> ValuesView[Parameter]:
        """Return the parameters in insertion order."""
        return self._params.values()

    @property
    def prefix(self) -> str:
        """The prefix prepended to names given to ``get`` (read-only)."""
        return self._prefix

    # --- lookup ------------------------------------------------------------------------------

    def _get_impl(self, name: str) -> Parameter | None:
        if name in self._params:
            return self._params[name]
        if self._shared is not None and name in self._shared._params:
            self._params[name] = self._shared._params[name]
            return self._params[name]
        return None

    def get(self, name: str, **kwargs: Any) -> Parameter:
        """Retrieve ``prefix + name``, creating ``Parameter(prefix + name, **kwargs)`` if absent.

        For an existing parameter each keyword is reconciled with the stored value: ``None``
        always matches; a shape merges dim-wise (unknown dims are ``0``); dtypes compare as
        numpy dtypes; initializers compare with ``Initializer.__eq__``; an attribute that is
        currently ``None`` is set.

        Raises
        ------
        paramarena.errors.ParameterTypeError
            An unknown keyword.
        paramarena.errors.ShapeMismatchError, paramarena.errors.DTypeMismatchError
            Shape / dtype disagree with the stored one.
        paramarena.errors.ParameterValueError
            Another attribute disagrees.
        """
        unknown = [k for k in kwargs if k not in _GET_KWARGS]
        if unknown:
            raise ParameterTypeError(
                f"ParameterDict.get() got unexpected keyword argument(s) "
                f"{', '.join(map(repr, unknown))} for Parameter '{self._prefix + name}'; "
                f"valid keywords: {', '.join(_GET_KWARGS)}."
            )
        name = self._prefix + name
        param = self._get_impl(name)
        if param is None:
            param = Parameter(name, **kwargs)
            param._storage = self._storage
            self._params[name] = param
            return param
        for k, v in kwargs.items():
            self._reconcile(param, k, v)
        return param

    @staticmethod
    def _reconcile(param: Parameter, k: str, v: Any) -> None:
        attr = _GET_KWARGS[k]
        existing = getattr(param, attr, None)
        if existing is None:
            if v is not None:
                setattr(param, attr, v)
            return
        if v is None:
            return
        if k == "shape":
            desired = chk.normalize_shape(v, param.name)
            assert desired is not None
            if len(desired) == len(existing):
                merged = chk.merge_shapes(desired, existing)
                if merged is not None:
                    param._shape = merged
                    return
            v = desired
        elif k == "dtype":
            if chk.as_np_dtype(v) == chk.as_np_dtype(existing):
                return
        elif v == existing:
            return
        error = {"shape": ShapeMismatchError, "dtype": DTypeMismatchError}.get(
            k, ParameterValueError
        )
        raise error(
            f"Cannot retrieve Parameter '{param.name}' because desired attribute does not match "
            f"with stored for attribute '{k}': desired '{v}' vs stored '{existing}'."
        )

    def get_constant(self, name: str, value: Any = None) -> Constant:
        """Retrieve the constant ``prefix + name``, creating it from ``value`` if absent.

        Raises
        ------
        paramarena.errors.MissingParameterError
            Absent and ``value`` is None.
        paramarena.errors.ParameterTypeError
            A non-constant parameter has that name.
        paramarena.errors.ParameterValueError
            The existing constant's value differs from ``value``.
        """
        name = self._prefix + name
        param = self._get_impl(name)
        if param is None:
            if value is None:
                raise MissingParameterError(
                    f"No constant named '{name}'. Please specify value if you want to create "
                    "a new constant."
                )
            param = Constant(name, value)
            param._storage = self._storage
            self._params[name] = param
            return param
        if not isinstance(param, Constant):
            raise ParameterTypeError(f"Parameter '{name}' already exists but it is not a constant.")
        if value is not None:
            value = np.asarray(
                chk.to_host(value, "get_constant") if hasattr(value, "shape") else value
            )
            if tuple(param.shape or ()) != value.shape or not np.array_equal(param.value, value):
                raise ParameterValueError(
                    f"Constant '{name}' already exists but it's value doesn't match new value"
                )
        return param

    def update(self, other: Mapping[str, Parameter] | ParameterDict) -> None:
        """Copy all parameters of ``other`` into this dict (the prefix is unchanged).

        Raises
        ------
        paramarena.errors.DuplicateNameError
            A name maps to a different Parameter object here; nothing is modified.
        """
        for k, v in other.items():
            if k in self._params and self._params[k] is not v:
                raise DuplicateNameError(
                    "Cannot update self with other because they have different Parameters "
                    f"with the same name '{k}'"
                )
        for k, v in other.items():
            self._params[k] = v

    # --- bulk operations ---------------------------------------------------------------------

    def initialize(
        self,
        init: Any = None,
        ctx: CtxArg = None,
        verbose: bool = False,
        force_reinit: bool = False,
        seed: int | None = None,
    ) -> None:
        """Initialize every parameter; per-parameter ``init`` wins over the global ``init``.

        Parameters
        ----------
        init : Initializer or str, optional
            The global (default) initializer; ``None`` means ``Uniform()``.
        ctx : Context or list of Context, optional
            Default ``[current_context()]``.
        verbose : bool, optional
            Log each initialization on the ``paramarena`` logger (INFO).
        force_reinit : bool, optional
            Re-initialize initialized parameters (else each warns and is skipped).
        seed : int, optional
            Key of the random initializers (values are a pure function of
            ``(seed, name, element index)``). Default: one fresh 64-bit key per call from the
            global seed stream (:func:`paramarena.kernels.seeds.next_key`), so two calls, and
            every ``force_reinit``, draw new values, as in MXNet. Each parameter initialized
            records it in ``Parameter.init_key``.
        """
        if init is None:
            from paramarena import init as initializer

            init = initializer.Uniform()
        if seed is None:
            from paramarena.kernels.seeds import next_key

            seed = next_key()
        batch_init.initialize_batched(
            self, init, ctx, verbose=verbose, force_reinit=force_reinit, seed=seed
        )

    def zero_grad(self) -> None:
        """Zero every gradient buffer.

        The gradients of parameters this dict created live in its arenas: one kernel call per
        ``(context, dtype)`` arena zeroes them all. Gradients living elsewhere (parameters of a
        ``shared`` dict, or added with :meth:`update`) take one ``backend.zero`` call per
        context.
        """
        key = (Parameter._grad_epoch, len(self._params))
        if self._zero_plan is None or self._zero_plan[0] != key:
            self._zero_plan = (key, foreign_grads(self.values(), self._storage))
        self._storage.zero_grads()
        for backend, arrays in self._zero_plan[1]:
            backend.zero(arrays)

    def reset_ctx(self, ctx: CtxArg) -> None:
        """Move every parameter to ``ctx`` (see :meth:`Parameter.reset_ctx`)."""
        for p in self.values():
            p.reset_ctx(ctx)

    def list_ctx(self) -> list[Context]:
        """Return the distinct contexts of all parameters (first-seen order)."""
        seen: dict[Context, None] = {}
        for p in self.values():
            for c in p.list_ctx():
                seen.setdefault(c, None)
        return list(seen)

    def setattr(self, name: str, value: Any) -> None:
        """Set attribute ``name`` of every parameter (through its property setters).

        Raises
        ------
        paramarena.errors.ParameterValueError
            ``name`` is not a settable parameter attribute.
        """
        if name not in _SETTABLE:
            raise ParameterValueError(
                f"Cannot set attribute {name!r} on the parameters of this ParameterDict; "
                f"settable attributes: {', '.join(_SETTABLE)}."
            )
        for p in self.values():
            setattr(p, name, value)

    # --- across processes (docs/distributed.md) ----------------------------------------------

    def broadcast(self, root: int = 0, comm: Any = None) -> None:
        """Overwrite every parameter on every rank with rank ``root``'s values, in place.

        One broadcast per ``(context, dtype)`` data arena; the ranks first check (one digest
        allgather) that they hold the same parameters.

        Parameters
        ----------
        root : int, optional
            The rank whose values win.
        comm : Communicator or str, optional
            Default: ``"mpi"`` under ``mpirun``, else the one-rank ``"single"``.

        Raises
        ------
        paramarena.errors.RankMismatchError
            The ranks' dicts differ (names, shapes, dtypes): on every rank.
        paramarena.errors.NotInitializedError
            A parameter is not initialized.
        """
        from paramarena.params import collectives

        collectives.broadcast(self, root=root, comm=comm)

    def allreduce_grads(self, op: str = "mean", comm: Any = None) -> None:
        """Sum (``"sum"``) or average (``"mean"``) every gradient over the ranks, in place.

        One ``Allreduce`` per gradient arena (the arena is one flat buffer), no per-parameter
        call and no copy of the dict; parameters living outside the dict's arenas take one
        call each.

        Raises
        ------
        paramarena.errors.RankMismatchError
            The ranks' dicts differ (names, shapes, dtypes): on every rank.
        paramarena.errors.ConfigurationError
            ``op`` is not ``"mean"`` or ``"sum"``.
        """
        from paramarena.params import collectives

        collectives.allreduce_grads(self, op=op, comm=comm)

    # --- files -------------------------------------------------------------------------------

    def save(
        self, filename: str | os.PathLike[str], strip_prefix: str = "", **options: Any
    ) -> None:
        """Save every parameter (copies averaged, on the host) with ``paramarena.storage.save``.

        Parameters
        ----------
        filename : str or os.PathLike
            Path or URL; its suffix picks the format (``.params``, ``.npz``, ``.zarr``, ...).
        strip_prefix : str, optional
            Removed from the front of every name.
        **options
            Passed to :func:`paramarena.storage.save` (``format``, ``progress``, ...).

        Raises
        ------
        paramarena.errors.ParameterValueError
            A name does not start with ``strip_prefix``.
        paramarena.errors.NotInitializedError
            A parameter is not initialized.
        """
        from paramarena import storage

        with paused_gc():
            arrays = pio.collect_for_save(self.values(), strip_prefix)
            keys = {
                p.name[len(strip_prefix) :]: p.init_key
                for p in self.values()
                if p.init_key is not None
            }
            if keys and storage.resolve(filename, "w", options.get("format")).name == "zarr":
                options = {**options, "init_keys": keys}  # recorded in the zarr manifest
            storage.save(filename, arrays, **options)

    def load(
        self,
        filename: str | os.PathLike[str],
        ctx: CtxArg = None,
        allow_missing: bool = False,
        ignore_extra: bool = False,
        restore_prefix: str = "",
        cast_dtype: bool = False,
        dtype_source: str = "current",
        *,
        rename: pio.Rename = None,
        match: str = "name",
        **options: Any,
    ) -> LoadReport:
        """Load parameters from a checkpoint, reading only the arrays that are needed.

        Parameters
        ----------
        filename : str or os.PathLike
            Path or URL of the checkpoint.
        ctx : Context or list of Context, optional
            Where loaded parameters live (default: where they are, or ``cpu(0)``).
        allow_missing : bool, optional
            Leave parameters absent from the file as they are instead of raising.
        ignore_extra : bool, optional
            Skip stored arrays that match no parameter instead of raising.
        restore_prefix : str, optional
            Prepended to every stored name; every own name must start with it.
        cast_dtype : bool, optional
            Convert dtypes instead of raising on a mismatch.
        dtype_source : {'current', 'saved'}, optional
            With ``cast_dtype``: keep the parameter's dtype, or adopt the stored one.
        rename : mapping or callable, optional
            Maps each stored name (after ``arg:``/``aux:`` are dropped, before
            ``restore_prefix``) to the name to match: a dict (names it lacks stay as they
            are) or a function. For files whose names differ from the dict's, e.g.
            ``Block.save_parameters`` files (``0.weight``): ``rename={"0.weight":
            "net_dense0_weight", ...}``.
        match : {'name', 'order'}, optional
            ``'order'`` pairs the i-th stored array with the i-th parameter (insertion order)
            whatever the names, checking every shape and dtype and naming the first pair that
            differs; ``allow_missing`` / ``ignore_extra`` allow fewer / more stored arrays.
        **options
            Passed to :mod:`paramarena.storage` (``format``, ``progress``, ``storage_options``).

        Returns
        -------
        LoadReport
            Loaded, missing and skipped names.
        """
        from paramarena.storage.session import shared_reads

        with paused_gc(), shared_reads():  # the manifest is parsed and validated once
            return dict_loading.load_file(
                self,
                filename,
                ctx,
                allow_missing=allow_missing,
                ignore_extra=ignore_extra,
                restore_prefix=restore_prefix,
                cast_dtype=cast_dtype,
                dtype_source=dtype_source,
                rename=rename,
                match=match,
                **options,
            )

    def load_dict(
        self,
        param_dict: Any,
        ctx: CtxArg = None,
        allow_missing: bool = False,
        ignore_extra: bool = False,
        restore_prefix: str = "",
        filename: str | None = None,
        cast_dtype: bool = False,
        dtype_source: str = "current",
        *,
        rename: pio.Rename = None,
        match: str = "name",
    ) -> LoadReport:
        """Load parameters from a dict ``name -> array`` or a list of ``(name, array)`` pairs.

        ``arg:``/``aux:`` name prefixes are dropped, then ``rename`` applies, then
        ``restore_prefix`` is prepended. Arguments as in :meth:`load` (``rename``, ``match``
        included); ``filename`` only names the source in error messages.

        Returns
        -------
        LoadReport
            Loaded, missing and skipped names.

        Raises
        ------
        paramarena.errors.MissingParameterError
            A parameter is absent and ``allow_missing`` is False.
        paramarena.errors.UnexpectedParameterError
            A name matches no parameter and ``ignore_extra`` is False.
        paramarena.errors.ParameterTypeError
            ``param_dict`` is an unnamed list of arrays or not a mapping / list of pairs.
        """
        source = f"file: {filename}" if filename else "param_dict"
        loaded = pio.normalize_loaded(param_dict, source)
        plan = pio.plan_load(
            list(self.keys()),
            loaded,
            allow_missing=allow_missing,
            ignore_extra=ignore_extra,
            restore_prefix=restore_prefix,
            source=source,
            rename=rename,
            match=match,
            own_specs=dict_loading.own_specs(self),
            stored_specs={k: pio.array_spec(v) for k, v in loaded.items()},
            cast_dtype=cast_dtype,
        )
        dict_loading.load_targets(self, plan.targets, loaded, ctx, cast_dtype, dtype_source)
        return LoadReport(tuple(plan.targets), plan.missing, plan.skipped)
