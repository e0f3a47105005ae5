"""Evaluation metrics of anytime networks (spec §5.3-§5.4): pure functions on plain floats.

Everything here works on lists or numpy arrays of final per-exit errors (fractions or percents,
as long as one call uses one unit) and needs no torch, so reports can be recomputed from
``summary.json`` files alone.

Conventions used throughout:

* A *unit* is one residual unit of the trunk, indexed 0..L-1; an *exit* sits after some unit.
  ``exit_units`` lists the unit index of every exit (strictly increasing; with a prediction period
  s > 1 they are ``(L-1) % s, ... , L-1``).
* Milestones are the units ``idx_q = round_half_up(q * L) - 1`` for q in {1/4, 1/2, 3/4, 1}
  (spec §5.4, confirmed on every ``opt_at`` list of the authors' scripts).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from fractions import Fraction
from typing import Literal, NamedTuple

import numpy as np

__all__ = [
    "DEFAULT_QUANTILES",
    "WinRate",
    "binomial_pvalue",
    "error_at_depth",
    "error_cost_auc",
    "hoeffding_pvalue",
    "milestone_indices",
    "per_exit_error",
    "relative_increase",
    "win_rate",
    "win_rate_table",
]

DEFAULT_QUANTILES: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)


def _as_fraction(q: float | Fraction) -> Fraction:
    """The exact rational a user meant: 0.1 -> 1/10 (its shortest decimal), not the binary float."""
    if isinstance(q, Fraction):
        return q
    if isinstance(q, bool) or not isinstance(q, (int, float, np.integer, np.floating)):
        raise ValueError(f"quantile {q!r} is not a number; expected a float or Fraction in (0, 1]")
    return Fraction(repr(float(q)))


def milestone_indices(num_units: int, quantiles: Sequence[float | Fraction] = DEFAULT_QUANTILES) -> list[int]:
    """Unit indices ``round_half_up(q * L) - 1`` of the OPT milestones (spec §5.4).

    The rounding is exact (rational arithmetic) and rounds halves up: for L = 10, q = 1/4 gives
    round_half_up(2.5) - 1 = 2, where Python's ``round`` (halves to even) would give 1. A float q is
    read as its shortest decimal (0.1 means 1/10). An index that would be -1 (a tiny q on a very
    shallow net) is clamped to 0, the first unit.

    >>> milestone_indices(27)
    [6, 13, 19, 26]
    >>> milestone_indices(3)
    [0, 1, 1, 2]
    """
    if isinstance(num_units, bool) or not isinstance(num_units, (int, np.integer)) or num_units < 1:
        raise ValueError(f"num_units={num_units!r} must be a positive integer")
    out = []
    for q in quantiles:
        frac = _as_fraction(q)
        if not 0 < frac <= 1:
            raise ValueError(f"quantile {q!r} must lie in (0, 1]")
        rounded = math.floor(frac * int(num_units) + Fraction(1, 2))
        out.append(max(rounded - 1, 0))
    return out


def per_exit_error(predictions: np.ndarray | Sequence, labels: np.ndarray | Sequence) -> np.ndarray:
    """Top-1 error of every exit: ``predictions`` is ``[num_exits, N]`` class indices, ``labels`` ``[N]``.

    (Training computes these on the device; this is the host-side reference used by reports and tests.)
    """
    preds = np.asarray(predictions)
    y = np.asarray(labels)
    if preds.ndim != 2 or y.ndim != 1 or preds.shape[1] != y.shape[0]:
        raise ValueError(
            f"predictions must be [num_exits, N] and labels [N]; got {preds.shape} and {y.shape}"
        )
    if y.shape[0] == 0:
        raise ValueError("per_exit_error needs at least one sample")
    return (preds != y[None, :]).mean(axis=1)


def _check_curve(
    xs: Sequence[float], ys: Sequence[float], x_name: str, y_name: str
) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(
            f"{x_name} and {y_name} must be non-empty 1-D sequences of equal length; "
            f"got shapes {x.shape} and {y.shape}"
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{x_name}={x.tolist()} and {y_name}={y.tolist()} must be finite")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"{x_name}={x.tolist()} must be strictly increasing")
    return x, y


def error_at_depth(exit_units: Sequence[int], errors: Sequence[float], unit_index: float) -> float:
    """Error at ``unit_index``, interpolated linearly in depth between the two neighbouring exits.

    This is how a net with a prediction period s > 1 is compared at a milestone it has no exit at
    (spec §5.4: e.g. exits at units 17 and 20 give unit 18 as 2/3 * e17 + 1/3 * e20). Cost is almost
    exactly linear in depth (§4.3), so this equals interpolation in MACs. Depths outside
    ``[exit_units[0], exit_units[-1]]`` raise: there is nothing to interpolate from, and
    extrapolating an error curve would invent data.
    """
    units, errs = _check_curve(exit_units, errors, "exit_units", "errors")
    u = float(unit_index)
    if not units[0] <= u <= units[-1]:
        raise ValueError(
            f"unit_index={unit_index} lies outside the exits' range [{units[0]:g}, {units[-1]:g}]; "
            "interpolation needs an exit at or before and at or after it"
        )
    hi = int(np.searchsorted(units, u, side="left"))
    if units[hi] == u:
        return float(errs[hi])
    lo = hi - 1
    t = (u - units[lo]) / (units[hi] - units[lo])
    return float(errs[lo] + t * (errs[hi] - errs[lo]))


def relative_increase(
    ann_exit_units: Sequence[int],
    ann_errors: Sequence[float],
    opt_errors_by_unit: Mapping[int, float],
    num_units: int,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
) -> dict[float, float]:
    """Relative error increase ``(e_ANN - e_OPT) / e_OPT`` at every milestone q (spec §5.4).

    ``opt_errors_by_unit`` maps the unit index at which an OPT net was trained (its single exit) to
    its final error. The ANN error is interpolated in depth when no exit sits at ``idx_q``; the OPT
    error is read at ``idx_q`` or, when that depth was not trained, interpolated between the trained
    depths around it (spec: "also interpolate OPT between trained depths"). Returns ``{q: value}``.
    """
    if not opt_errors_by_unit:
        raise ValueError("opt_errors_by_unit is empty; need the OPT error at every milestone")
    opt_units = sorted(opt_errors_by_unit)
    opt_errs = [opt_errors_by_unit[u] for u in opt_units]
    out: dict[float, float] = {}
    for q, idx in zip(quantiles, milestone_indices(num_units, quantiles), strict=True):
        e_ann = error_at_depth(ann_exit_units, ann_errors, idx)
        try:
            e_opt = error_at_depth(opt_units, opt_errs, idx)
        except ValueError as exc:
            raise ValueError(
                f"no OPT error at milestone q={q} (unit {idx}); OPT runs cover units {opt_units}"
            ) from exc
        if e_opt <= 0:
            raise ValueError(
                f"OPT error at milestone q={q} (unit {idx}) is {e_opt}; the relative increase "
                "divides by it and needs it > 0"
            )
        out[q] = (e_ann - e_opt) / e_opt
    return out


def error_cost_auc(
    costs: Sequence[float],
    errors: Sequence[float],
    normalize: bool = True,
    *,
    interpolation: Literal["step", "linear"] = "step",
    cost_range: tuple[float, float] | None = None,
) -> float:
    """Area under the error-versus-cost curve over ``cost_range`` (default: first to last cost).

    ``interpolation="step"`` (the default) integrates what an anytime net can actually deliver: at
    budget B it holds the error of the last exit with cost <= B, so the curve is right-continuous
    piecewise constant (and may be extended past the last exit). ``"linear"`` joins the points by
    straight lines (the trapezoidal rule), the usual reading of a plotted curve. With ``normalize``
    the area is divided by the width of the cost range, giving the mean error over budgets spread
    uniformly in that range (same unit as ``errors``), comparable across nets of different size.
    Lower is better.
    """
    c, e = _check_curve(costs, errors, "costs", "errors")
    if interpolation not in ("step", "linear"):
        raise ValueError(f"interpolation={interpolation!r}; allowed: 'step', 'linear'")
    lo, hi = (float(c[0]), float(c[-1])) if cost_range is None else map(float, cost_range)
    if not hi > lo:
        raise ValueError(
            f"cost range [{lo}, {hi}] is empty; give a cost_range with lo < hi "
            "(a curve of one point has no area)"
        )
    if lo < c[0]:
        raise ValueError(f"cost_range starts at {lo}, before the first exit's cost {c[0]}: no output there")
    if interpolation == "linear" and hi > c[-1]:
        raise ValueError(f"cost_range ends at {hi}, after the last cost {c[-1]}: linear has nothing there")
    xs = np.concatenate(([lo], c[(c > lo) & (c < hi)], [hi]))
    if interpolation == "step":
        left = e[np.searchsorted(c, xs[:-1], side="right") - 1]
        area = float(np.sum(left * np.diff(xs)))
    else:
        ys = np.interp(xs, c, e)
        area = float(np.sum((ys[1:] + ys[:-1]) * 0.5 * np.diff(xs)))
    return area / (hi - lo) if normalize else area


def _check_counts(wins: int, n: int) -> None:
    for name, v in (("wins", wins), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}={v!r} must be an integer")
    if n < 0 or not 0 <= wins <= n:
        raise ValueError(f"need 0 <= wins <= n; got wins={wins}, n={n}")


def hoeffding_pvalue(wins: int, n: int) -> float:
    """One-sided Hoeffding bound on P[k/n >= observed] when A and B are equally good (p = 1/2).

    ``exp(-2 n (k/n - 1/2)^2)`` for k/n > 1/2 (the paper's win-rate test); 1.0 when k/n <= 1/2,
    where the one-sided test has no evidence that A beats B, and when n = 0.
    """
    _check_counts(wins, n)
    if n == 0 or 2 * wins <= n:
        return 1.0
    return math.exp(-2.0 * n * (wins / n - 0.5) ** 2)


def binomial_pvalue(wins: int, n: int) -> float:
    """Exact one-sided sign-test p-value ``P[X >= wins]`` for X ~ Binomial(n, 1/2).

    Computed as an exact rational sum (no scipy, no rounding until the final float); it equals
    ``scipy.stats.binomtest(wins, n, 0.5, alternative="greater").pvalue``. Hoeffding's inequality
    bounds exactly this tail from above, so this value is never larger than :func:`hoeffding_pvalue`;
    print both (the paper reports the bound, the exact value is the sharper evidence).
    """
    _check_counts(wins, n)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(wins, n + 1))
    return float(Fraction(tail, 2**n))


class WinRate(NamedTuple):
    """A-versus-B comparison over matched settings. Ties are dropped (see :func:`win_rate`)."""

    wins: int
    ties: int
    n: int  # decisive settings (wins + losses); ties excluded
    rate: float  # wins / n, NaN when n == 0
    hoeffding_p: float
    binomial_p: float


def win_rate(a_errors: Sequence[float], b_errors: Sequence[float], *, tie_tol: float = 0.0) -> WinRate:
    """Share of matched settings in which A has the lower error, with one-sided p-values.

    ``a_errors[i]`` and ``b_errors[i]`` belong to the same setting (data set, model, seed).
    A tie (``|a - b| <= tie_tol``) is **dropped**, as in the classical sign test: a tie carries no
    evidence for either method, the exact binomial test needs integer counts (counting a tie as half
    a win would not), and final test errors are multiples of 1/N_test, so exact ties really happen.
    The number of ties is reported so a reader can see how many settings were dropped.
    """
    a = np.asarray(a_errors, dtype=np.float64)
    b = np.asarray(b_errors, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a_errors and b_errors must be 1-D of equal length; got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError(f"errors must be finite; got a={a.tolist()}, b={b.tolist()}")
    if not tie_tol >= 0:
        raise ValueError(f"tie_tol={tie_tol} must be >= 0")
    diff = a - b
    ties = int(np.sum(np.abs(diff) <= tie_tol))
    wins = int(np.sum(diff < -tie_tol))
    n = a.size - ties
    rate = wins / n if n else float("nan")
    return WinRate(wins, ties, n, rate, hoeffding_pvalue(wins, n), binomial_pvalue(wins, n))


def win_rate_table(
    results: Mapping[str, Mapping[Hashable, Mapping[float, float]]],
    method_a: str,
    method_b: str,
    milestones: Sequence[float] = DEFAULT_QUANTILES,
    *,
    strict: bool = True,
    tie_tol: float = 0.0,
) -> dict[float, WinRate]:
    """Win rate of ``method_a`` over ``method_b`` at every milestone, over their matched settings.

    ``results[method][setting][q]`` is the error of ``method`` at milestone ``q`` in ``setting``, a
    hashable key naming everything that must match (e.g. ``("cifar100", "n9-c16", seed)``). Only
    settings present for both methods are compared; with ``strict`` (the default) a setting present
    for one method only is an error, because silently dropping it would bias the table.
    """
    for m in (method_a, method_b):
        if m not in results:
            raise ValueError(f"method {m!r} not in results; available: {sorted(results)}")
    sa, sb = results[method_a], results[method_b]
    matched = [s for s in sa if s in sb]
    unmatched = [s for s in sa if s not in sb] + [s for s in sb if s not in sa]
    if strict and unmatched:
        raise ValueError(
            f"settings {unmatched} are present for only one of {method_a!r} and {method_b!r}; "
            "pass strict=False to compare only the matched ones"
        )
    if not matched:
        raise ValueError(f"{method_a!r} and {method_b!r} share no setting")
    table: dict[float, WinRate] = {}
    for q in milestones:
        a_err, b_err = [], []
        for s in matched:
            for m, errs, out in ((method_a, sa[s], a_err), (method_b, sb[s], b_err)):
                if q not in errs:
                    raise ValueError(f"results[{m!r}][{s!r}] has no milestone {q}; it has {sorted(errs)}")
                out.append(errs[q])
        table[q] = win_rate(a_err, b_err, tie_tol=tie_tol)
    return table
