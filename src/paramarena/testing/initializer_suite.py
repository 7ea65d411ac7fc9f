"""``InitializerTests``: the conformance suite every initializer should pass.

Subclass it and give an ``initializer`` fixture returning an instance::

    import pytest
    from paramarena.testing import InitializerTests

    class TestMyInit(InitializerTests):
        shape = (8, 6)            # a shape the initializer accepts

        @pytest.fixture
        def initializer(self):
            return MyInit(scale=0.5)

The suite checks that values are written in place for every float dtype, that they are a pure
function of ``(seed, parameter name)`` (same seed and name: identical bytes; the order of
initialization does not matter), that random initializers depend on the seed and the name,
that ``dumps()``/``create()`` round-trips, and that ``ParameterDict.initialize`` gives the same
values as calling the initializer directly.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

__all__ = ["InitializerTests"]


def _dtype(name: str) -> np.dtype[Any]:
    if name == "bfloat16":
        import ml_dtypes

        bf16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bf16
    return np.dtype(name)


class InitializerTests:
    """Conformance tests for an initializer; subclass and provide ``initializer``.

    Capabilities (class attributes to override)
    -------------------------------------------
    shape : tuple of int
        A shape the initializer accepts (e.g. 4-d for ``Bilinear``).
    param_name : str
        The parameter name used (its suffix drives MXNet's dispatch; ``"weight"`` by default).
    supported_dtypes : tuple of str
        Float dtypes the initializer fills.
    is_random : bool
        Whether values depend on the seed and the name (``False`` for Zero/One/Constant).
    serializable : bool
        Whether ``create(init.dumps())`` rebuilds an equal initializer (registered by name).
    supports_empty : bool
        Whether a zero-size array is accepted (and left empty).
    """

    shape: ClassVar[tuple[int, ...]] = (8, 6)
    param_name: ClassVar[str] = "layer0_weight"
    supported_dtypes: ClassVar[tuple[str, ...]] = ("float32", "float64", "float16", "bfloat16")
    is_random: ClassVar[bool] = True
    serializable: ClassVar[bool] = True
    supports_empty: ClassVar[bool] = True

    @pytest.fixture
    def initializer(self) -> Any:
        """Return the initializer instance to test; override in the subclass."""
        raise NotImplementedError("define an `initializer` fixture returning an Initializer")

    # ------------------------------------------------------------------ helpers

    def _fill(
        self,
        init: Any,
        *,
        seed: int = 0,
        name: str | None = None,
        dtype: str = "float32",
        shape: tuple[int, ...] | None = None,
    ) -> np.ndarray:
        from paramarena.init import InitDesc

        arr = np.full(shape if shape is not None else self.shape, np.nan, dtype=_dtype(dtype))
        init(InitDesc(name or self.param_name, seed=seed), arr)
        return arr

    # ------------------------------------------------------------------ the tests

    def test_is_an_initializer(self, initializer: Any) -> None:
        """The fixture is an ``Initializer`` instance."""
        from paramarena.init import Initializer

        assert isinstance(initializer, Initializer)

    @pytest.mark.parametrize("dtype_name", ["float32", "float64", "float16", "bfloat16"])
    def test_fills_in_place(self, initializer: Any, dtype_name: str) -> None:
        """Every supported float dtype is filled in place with finite values."""
        if dtype_name not in self.supported_dtypes:
            pytest.skip(f"{type(initializer).__name__} does not fill {dtype_name}")
        arr = self._fill(initializer, dtype=dtype_name)
        assert arr.dtype == _dtype(dtype_name)
        assert arr.shape == self.shape
        assert np.isfinite(arr.astype(np.float64)).all(), "values left unset or not finite"

    def test_deterministic(self, initializer: Any) -> None:
        """The same seed and name give identical bytes."""
        a = self._fill(initializer, seed=3)
        b = self._fill(initializer, seed=3)
        assert a.tobytes() == b.tobytes()

    def test_order_independent(self, initializer: Any) -> None:
        """Values do not depend on what was initialized before."""
        first_a = self._fill(initializer, seed=3, name="a_weight")
        self._fill(initializer, seed=3, name="b_weight")
        b_first = self._fill(initializer, seed=3, name="b_weight")
        second_a = self._fill(initializer, seed=3, name="a_weight")
        assert first_a.tobytes() == second_a.tobytes()
        assert b_first.shape == first_a.shape

    def test_depends_on_seed_and_name(self, initializer: Any) -> None:
        """Random initializers give different values for another seed or name."""
        if not self.is_random:
            pytest.skip("not a random initializer")
        base = self._fill(initializer, seed=3)
        assert base.tobytes() != self._fill(initializer, seed=4).tobytes()
        other = self._fill(initializer, seed=3, name="other_" + self.param_name)
        assert base.tobytes() != other.tobytes()

    def test_global_seed_used_when_none(self, initializer: Any) -> None:
        """Without a seed in the InitDesc the global seed is used."""
        from paramarena.init import InitDesc
        from paramarena.kernels import seeds

        previous = seeds.get_seed()
        try:
            seeds.seed(21)
            arr = np.full(self.shape, np.nan, dtype=np.float32)
            initializer(InitDesc(self.param_name), arr)
        finally:
            seeds.seed(previous)
        assert arr.tobytes() == self._fill(initializer, seed=21).tobytes()

    def test_empty_array(self, initializer: Any) -> None:
        """A zero-size array is accepted."""
        if not self.supports_empty:
            pytest.skip("zero-size arrays not accepted")
        shape = (0, *self.shape[1:])
        arr = self._fill(initializer, shape=shape)
        assert arr.shape == shape

    def test_non_array_refused(self, initializer: Any) -> None:
        """A non-array argument raises a ParamarenaError."""
        from paramarena.errors import ParamarenaError
        from paramarena.init import InitDesc

        with pytest.raises(ParamarenaError):
            initializer(InitDesc(self.param_name, seed=0), [[0.0] * 3] * 3)

    def test_dumps_create_roundtrip(self, initializer: Any) -> None:
        """``create(init.dumps())`` rebuilds an equal initializer with equal values."""
        from paramarena.init import create

        if not self.serializable:
            pytest.skip("not registered by name")
        rebuilt = create(initializer.dumps())
        assert type(rebuilt) is type(initializer)
        assert rebuilt == initializer
        assert self._fill(rebuilt, seed=9).tobytes() == self._fill(initializer, seed=9).tobytes()

    def test_parameter_dict_initialize(self, initializer: Any) -> None:
        """``ParameterDict.initialize`` gives the values of a direct call."""
        import paramarena as pa

        prefix, _, short = self.param_name.rpartition("_")
        params = pa.ParameterDict(prefix + "_" if prefix else "")
        param = params.get(short, shape=self.shape)
        params.initialize(initializer, seed=13)
        direct = self._fill(initializer, seed=13)
        np.testing.assert_array_equal(param.data(), direct)
