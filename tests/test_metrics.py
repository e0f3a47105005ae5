"""Metrics against hand-computed values (spec §5.3-§5.4)."""

import math
from fractions import Fraction

import pytest
from scipy.stats import binomtest

from adaptive_weights.metrics import (
    WinRate,
    binomial_pvalue,
    error_at_depth,
    error_cost_auc,
    hoeffding_pvalue,
    milestone_indices,
    per_exit_error,
    relative_increase,
    win_rate,
    win_rate_table,
)


# --- milestones -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("num_units", "expected"),
    [  # spec §5.4 and the §4.3 table
        (3, [0, 1, 1, 2]),
        (9, [1, 4, 6, 8]),
        (15, [3, 7, 10, 14]),
        (21, [4, 10, 15, 20]),
        (27, [6, 13, 19, 26]),
        (39, [9, 19, 28, 38]),
        (51, [12, 25, 37, 50]),
        (75, [18, 37, 55, 74]),
    ],
)
def test_milestone_indices_match_spec(num_units, expected):
    assert milestone_indices(num_units) == expected


def test_milestone_indices_round_half_up_not_to_even():
    # q*L = 2.5 -> 3 -> idx 2 (Python's round would give 2 -> idx 1); 0.5 -> 1 -> idx 0.
    assert milestone_indices(10, [0.25]) == [2]
    assert milestone_indices(2, [0.25]) == [0]
    # 1/3 of 9 is exactly 3 -> idx 2, with a Fraction or the float 1/3 read as written
    assert milestone_indices(9, [Fraction(1, 3)]) == [2]
    # a tiny q on a one-unit net clamps to unit 0
    assert milestone_indices(1) == [0, 0, 0, 0]


@pytest.mark.parametrize(("num_units", "q"), [(0, 0.5), (9, 0.0), (9, 1.5), (9, "a"), (2.5, 0.5)])
def test_milestone_indices_rejects_bad_input(num_units, q):
    with pytest.raises(ValueError):
        milestone_indices(num_units, [q])


def test_per_exit_error():
    err = per_exit_error([[0, 1, 2, 3], [0, 1, 1, 1]], [0, 1, 2, 2])
    assert err.tolist() == [0.25, 0.5]


# --- interpolation and relative increase ----------------------------------------------------------
def test_error_at_depth_interpolates_between_neighbouring_exits():
    # n = 25, s = 3: exits at 17 and 20, milestone 18 -> 2/3 * e17 + 1/3 * e20
    assert error_at_depth([14, 17, 20], [0.4, 0.30, 0.24], 18) == pytest.approx(0.28, abs=1e-12)
    assert error_at_depth([14, 17, 20], [0.4, 0.30, 0.24], 17) == 0.30
    assert error_at_depth([14, 17, 20], [0.4, 0.30, 0.24], 14) == 0.4


@pytest.mark.parametrize("unit", [13, 21])
def test_error_at_depth_refuses_to_extrapolate(unit):
    with pytest.raises(ValueError, match="outside"):
        error_at_depth([14, 17, 20], [0.4, 0.30, 0.24], unit)


def test_error_at_depth_rejects_unsorted_exits():
    with pytest.raises(ValueError, match="strictly increasing"):
        error_at_depth([3, 1], [0.1, 0.2], 2)


# L = 9, period 2: exits at units 0, 2, 4, 6, 8; milestones 1, 4, 6, 8 (unit 1 has no exit).
ANN_UNITS = [0, 2, 4, 6, 8]
ANN_ERRORS = [0.60, 0.40, 0.30, 0.25, 0.20]
# e_ANN at milestones: (0.6 + 0.4)/2 = 0.5, 0.30, 0.25, 0.20
EXPECTED_REL = {
    0.25: (0.5 - 0.4) / 0.4,
    0.5: (0.30 - 0.25) / 0.25,
    0.75: (0.25 - 0.2) / 0.2,
    1.0: (0.2 - 0.16) / 0.16,
}


def test_relative_increase_with_ann_interpolation():
    opt = {1: 0.40, 4: 0.25, 6: 0.20, 8: 0.16}
    rel = relative_increase(ANN_UNITS, ANN_ERRORS, opt, num_units=9)
    assert list(rel) == [0.25, 0.5, 0.75, 1.0]
    for q, v in EXPECTED_REL.items():
        assert rel[q] == pytest.approx(v, abs=1e-12)
    assert rel[0.25] == pytest.approx(0.25, abs=1e-12)


