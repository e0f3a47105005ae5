"""Static weight schemes against the vectors of spec §1.5 (compared after normalising to sum 1)."""

import math

import pytest
import torch

from adaptive_weights.schemes import is_single_exit, list_schemes, scheme_weights

# spec §1.5, L = 9 (each is compared after both sides are normalised to sum 1)
SPEC_L9 = {
    "const": [1] * 9,
    "linear": [0.1409, 0.1937, 0.2465, 0.2994, 0.3522, 0.405, 0.4579, 0.5107, 0.5635],
    "half-end": [0.125] * 8 + [1],
    "quarter": [0.25] + [0.0357] * 7 + [0.5],
    "sieve": [0.4429, 0.1107, 0.2215, 0.1107, 0.3322, 0.1107, 0.2215, 0.1107, 1.661],
    "sieve-v2": [0.0833, 0.0833, 0.1667, 0.0833, 0.25, 0.0833, 0.1667, 0.0833, 1],
    "exp:2": [0.0117, 0.0234, 0.0469, 0.0938, 0.1875, 0.375, 0.75, 1.5, 3],
    "exp:0.5": [3, 1.5, 0.75, 0.375, 0.1875, 0.0938, 0.0469, 0.0234, 0.0117],
    "eann-sieve": [0, 0, 0, 0, 0.3322, 0.1107, 0.2215, 0.1107, 1.661],
    "optimal@-1": [0] * 8 + [1],
    "optimal@4": [0, 0, 0, 0, 1, 0, 0, 0, 0],
}
SPEC_L27 = {
    "const": [1] * 27,
    "linear": [0.25 + 0.75 * j / 26 for j in range(27)],
    "half-end": [1 / 26] * 26 + [1],
    "quarter": [0.25] + [0.01] * 25 + [0.5],
    "sieve": [2, 1, 4, 1, 2, 1, 3, 1, 2, 1, 5, 1, 2, 1, 3, 1, 2, 1, 4, 1, 2, 1, 3, 1, 2, 1, 49],
    "sieve-v2": [0.0192, 0.0385, 0.0192, 0.0577, 0.0192, 0.0385, 0.0769, 0.0192, 0.0385, 0.0192,
                 0.0577, 0.0385, 0.0192, 0.0962, 0.0192, 0.0385, 0.0577, 0.0192, 0.0385, 0.0192,
                 0.0769, 0.0385, 0.0192, 0.0577, 0.0192, 0.0385, 1],
    "exp:2": [4 * 2.0 ** (j - 26) for j in range(27)],
    "eann-sieve": [0] * 13 + [0.0491, 0.1472, 0.0491, 0.0981, 0.0491, 0.1962, 0.0491, 0.0981,
                              0.0491, 0.1472, 0.0491, 0.0981, 0.0491, 2.4037],
}


def _unit_sum(v):
    t = torch.tensor(v, dtype=torch.float64)
    return t / t.sum()


@pytest.mark.parametrize("table,k", [(SPEC_L9, 9), (SPEC_L27, 27)])
def test_scheme_shapes_match_spec(table, k):
    for name, expected in table.items():
        got = scheme_weights(name, k, normalize="sum")
        assert got.dtype == torch.float64 and got.shape == (k,)
        torch.testing.assert_close(got, _unit_sum(expected), atol=1e-4, rtol=0, msg=name)


def test_normalisations():
    w = scheme_weights("sieve", 9)  # default "last": the final exit weighs 1
    assert w[-1].item() == 1.0
    torch.testing.assert_close(w, torch.tensor(
        [0.2667, 0.0667, 0.1333, 0.0667, 0.2, 0.0667, 0.1333, 0.0667, 1], dtype=torch.float64),
        atol=1e-4, rtol=0)
    assert scheme_weights("sieve", 9, "sum").sum().item() == pytest.approx(1.0)
    assert scheme_weights("sieve", 9, "log").sum().item() == pytest.approx(math.log2(10))
    assert scheme_weights("sieve", 27, "log")[-1].item() == pytest.approx(2.4037, abs=1e-4)
    assert scheme_weights("sieve", 9, "none").tolist() == [4, 1, 2, 1, 3, 1, 2, 1, 15]
    # optimal@i before the end: "last" falls back to max = 1 instead of dividing by zero
    assert scheme_weights("optimal@2", 5).tolist() == [0, 0, 1, 0, 0]


def test_exp_lin_is_the_documented_definition():
    assert scheme_weights("exp-lin", 9).tolist() == [0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625,
                                                     0.0625, 0.0625, 1.0]
    # the band (1, 2) holds no exit when K = 2: the first exit takes the whole other half
    assert scheme_weights("exp-lin", 2).tolist() == [1.0, 1.0]
    w = scheme_weights("exp-lin", 27, "none")
    assert w[:-1].sum().item() == pytest.approx(1.0)  # the final exit holds half the total
    # bands (13.5,27), (6.75,13.5], (3.375,6.75], (1.6875,3.375], (0.84,1.6875]: 5 bands, 1/5 each
    assert w[0].item() == pytest.approx(0.2)
    assert w[1:3].sum().item() == pytest.approx(0.2)
    assert w[13:26].sum().item() == pytest.approx(0.2)


def test_single_output_and_slots():
    for name in ["const", "linear", "half-end", "sieve", "exp-lin", "quarter", "exp:3", "optimal@0"]:
        assert scheme_weights(name, 1).tolist() == [1.0]
    assert is_single_exit("optimal@-1") and not is_single_exit("sieve")
    assert "sieve" in list_schemes() and "optimal@i" in list_schemes()


@pytest.mark.parametrize("name,k,match", [
    ("bogus", 9, "unknown weight scheme 'bogus'.*allowed: .*sieve"),
    ("sieve", 0, "positive integer, got 0"),
    ("sieve", -3, "positive integer, got -3"),
    ("optimal@9", 9, "exit index 9 is out of range for 9 exits; allowed: -9 .. 8"),
    ("optimal@-10", 9, "out of range"),
    ("exp:0", 9, "base must be > 0"),
])
def test_bad_input(name, k, match):
    with pytest.raises(ValueError, match=match):
        scheme_weights(name, k)


def test_bad_normalisation():
    with pytest.raises(ValueError, match="unknown normalisation 'max'; allowed: last, sum, log, none"):
        scheme_weights("sieve", 9, normalize="max")
