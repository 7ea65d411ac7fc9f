"""``arg:w`` and ``w`` in one source name the same parameter: loading refuses to pick one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import paramarena as pa
from paramarena import storage
from paramarena.errors import DuplicateNameError


def _dict() -> pa.ParameterDict:
    d = pa.ParameterDict()
    d.get("w", shape=(2,))
    d.initialize()
    return d


@pytest.mark.parametrize("suffix", [".npz", ".params"])
def test_file_with_arg_w_and_w_is_refused_naming_both(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    storage.save(path, {"arg:w": np.ones(2, np.float32), "w": np.zeros(2, np.float32)})
    d = _dict()
    with pytest.raises(DuplicateNameError, match=r"'arg:w' and 'w'"):
        d.load(path)


def test_load_dict_with_arg_and_aux_prefixes_of_one_name_is_refused() -> None:
    d = _dict()
    arrays = {"arg:w": np.ones(2, np.float32), "aux:w": np.zeros(2, np.float32)}
    with pytest.raises(DuplicateNameError, match=r"'arg:w' and 'aux:w'"):
        d.load_dict(arrays)


def test_a_name_repeated_in_pairs_still_lets_the_later_one_win() -> None:
    d = _dict()
    d.load_dict([("w", np.ones(2, np.float32)), ("w", np.full(2, 5.0, np.float32))])
    np.testing.assert_array_equal(d.get("w").data(), np.full(2, 5.0, np.float32))


def test_arg_prefix_alone_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    storage.save(path, {"arg:w": np.full(2, 3.0, np.float32)})
    d = _dict()
    d.load(path)
    np.testing.assert_array_equal(d.get("w").data(), np.full(2, 3.0, np.float32))
