"""EANN curves (spec §5.5) on a hand-built chain of three members, every point computed by hand."""

import json
import math

import pytest

from adaptive_weights.eann import (
    CostInflation,
    Member,
    StepCurve,
    cost_inflation,
    eann_curve,
    inflation_ratios,
    members_from_run_dirs,
    opt_plus_curve,
)

# Full costs 2, 4, 8 (a doubling chain). Validation decides, test errors are reported.
A = Member("A", [1, 2], [0.50, 0.40], [0.52, 0.42])
B = Member("B", [1, 2, 3, 4], [0.60, 0.45, 0.35, 0.30], [0.61, 0.44, 0.36, 0.31])
C = Member("C", [2, 4, 6, 8], [0.50, 0.32, 0.25, 0.20], [0.50, 0.33, 0.26, 0.21])


def _points(curve: StepCurve):
    return list(zip(curve.costs, curve.errors, curve.sources, strict=True))


def test_sequential_curve_by_hand():
    # A: exits at 1, 2 (no predecessor: both output).
    # B: exits at 2+1..2+4 = 3, 4, 5, 6; val 0.60, 0.45 do not beat A's final 0.40 -> keep A1;
    #    0.35 and 0.30 do -> B2 at 5, B3 at 6.
    # C: exits at 6+2..6+8 = 8, 10, 12, 14; val 0.50, 0.32 do not beat B's final 0.30; 0.25, 0.20 do.
    assert _points(eann_curve([A, B, C])) == [
        (1.0, 0.52, ("A", 0)),
        (2.0, 0.42, ("A", 1)),
        (5.0, 0.36, ("B", 2)),
        (6.0, 0.31, ("B", 3)),
        (12.0, 0.26, ("C", 2)),
        (14.0, 0.21, ("C", 3)),
    ]


def test_step_curve_lookup():
    curve = eann_curve([A, B, C])
    assert curve.error_at(1.0) == 0.52
    assert curve.error_at(4.99) == 0.42  # B's first two exits are not used
    assert curve.error_at(5.0) == 0.36
    assert curve.error_at(13.0) == 0.26
    assert curve.error_at(100.0) == 0.21
    with pytest.raises(ValueError, match="no output yet"):
        curve.error_at(0.5)
    assert curve.cost_to_reach(0.40) == 5.0
    assert curve.cost_to_reach(0.10) == math.inf


def test_running_exit_that_stops_beating_the_previous_final_gives_way_back():
    # B's exit 1 (val 0.38) beats A's final (0.40), exit 2 (val 0.45) does not: back to A's final.
    b = Member("B", [1, 2, 3, 4], [0.60, 0.38, 0.45, 0.30], [0.61, 0.39, 0.46, 0.31])
    assert _points(eann_curve([A, b])) == [
        (1.0, 0.52, ("A", 0)),
        (2.0, 0.42, ("A", 1)),
        (4.0, 0.39, ("B", 1)),
        (5.0, 0.42, ("A", 1)),
        (6.0, 0.31, ("B", 3)),
    ]


def test_validation_ties_keep_the_finished_answer():
    b = Member("B", [1, 2], [0.40, 0.39], [0.30, 0.38])  # exit 0 ties A's final on val: not output
    assert _points(eann_curve([A, b])) == [
        (1.0, 0.52, ("A", 0)),
        (2.0, 0.42, ("A", 1)),
        (4.0, 0.38, ("B", 1)),
    ]


def test_a_worse_member_does_not_replace_a_better_finished_answer():
    # B finishes worse than A on val (0.45 > 0.40); while C runs, A's final stays the reference.
    b = Member("B", [1, 2], [0.60, 0.45], [0.60, 0.45])
    c = Member("C", [2, 4], [0.42, 0.35], [0.43, 0.36])
    assert _points(eann_curve([A, b, c])) == [
        (1.0, 0.52, ("A", 0)),
        (2.0, 0.42, ("A", 1)),
        (8.0, 0.36, ("C", 1)),  # C's exit 0 (0.42) beats B's final but not A's
    ]


def test_parallel_curve_two_workers_by_hand():
    # Workers free at 0, 0: A on w0 (0..2), B on w1 (0..4), C on w0 from 2 (exits at 4, 6, 8, 10).
    # t=1: A0 .50 vs B0 .60 -> A0; t=2: A1 final .40 vs B1 .45 -> A1; t=3: B2 .35; t=4: B3 final
    # .30 (C0 .50 loses); t=6: C1 .32 loses; t=8: C2; t=10: C3.
    assert _points(eann_curve([A, B, C], workers=2)) == [
        (1.0, 0.52, ("A", 0)),
        (2.0, 0.42, ("A", 1)),
        (3.0, 0.36, ("B", 2)),
        (4.0, 0.31, ("B", 3)),
        (8.0, 0.26, ("C", 2)),
        (10.0, 0.21, ("C", 3)),
    ]


