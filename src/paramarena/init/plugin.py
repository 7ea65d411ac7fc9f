"""Built-in plugin: MXNet's initializers, registered by name through the plugin hook.

``paramarena.init.create("xavier")`` (or ``'["xavier", {...}]'``) finds them here. Third-party
plugins add their own initializers the same way (see ``docs/initializers.md``).
"""

from __future__ import annotations

from collections.abc import Iterator

from paramarena.hooks.records import InitializerSpec
from paramarena.hooks.specs import hookimpl
from paramarena.init.classes import (
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
from paramarena.init.rnn import FusedRNN

__all__ = ["paramarena_initializers"]


@hookimpl
def paramarena_initializers() -> Iterator[InitializerSpec]:
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
