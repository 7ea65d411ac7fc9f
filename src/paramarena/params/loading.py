"""Saving and loading helpers behind ``ParameterDict.save`` / ``load`` / ``load_dict``.

Private to :mod:`paramarena.params.parameter_dict`, except :class:`LoadReport`, which ``load`` and
``load_dict`` return. Messages are MXNet 1.9.1's (``_brief_print_list`` shortening included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
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
    UnexpectedParameterError,
    WrongContextError,
)
from paramarena.params.checks import (
    NAMING_HELP,
    as_np_dtype,
    brief_print_list,
    normalize_ctx,
    shape_fits,
    to_host,
)

if TYPE_CHECKING:
    from paramarena.params.parameter import Parameter

__all__ = [
    "LoadPlan",
    "LoadReport",
    "array_spec",
    "check_restore_prefix",
    "collect_for_save",
    "load_into_parameter",
    "normalize_loaded",
    "plan_load",
    "prepare_loaded",
    "strip_arg_aux",
    "stripped_names",
    "unnamed_list_error",
]


@dataclass(frozen=True)
class LoadReport:
    """What ``ParameterDict.load`` / ``load_dict`` did.

    Attributes
    ----------
    loaded : tuple of str
        Full names of the parameters that received data, in file order.
    missing : tuple of str
        Own parameters absent from the source (only possible with ``allow_missing=True``);
        they are left as they were.
    skipped : tuple of str
        Names (with ``restore_prefix``) in the source that match no parameter (only possible
        with ``ignore_extra=True``).
    """

    loaded: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadPlan:
    """Which stored array goes to which parameter.

    Attributes
    ----------
    targets : dict of str to str
        Own full parameter name -> stored name, in file order.
    missing, skipped : tuple of str
        As in :class:`LoadReport`.
    """

    targets: dict[str, str]
    missing: tuple[str, ...]
    skipped: tuple[str, ...]


def strip_arg_aux(name: str) -> str:
    """Drop a leading ``'arg:'`` or ``'aux:'`` (MXNet checkpoint naming)."""
    return name[4:] if name.startswith(("arg:", "aux:")) else name


def plain_names(stored: Sequence[str], distinct: bool = False) -> bool:
    """Whether the stored names are distinct and none starts with ``arg:`` or ``aux:``.

    ``distinct``: the caller knows them to be distinct (the keys of a dict, in order).
    """
    if any(map(str.startswith, stored, repeat(("arg:", "aux:")))):
        return False
    return distinct or len(set(stored)) == len(stored)


def stripped_names(stored: Iterable[str], source: str) -> dict[str, str]:
    """Map each stored name without ``arg:``/``aux:`` to the stored name, in stored order.

    Raises
    ------
    paramarena.errors.DuplicateNameError
        Two different stored names mean the same parameter (``arg:w`` and ``w``, or
        ``arg:w`` and ``aux:w``): loading would silently let one of them win.
    """
    stored = list(stored)
    if not any(map(str.startswith, stored, repeat(("arg:", "aux:")))):
        return dict(zip(stored, stored, strict=True))  # no prefix to drop
    names: dict[str, str] = {}
    for name in stored:
        key = strip_arg_aux(name)
        previous = names.get(key)
        if previous is not None and previous != name:
            raise DuplicateNameError(
                f"{source} stores both {previous!r} and {name!r}, which both name parameter "
                f"{key!r} once 'arg:'/'aux:' is dropped; refusing to pick one. Rename or drop "
                "one of them."
            )
        names[key] = name
    return names


def _host_value(param: Parameter) -> np.ndarray:
    """Return what to save for ``param``: its one host copy itself (no copy), else the average.

    Saving then never copies the dict: the storage backends read the arrays in place.
    """
    copies = param.list_data()
    if len(copies) == 1 and isinstance(copies[0], np.ndarray):
        param._check_dense("save")
        return copies[0]
    return param._reduce()


def collect_for_save(params: Iterable[Parameter], strip_prefix: str) -> dict[str, np.ndarray]:
    """Return ``{name without strip_prefix: host array}`` in order (copies averaged).

    Raises
    ------
    paramarena.errors.ParameterValueError
        A parameter's name does not start with ``strip_prefix``, or contains a NUL character.
    paramarena.errors.NotInitializedError
        A parameter is not initialized (checked before the prefix, as in MXNet).
    """
    arrays: dict[str, np.ndarray] = {}
    cut = len(strip_prefix)
    for param in params:
        lazy = param._lazy
        run = None if lazy is None else lazy[0]
        copies = None if run is not None else param._data
        if run is not None:  # arrays still to be made: the run's view, nothing made
            weight = run.views()[param._lazy_index]
        elif (
            copies is not None
            and len(copies) == 1
            and type(copies[0]) is np.ndarray
            and param._stype == "default"
            and param._grad_stype == "default"
        ):
            weight = copies[0]  # the one dense host copy (what _host_value returns, faster)
        else:
            weight = _host_value(param)
        if not param.name.startswith(strip_prefix):
            raise ParameterValueError(
                f"Prefix '{strip_prefix}' is to be stripped before saving, but Parameter's "
                f"name '{param.name}' does not start with '{strip_prefix}'. A parameter shared "
                "from (or added with update() from) a ParameterDict with another prefix keeps "
                "that prefix; save with a strip_prefix all names start with."
            )
        key = param.name[cut:]
        if "\0" in key:
            raise ParameterValueError(
                f"Cannot save Parameter {param.name!r}: its name contains a NUL character "
                "(\\x00). MXNet cuts names at the first NUL when it reads a file, so the file "
                "would load under another name; rename the parameter."
            )
        arrays[key] = weight
    return arrays


def check_restore_prefix(names: Iterable[str], restore_prefix: str) -> None:
    """Check that every own name starts with ``restore_prefix``.

    Raises
    ------
    paramarena.errors.ParameterValueError
        Naming the first parameter that does not.
    """
    if not restore_prefix:
        return
    for name in names:
        if not name.startswith(restore_prefix):
            raise ParameterValueError(
                f"restore_prefix is '{restore_prefix}' but Parameters name '{name}' does not "
                f"start with '{restore_prefix}'. " + NAMING_HELP
            )


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, tuple)
    )


def unnamed_list_error(count: int, source: str) -> ParameterTypeError:
    """Return the error for loading an unnamed list of arrays (MXNet ``nd.save`` of a list)."""
    return ParameterTypeError(
        f"Cannot load an unnamed list of {count} arrays from {source} into a ParameterDict: "
        "parameters are matched by name. Such lists come from MXNet's nd.save() of a list; "
        "pass a dict name -> array (or a list of (name, array) pairs) instead."
    )


def normalize_loaded(param_dict: Any, source: str) -> dict[str, Any]:
    """Turn what ``load_dict`` accepts into ``{stored name without arg:/aux:: array}``.

    Accepts a mapping or a sequence of ``(name, array)`` pairs; ``arg:``/``aux:`` prefixes are
    stripped in both cases (a name repeated in a list of pairs: the later one wins; two
    different names that strip to the same one, ``arg:w`` and ``w``: DuplicateNameError).

    Raises
    ------
    paramarena.errors.ParameterTypeError
        For an unnamed list of arrays (what MXNet's ``nd.save`` of a list stores) or anything
        else that is neither a mapping nor a list of pairs.
    """
    if isinstance(param_dict, Mapping):
        items = list(param_dict.items())
    elif isinstance(param_dict, Sequence) and not isinstance(param_dict, (str, bytes)):
        if any(_is_array(item) for item in param_dict):
            raise unnamed_list_error(len(param_dict), source)
        items = []
        for item in param_dict:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ParameterTypeError(
                    f"load_dict expects a dict name -> array or a list of (name, array) pairs; "
                    f"got an item {item!r} in {source}."
                )
            items.append((item[0], item[1]))
    else:
        raise ParameterTypeError(
            "load_dict expects a dict name -> array or a list of (name, array) pairs; got "
            f"{type(param_dict).__name__}."
        )
    result: dict[str, Any] = {}
    for key, _value in items:
        if not isinstance(key, str):
            raise ParameterTypeError(
                f"load_dict expects string names; got {key!r} ({type(key).__name__}) in {source}."
            )
    stripped_names((key for key, _value in items), source)  # arg:w and w together: an error
    for key, value in items:
        result[strip_arg_aux(key)] = value
    return result


#: What ``rename=`` accepts: a mapping stored name -> parameter name, or a callable.
Rename = Mapping[str, str] | Callable[[str], str] | None
#: ``(shape, dtype)`` of stored arrays or parameters, by name (``match="order"`` checks them).
Specs = Mapping[str, tuple[Any, Any]]

MATCH_MODES = ("name", "order")


def _renamed(stored_names: Iterable[str], rename: Rename, source: str) -> dict[str, str]:
    """Return ``{name to match: stored name}`` after ``rename`` (file order)."""
    result: dict[str, str] = {}
    for stored in stored_names:
        if rename is None:
            new = stored
        elif isinstance(rename, Mapping):
            new = rename.get(stored, stored)
        elif callable(rename):
            new = rename(stored)
        else:
            raise ParameterTypeError(
                f"rename must be a mapping or a callable; got {type(rename).__name__}."
            )
        if not isinstance(new, str):
            raise ParameterTypeError(
                f"rename turned stored name '{stored}' from {source} into {new!r}; expected a str."
            )
        if new in result:
            raise ParameterValueError(
                f"rename maps both '{result[new]}' and '{stored}' from {source} to '{new}'."
            )
        result[new] = stored
    return result


def array_spec(value: Any) -> tuple[tuple[int, ...], Any]:
    """Return ``(shape, dtype)`` of a loaded value (an array or an array-like)."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return tuple(value.shape), value.dtype
    host = np.asarray(value)
    return host.shape, host.dtype


def _describe(spec: tuple[Any, Any]) -> str:
    shape, dtype = spec
    return f"shape {None if shape is None else tuple(shape)}, dtype {as_np_dtype(dtype).name}"


def _plan_by_order(
    own_names: Sequence[str],
    stored_names: Sequence[str],
    *,
    allow_missing: bool,
    ignore_extra: bool,
    source: str,
    own_specs: Specs,
    stored_specs: Specs,
    cast_dtype: bool,
) -> LoadPlan:
    """Pair stored arrays with parameters in order, checking every shape and dtype."""
    if len(stored_names) < len(own_names) and not allow_missing:
        name = own_names[len(stored_names)]
        raise MissingParameterError(
            f"match='order': {source} stores {len(stored_names)} arrays but the ParameterDict "
            f"has {len(own_names)} parameters; Parameter '{name}' (#{len(stored_names)}) "
            "and the ones after it have no array. Set allow_missing=True to leave them."
        )
    if len(stored_names) > len(own_names) and not ignore_extra:
        stored = stored_names[len(own_names)]
        raise UnexpectedParameterError(
            f"match='order': {source} stores {len(stored_names)} arrays but the ParameterDict "
            f"has {len(own_names)} parameters; stored array '{stored}' (#{len(own_names)}) "
            "and the ones after it have no parameter. Set ignore_extra=True to skip them."
        )
    targets: dict[str, str] = {}
    for i, (name, stored) in enumerate(zip(own_names, stored_names, strict=False)):
        own_shape, own_dtype = own_specs[name]
        saved_shape, saved_dtype = stored_specs[stored]
        shape_ok = own_shape is None or shape_fits(own_shape, tuple(saved_shape))
        dtype_ok = cast_dtype or as_np_dtype(own_dtype) == as_np_dtype(saved_dtype)
        if not (shape_ok and dtype_ok):
            what = "shape" if not shape_ok else "dtype"
            raise (ShapeMismatchError if not shape_ok else DTypeMismatchError)(
                f"match='order': stored array #{i} '{stored}' in {source} "
                f"({_describe(stored_specs[stored])}) does not fit Parameter #{i} '{name}' "
                f"({_describe(own_specs[name])}): the {what}s differ. The stored arrays and the "
                "parameters must be in the same order (Block.save_parameters writes them in "
                "the order the blocks registered them)."
            )
        targets[name] = stored
    return LoadPlan(
        targets,
        tuple(own_names[len(stored_names) :]),
        tuple(stored_names[len(own_names) :]),
    )


def plan_load(
    own_names: Sequence[str],
    stored_names: Iterable[str],
    *,
    allow_missing: bool,
    ignore_extra: bool,
    restore_prefix: str,
    source: str,
    rename: Rename = None,
    match: str = "name",
    own_specs: Specs | None = None,
    stored_specs: Specs | None = None,
    cast_dtype: bool = False,
) -> LoadPlan:
    """Match stored names (already without ``arg:``/``aux:``) to own parameters.

    Parameters
    ----------
    own_names : sequence of str
        The dict's full names, in insertion order.
    stored_names : iterable of str
        The stored names, in file order.
    rename : mapping or callable, optional
        Applied to each stored name before ``restore_prefix`` is prepended; a mapping leaves
        names it does not list as they are.
    match : {'name', 'order'}, optional
        ``'order'`` pairs the i-th stored array with the i-th parameter whatever the names
        (for ``Block.save_parameters`` files), checking shapes and dtypes with ``own_specs``
        and ``stored_specs``.

    Raises
    ------
    paramarena.errors.MissingParameterError
        An own parameter is absent and ``allow_missing`` is False.
    paramarena.errors.UnexpectedParameterError
        A stored name matches no parameter and ``ignore_extra`` is False.
    paramarena.errors.ShapeMismatchError, paramarena.errors.DTypeMismatchError
        With ``match='order'``: the first pair whose shape or dtype differ.
    paramarena.errors.ParameterValueError, paramarena.errors.ParameterTypeError
        Invalid ``match`` or ``rename``.
    """
    if match not in MATCH_MODES:
        raise ParameterValueError(f"match must be 'name' or 'order', got {match!r}.")
    if match == "order":
        if rename is not None or restore_prefix:
            raise ParameterValueError(
                "match='order' pairs arrays by position: rename= and restore_prefix= do not "
                "apply to it."
            )
        assert own_specs is not None
        assert stored_specs is not None
        return _plan_by_order(
            own_names,
            list(stored_names),
            allow_missing=allow_missing,
            ignore_extra=ignore_extra,
            source=source,
            own_specs=own_specs,
            stored_specs=stored_specs,
            cast_dtype=cast_dtype,
        )
    if rename is None:  # names as stored (distinct already), prefixed
        keys = list(stored_names)
        if not restore_prefix and keys == list(own_names):  # the dict's own names, in order
            return LoadPlan(dict(zip(keys, keys, strict=True)), (), ())
        shown = [restore_prefix + k for k in keys] if restore_prefix else keys
        arg_names = dict(zip(shown, keys, strict=True))
        if len(arg_names) != len(keys):  # the same name twice: _renamed names it
            arg_names = {restore_prefix + n: s for n, s in _renamed(keys, None, source).items()}
    else:
        arg_names = {}
        for new, stored in _renamed(stored_names, rename, source).items():
            arg_names[restore_prefix + new] = stored
    own = set(own_names)
    if all(map(arg_names.__contains__, own_names)):
        missing: tuple[str, ...] = ()
    else:
        missing = tuple(name for name in own_names if name not in arg_names)
    if missing and not allow_missing:
        name = missing[0]
        raise MissingParameterError(
            f"Parameter '{name[len(restore_prefix) :]}' is missing in {source}, which contains "
            f"parameters: {brief_print_list(arg_names)}. Please make sure source and target "
            "networks have the same prefix. " + NAMING_HELP
        )
    skipped = []
    if own.issuperset(arg_names):  # every stored name has its parameter
        return LoadPlan(arg_names, missing, ())
    targets: dict[str, str] = {}
    for name, stored in arg_names.items():
        if name in own:
            targets[name] = stored
            continue
        if not ignore_extra:
            raise UnexpectedParameterError(
                f"Parameter '{name}' loaded from {source} is not present in ParameterDict, "
                f"choices are: {brief_print_list(own_names)}. Set ignore_extra to True to "
                "ignore. Please make sure source and target networks have the same prefix. "
                + NAMING_HELP
            )
        skipped.append(name)
    return LoadPlan(targets, missing, tuple(skipped))


def prepare_loaded(param: Parameter, data: Any, cast_dtype: bool, dtype_source: str) -> np.ndarray:
    """Check a loaded array against ``param`` and return it ready to copy in.

    Fills in or narrows ``param.shape``; converts the dtype (``dtype_source='current'``) or
    casts the parameter (``'saved'``) when ``cast_dtype`` is set.

    Raises
    ------
    paramarena.errors.ShapeMismatchError, paramarena.errors.DTypeMismatchError
        Shape or dtype disagree (dtype only without ``cast_dtype``).
    paramarena.errors.ParameterValueError
        ``dtype_source`` is neither ``'current'`` nor ``'saved'``, or the parameter is sparse.
    """
    name = param.name
    if cast_dtype and dtype_source not in ("current", "saved"):
        raise ParameterValueError(
            f"dtype_source must be 'current' or 'saved', got {dtype_source!r} "
            f"(loading Parameter '{name}')."
        )
    host = to_host(data, f"loading Parameter '{name}'")
    param._check_dense("load data into")
    stored = param.shape
    if stored is None:
        param._shape = tuple(host.shape)
    else:
        if not shape_fits(stored, host.shape):
            raise ShapeMismatchError(
                f"Failed loading Parameter '{name}' from saved params: shape "
                f"incompatible expected {stored} vs saved {host.shape}"
            )
        param.shape = tuple(host.shape)
    wanted = as_np_dtype(param.dtype)
    if host.dtype != wanted:
        if not cast_dtype:
            raise DTypeMismatchError(
                f"Failed loading Parameter '{name}' from saved params: dtype "
                f"incompatible expected {param.dtype} vs saved {host.dtype.type}. "
                "Set cast_dtype=True to cast the dtype of saved params."
            )
        if dtype_source == "current":
            from paramarena import kernels

            host = kernels.cast(host, wanted)
        else:
            param.cast(host.dtype.type)
    return host


def load_into_parameter(
    param: Parameter,
    data: Any,
    ctx: Any,
    cast_dtype: bool,
    dtype_source: str,
    *,
    adopt: bool = False,
) -> None:
    """Initialize (or overwrite) ``param`` from a loaded array: ``Parameter._load_init``."""
    data = prepare_loaded(param, data, cast_dtype, dtype_source)
    ctx_list = None if ctx is None else normalize_ctx(ctx, param.name)
    if param._data is None:
        if param._deferred_init:
            _check_load_ctx(param.name, ctx_list, param._deferred_init[1])
            ctx_list = param._deferred_init[1]
        elif ctx_list is None:
            ctx_list = [Context("cpu", 0)]
        param._init_impl(data, ctx_list, adopt=adopt)
    else:
        _check_load_ctx(param.name, ctx_list, param.list_ctx())
        param.set_data(data)
    param._deferred_init = ()
    param.init_key = None  # the values come from a file, not from a draw


def _check_load_ctx(name: str, ctx: list[Context] | None, current: Sequence[Context]) -> None:
    if ctx is not None and set(ctx) != set(current):
        raise WrongContextError(
            f"Failed to load Parameter '{name}' on {ctx} because it was previous "
            f"initialized on {list(current)}."
        )