def test_parallel_curve_three_workers_and_one_worker_is_sequential():
    assert eann_curve([A, B, C], workers=3).costs == (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
    assert eann_curve([A, B, C], workers=1) == eann_curve([A, B, C])


def test_opt_plus_is_the_running_minimum_over_cost():
    points = [(4, 0.30), (1, 0.50), (3, 0.45), (2, 0.40), (8, 0.22), (16, 0.19)]
    curve = opt_plus_curve(points, names=["o4", "o1", "o3", "o2", "o8", "o16"])
    assert _points(curve) == [
        (1.0, 0.50, ("o1", 0)),
        (2.0, 0.40, ("o2", 0)),
        (4.0, 0.30, ("o4", 0)),  # (3, 0.45) is dominated by (2, 0.40)
        (8.0, 0.22, ("o8", 0)),
        (16.0, 0.19, ("o16", 0)),
    ]
    assert opt_plus_curve([(1, 0.5), (1, 0.4)]).errors == (0.4,)  # equal cost: the better one
    assert opt_plus_curve([(1, 0.5)]).sources == (("opt[0]", 0),)


def test_cost_inflation_by_hand():
    eann = eann_curve([A, B, C])  # errors .52 .42 .36 .31 .26 .21 at 1 2 5 6 12 14
    opt = opt_plus_curve([(1, 0.50), (2, 0.40), (4, 0.30), (8, 0.22)])
    # B=1 (e .50): reached at 2 -> 2;  B=2 (.40): at 5 -> 2.5;  B=4 (.30): at 12 -> 3;
    # B=8 (.22): at 14 -> 1.75.
    assert inflation_ratios(eann, opt) == [(1.0, 2.0), (2.0, 2.5), (4.0, 3.0), (8.0, 1.75)]
    assert cost_inflation(eann, opt) == CostInflation(worst=3.0, average=9.25 / 4)
    # An error the EANN never reaches makes the factor infinite.
    opt2 = opt_plus_curve([(1, 0.50), (16, 0.19)])
    assert cost_inflation(eann, opt2) == CostInflation(math.inf, math.inf)


def test_cost_inflation_counts_from_where_the_curve_stays_good_enough():
    """A later output can be worse on the reported split (outputs are chosen on validation): the
    factor counts from the cost after which the EANN stays at or below OPT+'s error, not from where
    it first dips there (at budget 5 this EANN is at 0.42, worse than OPT+'s 0.40 at budget 4)."""
    b = Member("B", [1, 2, 3, 4], [0.60, 0.38, 0.45, 0.30], [0.61, 0.39, 0.46, 0.31])
    eann = eann_curve([A, b])  # errors .52 .42 .39 .42 .31 at 1 2 4 5 6
    assert eann.cost_to_reach(0.40) == 6.0 and eann.cost_to_reach(0.45) == 2.0 and eann.cost_to_reach(0.6) == 1.0
    assert cost_inflation(eann, opt_plus_curve([(4, 0.40)])) == CostInflation(1.5, 1.5)
    assert StepCurve((1.0, 2.0), (0.3, 0.5), (("a", 0), ("b", 0))).cost_to_reach(0.4) == math.inf  # ends above


@pytest.mark.parametrize(
    "kwargs",
    [
        {"exit_costs": [1, 1], "val_errors": [0.1, 0.1], "reported_errors": [0.1, 0.1]},
        {"exit_costs": [0, 1], "val_errors": [0.1, 0.1], "reported_errors": [0.1, 0.1]},
        {"exit_costs": [1, 2], "val_errors": [0.1], "reported_errors": [0.1, 0.1]},
        {"exit_costs": [], "val_errors": [], "reported_errors": []},
        {"exit_costs": [1], "val_errors": [float("nan")], "reported_errors": [0.1]},
    ],
)
def test_member_validation(kwargs):
    with pytest.raises(ValueError):
        Member("m", **kwargs)


def test_eann_curve_rejects_bad_input():
    with pytest.raises(ValueError, match="unique"):
        eann_curve([A, A])
    with pytest.raises(ValueError, match="workers"):
        eann_curve([A], workers=0)
    with pytest.raises(ValueError):
        eann_curve([])


def _write_summary(directory, **summary):
    directory.mkdir()
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def test_members_from_run_dirs(tmp_path):
    d0 = _write_summary(
        tmp_path / "n1",
        num_units=3,
        exit_units=[0, 1, 2],
        exit_macs=[10, 20, 30],
        errors={"val": [0.5, 0.4, 0.3], "test": [0.51, 0.41, 0.31]},
        config={"model.n": 1},
    )
    d1 = _write_summary(
        tmp_path / "n3",
        num_units=9,
        exit_units=[4, 8],
        exit_macs=[40, 70],
        errors={"val": [0.35, 0.2], "test": [0.36, 0.21]},
        config={"model.n": 3},
    )
    members = members_from_run_dirs([d0, str(d1)])
    assert members == [
        Member("n1", [10, 20, 30], [0.5, 0.4, 0.3], [0.51, 0.41, 0.31]),
        Member("n3", [40, 70], [0.35, 0.2], [0.36, 0.21]),
    ]
    assert members_from_run_dirs([d1], split="val")[0].reported_errors == (0.35, 0.2)
    # n3's first exit (cost 30 + 40, val 0.35) does not beat n1's final (0.30); its final does
    assert eann_curve(members).costs == (10.0, 20.0, 30.0, 100.0)


def test_members_from_run_dirs_errors_name_the_file(tmp_path):
    no_macs = _write_summary(tmp_path / "a", errors={"val": [0.1], "test": [0.1]})
    with pytest.raises(ValueError, match=r"a/summary.json: missing key 'exit_macs'"):
        members_from_run_dirs([no_macs])
    no_val = _write_summary(tmp_path / "b", exit_macs=[1], errors={"val": None, "test": [0.1]})
    with pytest.raises(ValueError, match=r"b/summary.json: errors.val is null"):
        members_from_run_dirs([no_val])
    bad = _write_summary(tmp_path / "c", exit_macs=[2, 1], errors={"val": [0.1, 0.1], "test": [0.1, 0.1]})
    with pytest.raises(ValueError, match=r"c/summary.json: .*strictly increasing"):
        members_from_run_dirs([bad])
    with pytest.raises(FileNotFoundError, match="summary.json"):
        members_from_run_dirs([tmp_path / "missing"])
