"""The README's ``python -m paramarena.distributed.example`` runs (one rank, or each MPI rank)."""

from __future__ import annotations

import pytest

from paramarena.distributed import example


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert example.main([]) == 0
    out = capsys.readouterr().out
    from paramarena.distributed import get_communicator

    if get_communicator().rank == 0:
        assert "equal to a single-process initialize(seed=0): True" in out
        assert "mlp_fc1_weight (512, 256) float32: rows" in out
