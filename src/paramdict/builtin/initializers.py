"""Built-in plugin: MXNet's initializers, registered by name through the plugin hook.

``paramdict.init.create("xavier")`` (or ``'["xavier", {...}]'``) finds them here. Third-party
plugins add their own initializers the same way (see ``docs/initializers.md``).
"""

from __future__ import annotations

from collections.abc import Iterator

from paramdict.hookspecs import hookimpl
from paramdict.initializer_classes import (
    Bilinear,
    Constant,
    LSTMBias,
    MSRAPrelu,
    Normal,
    One,
    Orthogonal,
    Uniform,
    Xavier,
    Zero,
)
from paramdict.initializer_rnn import FusedRNN
from paramdict.types import InitializerSpec

__all__ = ["paramdict_initializers"]


@hookimpl
def paramdict_initializers() -> Iterator[InitializerSpec]:
    """Yield the built-in initializers (names as in MXNet 1.9.1's registry)."""
    yield InitializerSpec("zero", Zero, ("zeros",))
    yield InitializerSpec("one", One, ("ones",))
    yield InitializerSpec("constant", Constant)
    yield InitializerSpec("uniform", Uniform)
    yield InitializerSpec("normal", Normal)
    yield InitializerSpec("orthogonal", Orthogonal)
    yield InitializerSpec("xavier", Xavier)
    yield InitializerSpec("msraprelu", MSRAPrelu)
    yield InitializerSpec("bilinear", Bilinear)
    yield InitializerSpec("lstmbias", LSTMBias)
    yield InitializerSpec("fusedrnn", FusedRNN)
