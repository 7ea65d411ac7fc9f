"""A small dict with every kind of parameter the sharding code treats differently."""

from __future__ import annotations

import numpy as np

import paramarena as pa

#: shard nearly everything, several chunks per rank
SHARD_OPTIONS = {"min_bytes": 256, "chunk_bytes": 1024}


def build(prefix: str = "net_") -> pa.ParameterDict:
    """Full shapes; not initialized."""
    d = pa.ParameterDict(prefix)
    d.get("conv_weight", shape=(37, 3, 3, 3))  # global init (Xavier), 4-D, uneven rows
    d.get("fc_weight", shape=(101, 29), init=pa.init.Normal(0.5))
    d.get("fc_bias", shape=(101,), init="zeros")
    d.get("half_weight", shape=(50, 9), dtype="float16", init=pa.init.Uniform(2.0))
    d.get("bf_weight", shape=(33, 8), dtype="bfloat16", init=pa.init.MSRAPrelu())
    d.get("orth_weight", shape=(24, 16), init=pa.init.Orthogonal())  # needs the whole array
    d.get("const_weight", shape=(20, 30), init=pa.init.Constant(np.arange(30.0)))
    d.get("gamma", shape=(4,), init="ones")  # small: replicated
    d.get("f64_weight", shape=(7, 41), dtype="float64", init=pa.init.Uniform(1.0))
    d.get_constant("table", np.arange(12.0).reshape(3, 4))
    return d


def reference(seed: int = 7, prefix: str = "net_") -> dict[str, np.ndarray]:
    """The single-process values of ``build()`` initialized with Xavier and ``seed``."""
    d = build(prefix)
    d.initialize(pa.init.Xavier(), seed=seed)
    return {name: np.array(p.data()) for name, p in d.items()}


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical arrays of the same dtype and shape."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
