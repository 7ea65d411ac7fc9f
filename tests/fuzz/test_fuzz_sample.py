"""A seeded sample of the storage fuzz corpus: every reader gives clean errors, fast.

The full corpus (>= 10,000 inputs per format) runs in the non-default nox session ``fuzz``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fuzz_corpus import FORMATS
from fuzz_harness import run_campaign

#: Inputs per format in the default run (about 60 s for all formats together at most).
SAMPLE = 80


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fmt", FORMATS)
def test_seeded_sample_gives_only_clean_errors(fmt: str, tmp_path: Path) -> None:
    campaign = run_campaign(fmt, SAMPLE, seed=20261206, timeout=5.0, cli_every=8, workdir=tmp_path)
    assert campaign.cases == SAMPLE
    assert campaign.clean_errors > 0  # the mutations do reach the readers' checks
    assert campaign.failures == 0, json.dumps(campaign.summary(), indent=1)


def test_mutations_are_reproducible(tmp_path: Path) -> None:
    from fuzz_corpus import build_seeds, make_case

    seeds = build_seeds(tmp_path / "seeds")
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    for number in range(5):
        a = make_case("npz", seeds, 3, number, first).read_bytes()
        b = make_case("npz", seeds, 3, number, second).read_bytes()
        assert a == b


def test_json_mutations_never_alter_the_shared_values() -> None:
    import copy
    import random

    from fuzz_mutate import INTERESTING_VALUES, mutate_json

    before = copy.deepcopy(INTERESTING_VALUES)
    rng = random.Random(1)
    doc: object = {"a": [1, {"b": 2}], "c": "x"}
    for _ in range(2000):
        doc = mutate_json(doc if isinstance(doc, (dict, list)) else {"a": doc}, rng)
    assert before == INTERESTING_VALUES
