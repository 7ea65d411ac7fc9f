"""A runnable tour of paramarena across processes (replicated and sharded dicts).

Run the same program on every rank (it also runs as a plain ``python -m ...``, on one rank)::

    mpirun -n 2 python -m paramarena.distributed.example /tmp/example-ckpt.zarr

1. Replicated (data parallel): each rank initializes with its own seed, ``broadcast`` makes
   every rank hold rank 0's values, ``allreduce_grads`` averages the gradients (one Allreduce
   per gradient arena).
2. Sharded: ``shard`` gives each rank its rows of the large parameters; ``initialize(seed=0)``
   fills only those rows, with the values a single process would compute; ``save`` writes one
   zarr checkpoint (every rank its chunks, rank 0 commits); ``load`` reads each rank's rows.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np

import paramarena as pa
from paramarena.distributed import get_communicator, shard

__all__ = ["main"]


def _model() -> pa.ParameterDict:
    net = pa.ParameterDict("mlp_")
    net.get("fc1_weight", shape=(512, 256))
    net.get("fc1_bias", shape=(512,), init="zeros")
    net.get("fc2_weight", shape=(10, 512))
    net.get("fc2_bias", shape=(10,), init="zeros")
    return net


def main(argv: list[str] | None = None) -> int:
    """Run the tour; the first argument is the checkpoint path (default: a temporary one)."""
    args = sys.argv[1:] if argv is None else argv
    comm = get_communicator()
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    say(f"{comm.size} rank(s), communicator {comm.name!r}")

    # 1. replicated
    net = _model()
    net.initialize(pa.init.Xavier(), seed=100 + comm.rank)
    net.broadcast(root=0)
    for p in net.values():
        p.grad()[...] = comm.rank + 1
    net.allreduce_grads("mean")
    grad = float(net["mlp_fc1_weight"].grad()[0, 0])
    say(f"replicated: every rank holds rank 0's values; mean gradient {grad}")

    # 2. sharded
    sharded = shard(_model(), min_bytes=64 * 1024)
    say(sharded.layout)
    sharded.initialize(pa.init.Xavier(), seed=0)
    if args:
        path = args[0]
    else:
        made = tempfile.mkdtemp(prefix="paramarena-example-") if comm.rank == 0 else None
        path = comm.broadcast_bytes(made.encode() if made else None, 0).decode() + "/ckpt.zarr"
    sharded.save(path)
    again = shard(_model(), min_bytes=64 * 1024)
    again.load(path)
    ok = all(np.array_equal(again[n].data(), sharded[n].data()) for n in sharded)
    if comm.rank == 0:
        reference = _model()
        reference.initialize(pa.init.Xavier(), seed=0)
        loaded = pa.storage.load(path)
        assert isinstance(loaded, dict)
        ok = ok and all(np.array_equal(loaded[n], p.data()) for n, p in reference.items())
        say(f"sharded checkpoint {path}: equal to a single-process initialize(seed=0): {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
