"""crc32c_combine: the crc32c of a concatenation from its parts' crc32c (no data re-read)."""

from __future__ import annotations

import crc32c
import numpy as np
import pytest

from paramarena.distributed.crc import crc32c_combine, crc32c_concat


@pytest.mark.parametrize("seed", range(20))
def test_combined_equals_crc_of_concatenation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts = [rng.bytes(int(rng.integers(0, 3000))) for _ in range(int(rng.integers(1, 6)))]
    whole = crc32c.crc32c(b"".join(parts))
    assert crc32c_concat((crc32c.crc32c(p), len(p)) for p in parts) == whole


def test_edge_cases() -> None:
    a, b = b"\x00" * 1000, b"abc"
    assert crc32c_combine(crc32c.crc32c(a), crc32c.crc32c(b), 3) == crc32c.crc32c(a + b)
    assert crc32c_combine(crc32c.crc32c(a), 0, 0) == crc32c.crc32c(a)
    assert crc32c_concat([]) == crc32c.crc32c(b"") == 0
    big = 3 * 2**30 + 5  # lengths beyond 32 bits of bytes are fine (operators by squaring)
    assert 0 <= crc32c_combine(0x12345678, 0x9ABCDEF0, big) < 2**32
