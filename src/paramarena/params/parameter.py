"""``Parameter`` and ``Constant``: named arrays with one copy per device context.

The behaviour follows MXNet 1.9.1's ``mxnet.gluon.Parameter`` / ``Constant`` (legacy shape
semantics: an unknown dimension is ``0``), without autograd, symbols or trainers. Values are
numpy arrays on the CPU and device arrays (``__cuda_array_interface__``) on GPUs; every copy is
made through the device backend registered for its context type.

Initialization builds one host array ``np.zeros(shape, dtype)``, fills it with the chosen
initializer (``init`` argument > ``Parameter.init`` > ``default_init``), then copies it to each
context. The plugin hook ``paramarena_parameter_initialized`` fires after every
(re-)initialization.

Differences from MXNet 1.9.1 (the full table with reasons is in ``docs/migration.md``):
errors are :class:`~paramarena.errors.ParamarenaError` subclasses that are also the fitting
builtin, with MXNet's messages; no ``var()``, sparse storage, autograd or trainers; ``shape=()``
is a known scalar shape; ``shape`` and ``dtype`` are validated at construction;
``Constant.initialize(init=X)`` keeps the value; ``initialize`` takes ``seed`` and logs with
``verbose``; loading fills in an unknown shape (h.9). Kept on purpose: a failed
``_finish_deferred_init`` clears the deferred state (h.17); ``cpu_pinned(i)`` / ``cpu_shared(i)``
find the ``cpu(i)`` copy (h.13).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from paramarena import init as _initializer
from paramarena.devices.context import Context
from paramarena.errors import (
    DeferredInitializationError,
    NotInitializedError,
    ParameterTypeError,
    ParameterValueError,
    ShapeMismatchError,
    WrongContextError,
)
from paramarena.hooks.manager import get_plugin_manager
from paramarena.params import arrays as pa
from paramarena.params import checks as chk
from paramarena.params.arenas import ParameterStorage
from paramarena.params.parameter_arrays import ParameterArrays

__all__ = ["Constant", "Parameter"]

logger = logging.getLogger("paramarena")

CtxArg = Context | Sequence[Context] | None

_backend = pa.backend_of


class Parameter(ParameterArrays):
    """A named array with one independent copy per device context, plus gradient buffers.

    Parameters
    ----------
    name : str
        Full name of the parameter (ParameterDict prefixes included).
    grad_req : {'write', 'add', 'null'}, optional
        Gradient requirement; ``'null'`` means no gradient buffer.
    shape : int or tuple of int, optional
        Shape; ``None`` or a ``0`` dimension means unknown (needs ``allow_deferred_init``).
        An int becomes a 1-tuple; other values are stored as given.
    dtype : numpy dtype-like, optional
        Stored as given (default the class ``numpy.float32``); ``"bfloat16"`` is allowed.
    lr_mult, wd_mult : float, optional
        Learning-rate and weight-decay multipliers (plain attributes for optimizers).
    init : Initializer or str, optional
        This parameter's initializer; wins over the global one given to ``initialize``.
    allow_deferred_init : bool, optional
        Allow ``initialize`` with an unknown shape; allocation then waits for the shape.
    differentiable : bool, optional
        If False, ``grad_req`` is forced to ``'null'``.
    stype, grad_stype : {'default', 'row_sparse', 'csr'}, optional
        Storage types; only ``'default'`` can hold data in paramarena.

    Raises
    ------
    paramarena.errors.ParameterValueError
        Invalid ``grad_req`` (checked before ``grad_stype``, then ``stype``).
    paramarena.errors.ParameterTypeError
        Invalid ``shape`` or ``dtype``.

    Notes
    -----
    A parameter created by :meth:`ParameterDict.get` keeps its copies and gradients as views
    into that dict's arenas (:mod:`paramarena.params.arenas`); a standalone one allocates
    each array on its own. Either way, an operation that replaces an array (re-initialization,
    :meth:`cast`, :meth:`reset_ctx`, ``grad_req='null'``) hands out a new one; an old
    reference keeps its values and never aliases another parameter.
    """

    #: Bumped whenever any parameter's gradient buffers are replaced (zero_grad plans use it).
    _grad_epoch: ClassVar[int] = 0

    def __init__(
        self,
        name: str,
        grad_req: str = "write",
        shape: int | Sequence[int] | None = None,
        dtype: Any = np.float32,
        lr_mult: float = 1.0,
        wd_mult: float = 1.0,
        init: Any = None,
        allow_deferred_init: bool = False,
        differentiable: bool = True,
        stype: str = "default",
        grad_stype: str = "default",
    ) -> None:
        if not isinstance(name, str):
            raise ParameterTypeError(f"Parameter name must be a str; got {name!r}.")
        self._data_list: list[Any] | None = None
        self._grad_list: list[Any] | None = None
        self._lazy = None  # set here too: keeps the instance dict's shared key layout
        self._lazy_index = 0
        self._storage: ParameterStorage | None = None
        self._ctx_list: list[Context] | None = None
        self._ctx_map: chk.CtxMap | None = None
        self._deferred_init: tuple[Any, ...] = ()
        self._init_options: dict[str, Any] = {}
        #: The 64-bit key the current values were drawn with (``None``: never drawn, or loaded
        #: / set since): ``initialize(seed=init_key, force_reinit=True)`` regenerates them.
        self.init_key: int | None = None
        self._differentiable = differentiable
        self._allow_deferred_init = allow_deferred_init
        self._grad_req: str | None = None
        self._shape: chk.ShapeLike = chk.normalize_shape(shape, name)
        self.name = name
        chk.as_np_dtype(dtype, what=f"dtype of Parameter '{name}':")
        self._dtype: Any = dtype
        self.lr_mult = lr_mult
        self.wd_mult = wd_mult
        self.grad_req = grad_req
        self.init = init
        self._grad_stype = chk.check_stype(grad_stype, "grad_stype", name)
        self._stype = chk.check_stype(stype, "stype", name)

    def __repr__(self) -> str:
        return f"Parameter {self.name} (shape={self.shape}, dtype={self.dtype})"

    # --- properties --------------------------------------------------------------------------

    @property
    def _grad(self) -> list[Any] | None:
        """The gradient buffers, one per copy (``None`` without gradients)."""
        return self._grad_arrays

    @_grad.setter
    def _grad(self, grads: list[Any] | None) -> None:
        self._grad_arrays = grads
        Parameter._grad_epoch += 1

    @property
    def grad_req(self) -> str:
        """``'write'``, ``'add'`` or ``'null'``; setting it (re-)allocates or frees gradients."""
        assert self._grad_req is not None
        return self._grad_req

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        req = chk.check_grad_req(req)
        if not self._differentiable:
            req = "null"
        if self._grad_req == req:
            return
        self._grad_req = req
        if req == "null" and self._grad is not None:
            self._release("grad", self._grad)
            self._grad = None
        elif self._data is not None:
            self._init_grad()

    @property
    def dtype(self) -> Any:
        """The dtype as stored (setting it is :meth:`cast`)."""
        return self._dtype

    @dtype.setter
    def dtype(self, dtype: Any) -> None:
        self.cast(dtype)

    @property
    def shape(self) -> chk.ShapeLike:
        """The shape as stored, ``None`` if unknown; ``0`` marks an unknown dimension.

        Setting it checks compatibility: each stored dim must be unknown or equal.
        """
        return self._shape

    @shape.setter
    def shape(self, new_shape: int | Sequence[int] | None) -> None:
        normalized = chk.normalize_shape(new_shape, self.name)
        if self._shape is None:
            self._shape = normalized
            return
        if normalized is None:
            raise ShapeMismatchError(
                f"Expected shape None is incompatible with given shape {self._shape}."
            )
        chk.shape_setter_check(self._shape, normalized)
        self._shape = normalized

    @property
    def _np_dtype(self) -> np.dtype[Any]:
        return chk.as_np_dtype(self._dtype)

    # --- initialization ----------------------------------------------------------------------

    def initialize(
        self,
        init: Any = None,
        ctx: CtxArg = None,
        default_init: Any = None,
        force_reinit: bool = False,
        *,
        seed: int | None = None,
        verbose: bool = False,
    ) -> None:
        """Allocate and fill the parameter on each context (or defer until the shape is known).

        Parameters
        ----------
        init : Initializer or str, optional
            Wins over ``self.init``, which wins over ``default_init``.
        ctx : Context or list of Context, optional
            Where copies live; default ``[current_context()]``. Duplicates give two copies.
        default_init : Initializer or str, optional
            The global initializer; ``None`` means ``Uniform()``.
        force_reinit : bool, optional
            Re-initialize an initialized parameter (else warn and return).
        seed : int, optional
            Key of the random initializers: values are a pure function of
            ``(seed, name, element index)``. Default: a fresh key from the global seed stream
            (:func:`paramarena.kernels.seeds.next_key`), so every call draws new values, as
            in MXNet. Recorded in :attr:`init_key` either way.
        verbose : bool, optional
            Log ``Initialized <name> as <init>: <rms>`` (logger ``paramarena``, level INFO).

        Raises
        ------
        paramarena.errors.ParameterValueError
            The shape is unknown and ``allow_deferred_init`` is False, or the parameter is
            sparse.
        """
        if self._data is not None and not force_reinit:
            warnings.warn(
                f"Parameter '{self.name}' is already initialized, ignoring. "
                "Set force_reinit=True to re-initialize.",
                stacklevel=2,
            )
            return
        self._release("data", self._data)
        self._release("grad", self._grad)
        self._data = self._grad = None
        ctx_list = chk.normalize_ctx(ctx, self.name)
        if default_init is None:
            default_init = _initializer.Uniform()
        if init is None:
            init = default_init if self.init is None else self.init
        if seed is None:
            from paramarena.kernels.seeds import next_key

            seed = next_key()
        self.init_key = seed
        self._init_options = {"seed": seed, "verbose": verbose}
        if not chk.shape_is_known(self._shape, self.name):
            if self._allow_deferred_init:
                self._deferred_init = (init, ctx_list, default_init, None)
                return
            raise ParameterValueError(
                f"Cannot initialize Parameter '{self.name}' because it has invalid shape: "
                f"{self._shape}."
            )
        self._deferred_init = (init, ctx_list, default_init, None)
        self._finish_deferred_init()

    def _finish_deferred_init(self) -> None:
        """Run a deferred initialization now that the shape is known (no-op if none pending).

        Raises
        ------
        paramarena.errors.ParameterValueError
            The shape is still unknown (the deferred state is cleared first, as in MXNet).
        """
        if not self._deferred_init:
            return
        init, ctx_list, default_init, data = self._deferred_init
        self._deferred_init = ()
        if not chk.shape_is_known(self._shape, self.name):
            raise ParameterValueError(
                f"Cannot initialize Parameter '{self.name}' because it has invalid shape: "
                f"{self._shape}. Set its full shape (param.shape = ...) first."
            )
        self._check_dense("initialize")
        adopt = False
        if data is None:
            assert self._shape is not None
            host, adopt = pa.fresh_host(self._storage, ctx_list, tuple(self._shape), self._np_dtype)
            try:
                seed = self._init_options.get("seed")
                desc = _initializer.InitDesc(self.name, {"__init__": init}, seed=seed)
                _initializer.create(default_init)(desc, host)
            except BaseException:
                if adopt:
                    self._release("data", [host], ctx_list[:1])
                raise
            if self._init_options.get("verbose"):
                rms = float(np.linalg.norm(host.astype(np.float64)) / np.sqrt(max(host.size, 1)))
                logger.info("Initialized %s as %s: %s", self.name, init, rms)
            data = host
        self._init_impl(data, ctx_list, adopt=adopt)

    def _init_impl(self, data: Any, ctx_list: Sequence[Context], *, adopt: bool = False) -> None:
        """Copy ``data`` to every context, allocate gradients and fire the hook.

        With ``adopt``, ``data`` is already the arena view of the first context and becomes
        that copy as it is.
        """
        host = chk.to_host(data, f"Parameter '{self.name}'")
        if host.dtype != self._np_dtype:
            from paramarena import kernels

            host = kernels.cast(host, self._np_dtype)
        if adopt:
            try:
                copies = [host, *pa.copies_of(self._storage, host, ctx_list[1:])]
            except BaseException:
                self._release("data", [host], ctx_list[:1])
                raise
        else:
            copies = pa.copies_of(self._storage, host, ctx_list)
        self._release("data", self._data)
        self._release("grad", self._grad)
        self._grad = None
        self._ctx_list = list(ctx_list)
        self._ctx_map = chk.build_ctx_map(self._ctx_list)
        self._data = copies
        self._init_grad()
        get_plugin_manager().hook.paramarena_parameter_initialized(
            parameter=self, ctx=list(self._ctx_list)
        )

    def _release(
        self, kind: str, arrays: list[Any] | None, ctx_list: Sequence[Context] | None = None
    ) -> None:
        """Hand views of the dict's arenas back (``kind`` is ``"data"`` or ``"grad"``).

        ``ctx_list`` gives the contexts of ``arrays``; default: the parameter's current ones.
        """
        contexts = self._ctx_list if ctx_list is None else ctx_list
        if self._storage is not None and arrays is not None and contexts is not None:
            self._storage.release(kind, contexts, arrays)

    def _init_grad(self) -> None:
        """(Re-)allocate gradient buffers as zeros, or drop them when grad_req is 'null'."""
        self._release("grad", self._grad)
        if self.grad_req == "null":
            self._grad = None
            return
        assert self._data is not None
        assert self._ctx_list is not None
        self._grad = pa.zero_grads(self._storage, self._ctx_list, self._data, self._np_dtype)

    def _check_dense(self, action: str) -> None:
        if self._stype != "default" or self._grad_stype != "default":
            raise chk.sparse_unsupported(self.name, self._stype, self._grad_stype, action)

    # --- accessors ---------------------------------------------------------------------------

    def _check_and_get(self, arr_list: list[Any] | None, ctx: Any) -> Any:
        if arr_list is not None:
            if ctx is list:
                return arr_list
            if ctx is None:
                if len(arr_list) == 1:
                    return arr_list[0]
                from paramarena.devices.context import current_context

                ctx = current_context()
            if not isinstance(ctx, Context):
                raise ParameterTypeError(
                    f"ctx for Parameter '{self.name}' must be a Context; got {ctx!r}."
                )
            assert self._ctx_map is not None
            idx = chk.ctx_lookup(self._ctx_map, ctx)
            if idx is not None:
                return arr_list[idx]
            raise WrongContextError(
                f"Parameter '{self.name}' was not initialized on context {ctx}. "
                f"It was only initialized on {self._ctx_list}."
            )
        if self._deferred_init:
            raise DeferredInitializationError(chk.DEFERRED_MSG.format(self.name, self._shape))
        raise NotInitializedError(chk.NOT_INIT_MSG.format(self.name))

    def data(self, ctx: Context | None = None) -> Any:
        """Return the live copy on ``ctx`` (the only copy, or the current context's, if None).

        Raises
        ------
        paramarena.errors.NotInitializedError
            Not initialized (:class:`~paramarena.errors.DeferredInitializationError` if deferred).
        paramarena.errors.WrongContextError
            No copy on ``ctx``.
        """
        if self._stype != "default":
            raise NotInitializedError(
                f"Cannot return a copy of Parameter '{self.name}' on ctx {ctx} via data() "
                f"because its storage type is {self._stype}. paramarena does not support "
                "sparse storage."
            )
        return self._check_and_get(self._data, ctx)

    def list_data(self) -> list[Any]:
        """Return the copies on all contexts, in context-list order."""
        if self._stype != "default":
            raise NotInitializedError(
                f"Cannot return copies of Parameter '{self.name}' on all contexts via "
                f"list_data() because its storage type is {self._stype}. paramarena does not "
                "support sparse storage."
            )
        result: list[Any] = self._check_and_get(self._data, list)
        return result

    def _check_grad(self) -> None:
        if self._data is not None and self._grad is None:
            raise NotInitializedError(
                f"Cannot get gradient array for Parameter '{self.name}' because grad_req='null'"
            )

    def grad(self, ctx: Context | None = None) -> Any:
        """Return the gradient buffer on ``ctx``.

        Raises
        ------
        paramarena.errors.NotInitializedError
            ``grad_req='null'`` or not initialized.
        paramarena.errors.WrongContextError
            No copy on ``ctx``.
        """
        self._check_grad()
        return self._check_and_get(self._grad, ctx)

    def list_grad(self) -> list[Any]:
        """Return the gradient buffers on all contexts, in context-list order."""
        self._check_grad()
        result: list[Any] = self._check_and_get(self._grad, list)
        return result

    def list_ctx(self) -> list[Context]:
        """Return the contexts holding copies (the pending ones while deferred).

        Raises
        ------
        paramarena.errors.NotInitializedError
            Neither initialized nor deferred.
        """
        if self._data is None:
            if self._deferred_init:
                return list(self._deferred_init[1])
            raise NotInitializedError(f"Parameter '{self.name}' has not been initialized")
        assert self._ctx_list is not None
        return list(self._ctx_list)

    def zero_grad(self) -> None:
        """Set every gradient buffer to zero (no-op without gradients)."""
        if self._grad is None:
            return
        assert self._ctx_list is not None
        groups: dict[Context, list[Any]] = {}
        for c, g in zip(self._ctx_list, self._grad, strict=True):
            groups.setdefault(c, []).append(g)
        for c, arrays in groups.items():
            _backend(c).zero(arrays)

    # --- changing data -----------------------------------------------------------------------

    def set_data(self, data: Any) -> None:
        """Copy ``data`` into every copy (converted to this parameter's dtype).

        While initialization is deferred the array is kept and used when it completes.

        Raises
        ------
        paramarena.errors.ShapeMismatchError
            ``data.shape`` is incompatible with the stored shape.
        paramarena.errors.ParameterTypeError
            ``data`` is not an array.
        paramarena.errors.NotInitializedError
            Neither initialized nor deferred.
        """
        if not hasattr(data, "shape"):
            raise ParameterTypeError(
                f"set_data of Parameter '{self.name}' expects an array with a shape; "
                f"got {type(data).__name__}."
            )
        chk.check_set_data_shape(self.name, self._shape, tuple(data.shape))
        self.shape = tuple(data.shape)
        self.init_key = None
        if self._data is None:
            if not self._deferred_init:
                raise NotInitializedError(f"Parameter '{self.name}' has not been initialized")
            self._deferred_init = (*self._deferred_init[:3], data)
            return
        self._check_dense("set data of")
        host = chk.to_host(data, f"set_data of Parameter '{self.name}'")
        assert self._ctx_list is not None
        for c, arr in zip(self._ctx_list, self._data, strict=True):
            _backend(c).copy_into(arr, host)

    def reset_ctx(self, ctx: CtxArg) -> None:
        """Move the parameter to ``ctx``; multiple copies are averaged first.

        Raises
        ------
        paramarena.errors.ParameterValueError
            Neither initialized nor deferred.
        """
        ctx_list = chk.normalize_ctx(ctx, self.name)
        if self._data is not None:
            data = self._reduce()
            self._init_impl(data, ctx_list)
        elif self._deferred_init:
            init, _, default_init, data = self._deferred_init
            self._deferred_init = (init, ctx_list, default_init, data)
        else:
            raise ParameterValueError(
                f"Cannot reset context for Parameter '{self.name}' because it has not been "
                "initialized."
            )

    def cast(self, dtype: Any) -> None:
        """Change the dtype; initialized copies and gradients are converted.

        Raises
        ------
        paramarena.errors.ParameterTypeError
            ``dtype`` is not a valid dtype.
        """
        np_dtype = chk.as_np_dtype(dtype, what=f"dtype of Parameter '{self.name}':")
        self._dtype = dtype
        if self._data is None:
            return
        assert self._ctx_list is not None
        data = pa.converted(self._storage, "data", self._ctx_list, self._data, np_dtype)
        grads = (
            None
            if self._grad is None
            else pa.converted(self._storage, "grad", self._ctx_list, self._grad, np_dtype)
        )
        self._release("data", self._data)
        self._release("grad", self._grad)
        self._data, self._grad = data, grads

    def _reduce(self) -> np.ndarray:
        """Return a new host (numpy) array: the copy, or the average of several copies."""
        from paramarena.params.averaging import host_average

        self._check_dense("reduce")
        copies = self.list_data()
        assert self._ctx_list is not None
        hosts = [
            np.asarray(_backend(c).to_host(d)) for c, d in zip(self._ctx_list, copies, strict=True)
        ]
        return host_average(hosts, self._np_dtype)

    def _load_init(
        self,
        data: Any,
        ctx: CtxArg,
        cast_dtype: bool = False,
        dtype_source: str = "current",
        adopt: bool = False,
    ) -> None:
        """Initialize (or overwrite) this parameter from a loaded array.

        With ``adopt``, ``data`` is a view of this parameter's data arena on its first context
        that the loader filled in place: it becomes that copy without another copy.

        Raises
        ------
        paramarena.errors.ShapeMismatchError, paramarena.errors.DTypeMismatchError
            Shape or dtype disagree (dtype only without ``cast_dtype``).
        paramarena.errors.WrongContextError
            ``ctx`` differs from the contexts the parameter lives (or will live) on.
        """
        from paramarena.params.loading import load_into_parameter

        load_into_parameter(self, data, ctx, cast_dtype, dtype_source, adopt=adopt)


# Constant lives in its own module; it is re-exported here (the MXNet import location).
from paramarena.params.constant import Constant  # noqa: E402
