"""User code shares parameters with a dict published by the exampleshared plugin."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import paramarena as pa
from paramarena.errors import RegistryError


def test_shared_by_name_gives_the_same_parameter_objects() -> None:
    from paramarena_example_shared.plugin import ENCODER

    user = pa.ParameterDict("enc_", shared="exampleshared:encoder")
    weight = user.get("weight")
    bias = user.get("bias")
    assert weight is ENCODER["enc_weight"]
    assert bias is ENCODER["enc_bias"]
    user.initialize(pa.init.Normal(1.0), seed=3, force_reinit=True)
    np.testing.assert_array_equal(ENCODER["enc_weight"].data(), weight.data())
    weight.set_data(np.ones((8, 4), np.float32))
    np.testing.assert_array_equal(ENCODER["enc_weight"].data(), np.ones((8, 4), np.float32))


def test_new_names_stay_local() -> None:
    from paramarena_example_shared.plugin import ENCODER

    user = pa.ParameterDict("enc_", shared="exampleshared:encoder")
    extra = user.get("gamma", shape=(8,))
    assert "enc_gamma" in user
    assert "enc_gamma" not in ENCODER
    assert extra is user["enc_gamma"]


def test_resolved_through_hook_in_a_fresh_process() -> None:
    # Nothing imports the plugin: registry.resolve asks the plugin manager, which loads the
    # entry point; the dict is found by the registry or the paramarena_resolve_shared hook.
    code = (
        "import sys, paramarena as pa\n"
        "assert 'paramarena_example_shared' not in sys.modules\n"
        "u = pa.ParameterDict('enc_', shared='exampleshared:encoder')\n"
        "from paramarena_example_shared.plugin import ENCODER\n"
        "assert u.get('weight') is ENCODER['enc_weight']\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_hook_answers_only_its_names() -> None:
    from paramarena_example_shared.plugin import paramarena_resolve_shared

    assert paramarena_resolve_shared("exampleshared:decoder") is None
    with pytest.raises(RegistryError, match="exampleshared:decoder"):
        pa.ParameterDict("dec_", shared="exampleshared:decoder")


def test_autoload_disabled_means_unknown() -> None:
    code = "import paramarena as pa\npa.ParameterDict('enc_', shared='exampleshared:encoder')\n"
    env = {"PARAMARENA_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    assert out.returncode != 0
    assert "exampleshared:encoder" in out.stderr
