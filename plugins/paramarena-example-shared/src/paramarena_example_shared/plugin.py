"""Hook implementations of paramarena-example-shared (the module named by the entry point).

Two ways to publish a shared dict are shown:

1. at import, :func:`paramarena.params.registry.register` puts :data:`ENCODER` in the registry (the
   registry holds it weakly; this module keeps it alive);
2. the ``paramarena_resolve_shared`` hook answers for names the registry does not hold, which
   also covers the case where this module was not imported yet: ``registry.resolve`` asks the
   plugin manager, which loads the entry point, which imports this module.
"""

from __future__ import annotations

from paramarena.hooks.specs import hookimpl
from paramarena.params.parameter_dict import ParameterDict
from paramarena.params.registry import names, register

__all__ = ["ENCODER", "NAMESPACE", "build_encoder", "paramarena_resolve_shared"]

#: The namespace of this plugin (its entry-point name).
NAMESPACE = "exampleshared"
#: Registry name of the shared encoder.
ENCODER_NAME = f"{NAMESPACE}:encoder"


def build_encoder() -> ParameterDict:
    """Return the encoder's parameters: ``enc_weight`` (8, 4) and ``enc_bias`` (8,)."""
    encoder = ParameterDict("enc_")
    encoder.get("weight", shape=(8, 4))
    encoder.get("bias", shape=(8,), init="zeros")
    return encoder


#: The shared dict (kept alive by this module).
ENCODER = build_encoder()

if ENCODER_NAME not in names():
    register(ENCODER_NAME, ENCODER)


@hookimpl
def paramarena_resolve_shared(name: str) -> ParameterDict | None:
    """Return :data:`ENCODER` for ``"exampleshared:encoder"``; ``None`` for anything else."""
    if name == ENCODER_NAME:
        return ENCODER
    return None