def test_relative_increase_interpolates_opt_between_trained_depths():
    opt = {0: 0.50, 2: 0.30, 4: 0.25, 6: 0.20, 8: 0.16}  # unit 1 -> 0.40
    rel = relative_increase(ANN_UNITS, ANN_ERRORS, opt, num_units=9)
    assert rel[0.25] == pytest.approx(0.25, abs=1e-12)


def test_relative_increase_needs_opt_at_every_milestone():
    with pytest.raises(ValueError, match=r"q=0.25 \(unit 1\)"):
        relative_increase(ANN_UNITS, ANN_ERRORS, {4: 0.25, 6: 0.2, 8: 0.16}, num_units=9)
    with pytest.raises(ValueError, match="> 0"):
        relative_increase(ANN_UNITS, ANN_ERRORS, {1: 0.0, 4: 0.25, 6: 0.2, 8: 0.16}, num_units=9)


# --- area under the error-cost curve --------------------------------------------------------------
def test_error_cost_auc_step_and_linear():
    costs, errors = [1.0, 2.0, 4.0], [0.5, 0.3, 0.2]
    # step: 0.5 * 1 + 0.3 * 2 = 1.1 over a range of 3
    assert error_cost_auc(costs, errors, normalize=False) == pytest.approx(1.1)
    assert error_cost_auc(costs, errors) == pytest.approx(1.1 / 3)
    # linear: (0.5 + 0.3)/2 * 1 + (0.3 + 0.2)/2 * 2 = 0.9
    assert error_cost_auc(costs, errors, normalize=False, interpolation="linear") == pytest.approx(0.9)
    assert error_cost_auc(costs, errors, interpolation="linear") == pytest.approx(0.3)


def test_error_cost_auc_cost_range():
    costs, errors = [1.0, 2.0, 4.0], [0.5, 0.3, 0.2]
    # step over [1.5, 5]: 0.5*0.5 + 0.3*2 + 0.2*1 = 1.05 (the last error holds past the last exit)
    assert error_cost_auc(costs, errors, cost_range=(1.5, 5.0), normalize=False) == pytest.approx(1.05)
    assert error_cost_auc(costs, errors, cost_range=(1.5, 5.0)) == pytest.approx(0.3)
    # linear over [1.5, 3]: y = 0.4, 0.3, 0.25 -> 0.7/2*0.5 + 0.55/2*1 = 0.45
    assert error_cost_auc(
        costs, errors, cost_range=(1.5, 3.0), normalize=False, interpolation="linear"
    ) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="before the first"):
        error_cost_auc(costs, errors, cost_range=(0.5, 3.0))
    with pytest.raises(ValueError, match="linear"):
        error_cost_auc(costs, errors, cost_range=(1.0, 5.0), interpolation="linear")
    with pytest.raises(ValueError, match="empty"):
        error_cost_auc([1.0], [0.5])
    with pytest.raises(ValueError, match="interpolation"):
        error_cost_auc(costs, errors, interpolation="spline")


# --- p-values -------------------------------------------------------------------------------------
def test_hoeffding_pvalue_hand_computed():
    assert hoeffding_pvalue(8, 10) == pytest.approx(math.exp(-1.8), rel=1e-12)  # exp(-2*10*0.09)
    assert hoeffding_pvalue(8, 10) == pytest.approx(0.16530, abs=5e-6)
    assert hoeffding_pvalue(10, 10) == pytest.approx(math.exp(-5.0), rel=1e-12)
    assert hoeffding_pvalue(5, 10) == 1.0  # k/n = 1/2: no evidence, one-sided
    assert hoeffding_pvalue(2, 10) == 1.0
    assert hoeffding_pvalue(0, 0) == 1.0


def test_binomial_pvalue_hand_computed():
    assert binomial_pvalue(8, 10) == 56 / 1024  # (45 + 10 + 1) / 2^10 = 0.0546875
    assert binomial_pvalue(10, 10) == 1 / 1024
    assert binomial_pvalue(5, 10) == 638 / 1024  # (252 + 210 + 120 + 45 + 10 + 1) / 2^10
    assert binomial_pvalue(0, 10) == 1.0
    assert binomial_pvalue(0, 0) == 1.0


