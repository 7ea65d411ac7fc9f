"""``FusedRNN``: layout of the flat fused-RNN parameter, piece rules, dumps round trip."""

from __future__ import annotations

import numpy as np
import pytest

import paramarena.init as init
from paramarena.errors import InitializerError
from paramarena.init.rnn import fused_rnn_pieces


def test_importable_as_paramarena_init() -> None:
    import paramarena.init

    assert init.FusedRNN is paramarena.init.FusedRNN
    assert init.create is paramarena.init.create


def test_lstm_layout_and_forget_bias() -> None:
    # lstm, 1 layer, unidirectional, input 3, hidden 4: (3 + 4 + 2) * 4 * 4 = 144 elements
    arr = np.full(144, np.nan, dtype=np.float32)
    fused = init.FusedRNN(init.One(), num_hidden=4, num_layers=1, mode="lstm", forget_bias=2.0)
    fused(init.InitDesc("rnn_parameters", {"__init__": fused}), arr)
    np.testing.assert_array_equal(arr[:112], np.ones(112))  # 4 i2h (4,3) + 4 h2h (4,4) weights
    biases = arr[112:].reshape(2, 4, 4)  # (i2h, h2h) x gates (i, f, c, o) x hidden
    expected_gate = np.array([0.0, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(biases, np.broadcast_to(expected_gate[None, :, None], (2, 4, 4)))


def test_pieces_of_a_bidirectional_two_layer_gru_tile_the_array() -> None:
    # (7 + 5 + 2) * 5 * 3 * 2 + (2 - 1) * 3 * 5 * (5 + 10 + 2) * 2 = 930
    pieces = fused_rnn_pieces(930, num_hidden=5, num_layers=2, mode="gru", bidirectional=True)
    offset = 0
    for _name, start, shape in pieces:
        assert start == offset
        offset += int(np.prod(shape))
    assert offset == 930
    by_name = {name: shape for name, _, shape in pieces}
    assert by_name["l0_i2h_r_weight"] == (5, 7)
    assert by_name["r1_i2h_z_weight"] == (5, 10)
    assert by_name["r1_h2h_o_weight"] == (5, 5)
    assert by_name["l1_h2h_o_bias"] == (5,)
    assert len(pieces) == 2 * 2 * 3 * 2 * 2


def test_none_init_uses_the_global_initializer_and_bias_rules() -> None:
    arr = np.full(144, np.nan, dtype=np.float32)
    fused = init.FusedRNN(None, 4, 1, "lstm")
    init.Uniform(0.5)(init.InitDesc("rnn_parameters", {"__init__": fused}, seed=1), arr)
    weights, biases = arr[:112], arr[112:].reshape(2, 4, 4)
    assert np.all(np.abs(weights) <= 0.5)
    assert len(np.unique(weights)) > 100
    np.testing.assert_array_equal(biases[:, 1], np.ones((2, 4)))
    np.testing.assert_array_equal(biases[:, [0, 2, 3]], np.zeros((2, 3, 4)))


def test_random_pieces_depend_on_the_parameter_name() -> None:
    fused = init.FusedRNN("xavier", 4, 1, "rnn_tanh")
    size = (3 + 4 + 2) * 4
    a = np.zeros(size, np.float32)
    b = np.zeros(size, np.float32)
    c = np.zeros(size, np.float32)
    fused(init.InitDesc("rnn0_parameters", {"__init__": fused}, seed=4), a)
    fused(init.InitDesc("rnn0_parameters", {"__init__": fused}, seed=4), b)
    fused(init.InitDesc("rnn1_parameters", {"__init__": fused}, seed=4), c)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:28], c[:28])


def test_dumps_round_trips_with_an_inner_initializer() -> None:
    fused = init.FusedRNN(init.Xavier(), 4, 2, "gru", bidirectional=True, forget_bias=0.5)
    text = fused.dumps()
    assert text.startswith('["fusedrnn", {"init": "[\\"xavier\\"')
    again = init.create(text)
    assert again == fused
    assert init.FusedRNN(None, 4, 1, "lstm").dumps() == (
        '["fusedrnn", {"init": null, "num_hidden": 4, "num_layers": 1, "mode": "lstm", '
        '"bidirectional": false, "forget_bias": 1.0}]'
    )


def test_errors() -> None:
    with pytest.raises(InitializerError, match="mode must be one of"):
        init.FusedRNN(None, 4, 1, "transformer")
    fused = init.FusedRNN(init.One(), 4, 1, "lstm")
    with pytest.raises(InitializerError, match="cannot have 100 elements"):
        fused(init.InitDesc("p", {"__init__": fused}), np.zeros(100, np.float32))
    with pytest.raises(InitializerError, match="1-D float parameter; p has shape"):
        fused(init.InitDesc("p", {"__init__": fused}), np.zeros((12, 12), np.float32))
    lonely = init.FusedRNN(None, 4, 1, "lstm")
    with pytest.raises(InitializerError, match="pass init="):
        lonely(init.InitDesc("p", {"__init__": lonely}), np.zeros(144, np.float32))
