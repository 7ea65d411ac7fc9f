"""Where a :class:`~paramarena.params.parameter.Parameter` keeps its arrays, made on first access.

``ParameterDict.initialize`` of many parameters allocates their views as runs of equal shapes
(:class:`~paramarena.devices.segments.RowRun`) and hands each parameter its run and row: no
view object and no list per parameter until the parameter's arrays are asked for. Every
internal access goes through ``_data`` / ``_grad_arrays``, which make them then.
"""

from __future__ import annotations

from typing import Any

from paramarena.devices.segments import RowRun

__all__ = ["ParameterArrays"]


class ParameterArrays:
    """The ``_data`` and ``_grad_arrays`` of a parameter, possibly still pending."""

    _data_list: list[Any] | None
    _grad_list: list[Any] | None

    #: ``(data run, gradient run)`` and this parameter's row in them, while its arrays are not
    #: made yet: ``ParameterDict.initialize`` of many parameters hands each one its place
    #: instead of two view objects and two lists. A data run of None: the data is made already
    #: (a load hands the parameter the view it read into) and only the gradients are pending;
    #: a gradient run of None: no gradients. Class defaults: nothing pending.
    _lazy: tuple[RowRun | None, RowRun | None] | None = None
    _lazy_index: int = 0

    def _materialize(self) -> None:
        """Make the pending arrays (see ``_lazy``)."""
        runs, row = self._lazy, self._lazy_index
        assert runs is not None
        self._lazy = None
        if runs[0] is not None:
            self._data_list = [runs[0].views()[row]]
        self._grad_list = None if runs[1] is None else [runs[1].views()[row]]

    @property
    def _data(self) -> list[Any] | None:
        """The copies, one per context (``None``: not initialized)."""
        if self._lazy is not None:
            self._materialize()
        return self._data_list

    @_data.setter
    def _data(self, data: list[Any] | None) -> None:
        if self._lazy is not None:
            self._materialize()
        self._data_list = data

    @property
    def _grad_arrays(self) -> list[Any] | None:
        """The gradient buffers, one per copy, without bumping ``_grad_epoch`` when set."""
        if self._lazy is not None:
            self._materialize()
        return self._grad_list

    @_grad_arrays.setter
    def _grad_arrays(self, grads: list[Any] | None) -> None:
        if self._lazy is not None:
            self._materialize()
        self._grad_list = grads
