"""SPMD job run by tests/distributed/test_mpirun.py under ``mpirun -n N``.

python mpi_job.py run REF SAVE [PATH...] every rank loads each PATH, checks it equals the
                                      single-process checkpoint REF, then saves its rows of
                                      build() (seed 7) to SAVE
python mpi_job.py kill PATH           save seed 1, then a save during which the last rank
                                      SIGKILLs itself while writing its chunks
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dist_models import SHARD_OPTIONS, build, same

import paramarena as pa
from paramarena.distributed import checkpoint as dckpt
from paramarena.distributed import shard


def main(argv: list[str]) -> int:
    action, paths = argv[0], argv[1:]
    if action == "run":
        ref = pa.storage.load(paths[0])
        for path in paths[2:]:
            sd = shard(build(), **SHARD_OPTIONS)
            sd.load(path)
            gathered = sd.gather()
            bad = [n for n in ref if not same(gathered[n], ref[n])]
            if bad:
                print(f"rank {sd.comm.rank}: {path}: differs at {bad}", flush=True)
                return 1
        sd = shard(build(), **SHARD_OPTIONS)
        sd.initialize(pa.init.Xavier(), seed=7)
        sd.save(paths[1])
        return 0
    if action == "kill":
        sd = shard(build(), **SHARD_OPTIONS)
        sd.initialize(pa.init.Xavier(), seed=1)
        sd.save(paths[0])
        if sd.comm.rank == sd.comm.size - 1:
            real = dckpt._write_array_part

            def die(*args: object, **kwargs: object) -> object:
                result = real(*args, **kwargs)  # type: ignore[arg-type]
                os.kill(os.getpid(), signal.SIGKILL)
                return result

            dckpt._write_array_part = die  # type: ignore[assignment]
        sd.initialize(pa.init.Xavier(), seed=2, force_reinit=True)
        sd.save(paths[0])
        return 0
    raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