def test_binomial_pvalue_matches_scipy_and_is_below_hoeffding():
    for n in (1, 7, 20):
        for k in range(n + 1):
            exact = binomtest(k, n, 0.5, alternative="greater").pvalue
            assert binomial_pvalue(k, n) == pytest.approx(exact, rel=1e-12)
            assert binomial_pvalue(k, n) <= hoeffding_pvalue(k, n) + 1e-15


@pytest.mark.parametrize(("wins", "n"), [(11, 10), (-1, 10), (1, -1), (1.5, 10), (True, 2)])
def test_pvalues_reject_bad_counts(wins, n):
    with pytest.raises(ValueError):
        hoeffding_pvalue(wins, n)
    with pytest.raises(ValueError):
        binomial_pvalue(wins, n)


# --- win rates ------------------------------------------------------------------------------------
def test_win_rate_drops_ties():
    wr = win_rate([0.1, 0.2, 0.3, 0.4, 0.5], [0.2, 0.2, 0.4, 0.3, 0.6])
    # diffs: -0.1 win, 0 tie, -0.1 win, +0.1 loss, -0.1 win
    assert (wr.wins, wr.ties, wr.n, wr.rate) == (3, 1, 4, 0.75)
    assert wr.hoeffding_p == pytest.approx(math.exp(-0.5))  # exp(-2*4*(3/4-1/2)^2)
    assert wr.binomial_p == 5 / 16  # (C(4,3) + C(4,4)) / 2^4


def test_win_rate_tie_tolerance_and_no_decisive_setting():
    wr = win_rate([0.1000, 0.2], [0.1005, 0.3], tie_tol=0.001)
    assert (wr.wins, wr.ties, wr.n) == (1, 1, 1)
    wr = win_rate([0.1, 0.2], [0.1, 0.2])
    assert (wr.wins, wr.ties, wr.n, wr.hoeffding_p, wr.binomial_p) == (0, 2, 0, 1.0, 1.0)
    assert math.isnan(wr.rate)
    with pytest.raises(ValueError):
        win_rate([0.1], [0.1, 0.2])
    with pytest.raises(ValueError):
        win_rate([float("nan")], [0.1])


def _results():
    return {
        "eg": {
            ("c10", 0): {0.25: 0.30, 1.0: 0.10},
            ("c10", 1): {0.25: 0.32, 1.0: 0.12},
            ("c100", 0): {0.25: 0.50, 1.0: 0.30},
        },
        "sieve": {
            ("c10", 0): {0.25: 0.35, 1.0: 0.09},
            ("c10", 1): {0.25: 0.33, 1.0: 0.12},
            ("c100", 0): {0.25: 0.49, 1.0: 0.31},
        },
    }


def test_win_rate_table_over_matched_settings():
    table = win_rate_table(_results(), "eg", "sieve", milestones=[0.25, 1.0])
    # q=1/4: eg wins c10/0, c10/1, loses c100/0 -> 2 of 3
    assert table[0.25] == WinRate(2, 0, 3, 2 / 3, math.exp(-2 * 3 * (2 / 3 - 0.5) ** 2), 4 / 8)
    # q=1: eg loses c10/0, ties c10/1, wins c100/0 -> 1 of 2
    assert table[1.0] == WinRate(1, 1, 2, 0.5, 1.0, 3 / 4)


def test_win_rate_table_errors():
    results = _results()
    results["eg"][("svhn", 0)] = {0.25: 0.1, 1.0: 0.05}
    with pytest.raises(ValueError, match="svhn"):
        win_rate_table(results, "eg", "sieve", [0.25])
    table = win_rate_table(results, "eg", "sieve", [0.25], strict=False)
    assert table[0.25].n == 3
    with pytest.raises(ValueError, match="no milestone 0.5"):
        win_rate_table(results, "eg", "sieve", [0.5], strict=False)
    with pytest.raises(ValueError, match="'rwm'"):
        win_rate_table(results, "rwm", "sieve", [0.25])
