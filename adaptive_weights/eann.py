"""EANN: a sequence of exponentially deepening anytime nets, and its error-versus-cost curve (spec §5.5).

Members A_0, A_1, ... (full costs growing about 2x) run one after another, independently. While
A_k runs, the candidates for the output are the answers already paid for and A_k's latest exit;
the exit is output only if its *validation* error beats the best finished answer, which for a
chain whose finals improve is A_{k-1}'s final (the §5.5 rule). The test error of whatever is
output, plotted against the MACs spent so far, is a step curve compared with OPT+ (the best single
OPT net affordable at each cost) through cost-inflation factors.

The curve math works on plain numbers (:class:`Member`); :func:`members_from_run_dirs` builds
members from ``summary.json`` files, and :func:`eann_analysis` evaluates a chain of loaded runs
against OPT+ for the report and the ``eann`` command (with its markdown, CSV rows and plot curves).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ._io import read_json
from .errors import RefusedError
from .rendering import md_table, pct

if TYPE_CHECKING:
    from .runs import Run

__all__ = [
    "EANN_EXPLANATION",
    "CostInflation",
    "EannAnalysis",
    "Member",
    "StepCurve",
    "cost_inflation",
    "eann_analysis",
    "eann_curve",
    "eann_markdown",
    "eann_plot_curves",
    "eann_rows",
    "inflation_ratios",
    "member_from_errors",
    "members_from_run_dirs",
    "opt_plus_curve",
]


def _floats(name: str, values: Sequence[float]) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={values!r} must be a sequence of numbers") from None
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name}={list(out)} must be finite")
    return out


@dataclass(frozen=True)
class Member:
    """One anytime net of the chain: its exits' cumulative MACs and final errors.

    ``exit_costs[i]`` is the MACs spent inside this member up to and including exit i (the last
    is the member's full cost); ``val_errors`` decide what is output, ``reported_errors`` (on
    whichever split the report asked for: test, or val itself) are what the curve shows.
    """

    name: str
    exit_costs: tuple[float, ...]
    val_errors: tuple[float, ...]
    reported_errors: tuple[float, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"member name {self.name!r} must be a non-empty string")
        costs = _floats(f"{self.name}.exit_costs", self.exit_costs)
        val = _floats(f"{self.name}.val_errors", self.val_errors)
        reported = _floats(f"{self.name}.reported_errors", self.reported_errors)
        if not costs or not len(costs) == len(val) == len(reported):
            raise ValueError(
                f"member {self.name!r}: exit_costs, val_errors and reported_errors must be non-empty and of "
                f"equal length; got {len(costs)}, {len(val)}, {len(reported)}"
            )
        if costs[0] <= 0 or any(b <= a for a, b in pairwise(costs)):
            raise ValueError(
                f"member {self.name!r}: exit_costs={list(costs)} must be positive and strictly increasing"
            )
        object.__setattr__(self, "exit_costs", costs)
        object.__setattr__(self, "val_errors", val)
        object.__setattr__(self, "reported_errors", reported)

    @property
    def full_cost(self) -> float:
        return self.exit_costs[-1]

    @property
    def num_exits(self) -> int:
        return len(self.exit_costs)


@dataclass(frozen=True)
class StepCurve:
    """An anytime curve: from ``costs[i]`` on (until ``costs[i+1]``) the output has ``errors[i]``.

    ``sources[i] = (member_name, exit_index)`` names the exit that produced the output. Costs are
    strictly increasing and a point is listed only when the output changes.
    """

    costs: tuple[float, ...]
    errors: tuple[float, ...]
    sources: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        if not len(self.costs) == len(self.errors) == len(self.sources) or not self.costs:
            raise ValueError("a StepCurve needs equally many (>= 1) costs, errors and sources")
        if any(b <= a for a, b in pairwise(self.costs)):
            raise ValueError(f"StepCurve costs={list(self.costs)} must be strictly increasing")

    def error_at(self, budget: float) -> float:
        """Anytime error at ``budget``: the error of the last point with cost <= budget."""
        if budget < self.costs[0]:
            raise ValueError(
                f"budget={budget} is below the first output's cost {self.costs[0]}: no output yet"
            )
        i = max(j for j, c in enumerate(self.costs) if c <= budget)
        return self.errors[i]

    def cost_to_reach(self, error: float) -> float:
        """The smallest cost from which on the output's error stays <= ``error`` (inf if the curve ends
        above it). Not the first cost at which it dips there: outputs are chosen on validation errors,
        so a later output can be worse on the reported split, and a budget factor must hold at every
        larger budget too."""
        above = [i for i, e in enumerate(self.errors) if e > error]
        if not above:
            return self.costs[0]
        return self.costs[above[-1] + 1] if above[-1] + 1 < len(self.costs) else math.inf


class _Output(NamedTuple):
    val: float
    running: bool  # a running member's latest exit loses ties to an answer already finished
    member: int
    exit: int


def eann_curve(members: Sequence[Member], *, workers: int = 1) -> StepCurve:
    """The EANN anytime curve of ``members`` (spec §5.5), run in the given order.

    Sequential (``workers=1``): exit i of member k is reached at cost
    ``sum_{j<k} C_j + c_{k,i}``. At every moment the output is, among the finals of the finished
    members and the latest exit of the running one, the one with the lowest *validation* error; a
    running exit must beat the finished answer strictly. For a chain whose finals improve on
    validation (the intended use) the best finished answer is A_{k-1}'s final, so this is exactly
    §5.5: "output A_k's latest exit only if its validation error beats A_{k-1}'s final, else keep
    A_{k-1}'s final". When a member's final is *worse* than an earlier one, the rule as literally
    written would drop a better answer already paid for; comparing with the best finished final
    keeps it instead.

    Parallel (``workers=w > 1``): members start in order, each on the first worker to become free
    (first in, first out); all workers have the same speed. Costs are then *wall-clock MACs*: the
    time axis measured in the MACs one worker does meanwhile (total compute is up to w times it).
    The output rule is the same with every running member's latest exit as a candidate. With one
    worker the two coincide.

    The curve's errors are the members' ``reported_errors`` of the chosen exits.
    """
    if not members:
        raise ValueError("eann_curve needs at least one member")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"member names {names} must be unique (they label the curve's sources)")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be a positive integer")

    # Schedule: member k starts when the earliest worker is free (FIFO over members).
    free = [0.0] * workers
    events: list[tuple[float, int, int]] = []  # (time, member, exit)
    for k, m in enumerate(members):
        start = heapq.heappop(free)
        events.extend((start + c, k, i) for i, c in enumerate(m.exit_costs))
        heapq.heappush(free, start + m.full_cost)
    events.sort()

    best_finished: _Output | None = None
    latest: dict[int, _Output] = {}  # running member -> its latest exit
    costs: list[float] = []
    errors: list[float] = []
    sources: list[tuple[str, int]] = []
    pos = 0
    while pos < len(events):
        t = events[pos][0]
        while pos < len(events) and events[pos][0] == t:  # simultaneous exits form one step
            _, k, i = events[pos]
            out = _Output(members[k].val_errors[i], True, k, i)
            if i == members[k].num_exits - 1:
                latest.pop(k, None)
                done = out._replace(running=False)
                if best_finished is None or done < best_finished:
                    best_finished = done
            else:
                latest[k] = out
            pos += 1
        candidates = list(latest.values()) + ([best_finished] if best_finished else [])
        choice = min(candidates)
        source = (members[choice.member].name, choice.exit)
        if not sources or sources[-1] != source:
            costs.append(t)
            errors.append(members[choice.member].reported_errors[choice.exit])
            sources.append(source)
    return StepCurve(tuple(costs), tuple(errors), tuple(sources))


def opt_plus_curve(
    opt_points: Sequence[tuple[float, float]], names: Sequence[str] | None = None
) -> StepCurve:
    """OPT+: at every cost, the best error among the single-exit OPT nets affordable at that cost.

    ``opt_points[j] = (cost, error)`` of one OPT run (cost = the MACs of its only exit). The curve
    is the running minimum over increasing cost; a point is listed only where it improves. Sources
    are ``(names[j], 0)`` (default name ``"opt[j]"``).
    """
    if not opt_points:
        raise ValueError("opt_plus_curve needs at least one (cost, error) point")
    if names is not None and len(names) != len(opt_points):
        raise ValueError(f"names has {len(names)} entries for {len(opt_points)} OPT points")
    labels = list(names) if names is not None else [f"opt[{j}]" for j in range(len(opt_points))]
    rows = []
    for j, point in enumerate(opt_points):
        if len(point) != 2:
            raise ValueError(f"opt_points[{j}]={point!r} must be a (cost, error) pair")
        cost, err = _floats(f"opt_points[{j}]", point)
        if cost <= 0:
            raise ValueError(f"opt_points[{j}] has cost {cost}; costs must be > 0")
        rows.append((cost, err, j))
    rows.sort()
    costs: list[float] = []
    errors: list[float] = []
    sources: list[tuple[str, int]] = []
    for cost, err, j in rows:
        if errors and err >= errors[-1]:  # rows are sorted by (cost, error): a tie in cost keeps the lower
            continue
        costs.append(cost)
        errors.append(err)
        sources.append((labels[j], 0))
    return StepCurve(tuple(costs), tuple(errors), tuple(sources))


def inflation_ratios(curve: StepCurve, reference: StepCurve) -> list[tuple[float, float]]:
    """``(B, T(B)/B)`` at every breakpoint B of ``reference``.

    T(B) is the smallest cost from which on ``curve``'s error stays <= ``reference``'s error at B
    (:meth:`StepCurve.cost_to_reach`; ``inf`` if it ends above it): how much more budget ``curve``
    needs to match ``reference`` for good.
    """
    return [(b, curve.cost_to_reach(e) / b) for b, e in zip(reference.costs, reference.errors, strict=True)]


class CostInflation(NamedTuple):
    worst: float
    average: float


def cost_inflation(curve: StepCurve, reference: StepCurve) -> CostInflation:
    """Worst and average cost-inflation factor of ``curve`` against ``reference`` (e.g. EANN vs OPT+).

    For a budget B in ``reference``'s range [first cost, last cost], the factor is T(B)/B with T
    from :func:`inflation_ratios`. ``reference`` is a step curve, so its error, and with it T, is
    constant between breakpoints while B grows: the factor is largest at the left end of each step.
    Hence ``worst`` = the max over ``reference``'s breakpoints is the exact supremum over the whole
    range, and ``average`` is the plain mean over those breakpoints (one per OPT net that improves
    OPT+). Either is ``inf`` if ``curve`` never reaches some reference error. The paper's
    proposition bounds these (about 4 using members' finals only, 2 to 3 with good second-half
    exits, for base b = 2; spec §5.5).
    """
    ratios = [r for _, r in inflation_ratios(curve, reference)]
    return CostInflation(max(ratios), sum(ratios) / len(ratios))


def _require(summary: dict[str, Any], key: str, path: Path) -> Any:
    if not isinstance(summary, dict) or key not in summary:
        have = sorted(summary) if isinstance(summary, dict) else type(summary).__name__
        raise ValueError(f"{path}: missing key {key!r} (found {have})")
    return summary[key]


def member_from_errors(name: str, exit_macs: Sequence[float], errors: Mapping[str, Any], split: str = "test",
                       *, where: str | Path = "") -> Member:
    """A member from a run's per-exit MACs and its ``errors`` mapping (``summary.json``'s layout).

    ``errors["val"]`` is required (the output decision is never made on the test split); the
    reported errors are ``errors[split]``. ``where`` (a file) prefixes the error messages.
    """
    prefix = f"{where}: " if where else ""
    val, reported = errors.get("val"), errors.get(split)
    if val is None:
        raise ValueError(f"{prefix}errors.val is null; EANN chooses outputs on validation errors, so train the "
                         "member with a validation split")
    if reported is None:
        raise ValueError(f"{prefix}errors.{split} is null")
    try:
        return Member(name, exit_macs, val, reported)
    except ValueError as err:
        raise ValueError(f"{prefix}{err}") from None


def members_from_run_dirs(paths: Sequence[str | Path], split: str = "test") -> list[Member]:
    """Members from run directories (in the given order), read from each ``summary.json``; a
    member's name is its directory's name (see :func:`member_from_errors`)."""
    members = []
    for p in paths:
        path = Path(p) / "summary.json"
        summary = read_json(path)
        exit_macs = _require(summary, "exit_macs", path)
        errors = _require(summary, "errors", path)
        _require(errors, "val", path)
        _require(errors, split, path)
        members.append(member_from_errors(Path(p).name, exit_macs, errors, split, where=path))
    return members


# ------------------------------------------------------------------- a chain of runs against OPT+
EANN_EXPLANATION = (
    "Exponentially deepening members run one after another (the paper's EANN). While member k runs, its latest exit is "
    "output only if its *validation* error beats the best finished member's final; the error shown is the "
    "output's error on the report's split. Exit i of member k costs the full MACs of members 0..k-1 plus its own "
    "MACs up to exit i. OPT+ is, at every cost, the best OPT net affordable (the OPT runs of the same data set, "
    "mean over seeds). The cost-inflation factor at an OPT+ breakpoint B is T(B)/B, with T(B) the smallest cost "
    "from which on the EANN is at least as good as OPT+ at B; worst = the maximum over breakpoints (the supremum over "
    "all budgets in OPT+'s range), average = their mean. The paper's analysis bounds the worst by about 4 using "
    "members' finals only, 2 to 3 with good second-half exits, for costs that double.")


class EannAnalysis(NamedTuple):
    """An EANN chain evaluated: its members, step curve, OPT+ curve and cost inflation (None
    without OPT runs), and notes for the reader."""

    members: list[Member]
    curve: StepCurve
    opt_plus: StepCurve | None
    inflation: CostInflation | None
    notes: list[str]


def eann_analysis(member_runs: Sequence[Run], opt_runs: Sequence[Run], split: str = "test") -> EannAnalysis:
    """EANN of ``member_runs`` (in order) against OPT+ of the OPT runs of the same data set.

    The errors of OPT runs of several seeds at the same model and unit are averaged into one OPT+
    point; without any OPT run on the data set, OPT+ and the inflation factors are None.
    """
    from .runs import divergence_text, opt_points

    if not member_runs:
        raise ValueError("an EANN needs at least one member run directory")
    opt_members = [r.name for r in member_runs if r.is_opt]
    if opt_members:
        raise RefusedError(f"EANN members must be anytime runs; {opt_members} are single-exit OPT runs")
    diverged = [r for r in member_runs if r.status == "diverged"]
    if diverged:  # its errors are null, or those of its last good epoch: no result of the run it was meant to be
        raise RefusedError(f"EANN member {diverged[0].name} ({diverged[0].path}) diverged ({divergence_text(diverged[0])}); "
                           "a chain needs every member's final errors: retrain it with a lower train.lr_values, "
                           "or leave it out of the chain")
    data = {str(r.config.get("data.name")) for r in member_runs}
    if len(data) != 1:
        raise ValueError(f"EANN members must share one data set; got {sorted(data)}")
    (data_name,) = data
    # the runs are loaded already: build the members from them instead of reading summary.json again
    members = [member_from_errors(r.name, r.exit_macs, r.errors, split, where=r.path / "summary.json")
               for r in member_runs]
    curve = eann_curve(members)
    notes: list[str] = []
    costs = [m.full_cost for m in members]
    if any(b <= a for a, b in pairwise(costs)):
        notes.append(f"members are not in increasing cost order (full MACs {costs}); the chain runs them as given")
    points = sorted(opt_points([r for r in opt_runs if r.config.get("data.name") == data_name], split),
                    key=lambda p: (p.macs, p.model, p.unit))
    opt_plus = inflation = None
    if points:
        opt_plus = opt_plus_curve([(p.macs, p.error) for p in points],
                                  names=[f"OPT {p.model} unit {p.unit}" for p in points])
        inflation = cost_inflation(curve, opt_plus)
    else:
        notes.append(f"no OPT run on {data_name}: OPT+ and the cost-inflation factors are n/a")
    return EannAnalysis(members, curve, opt_plus, inflation, notes)


def eann_rows(curve: StepCurve) -> list[dict[str, Any]]:
    """CSV rows of a step curve: where the output changes, its cost, error and source exit (0-based)."""
    return [{"macs": cost, "error": e, "member": src, "exit": k}
            for cost, e, (src, k) in zip(curve.costs, curve.errors, curve.sources, strict=True)]


def _factor(x: float) -> str:
    return "inf (the EANN never reaches that error)" if math.isinf(x) else f"{x:.2f}x"


def eann_markdown(analysis: EannAnalysis) -> list[str]:
    """Markdown lines for one :func:`eann_analysis`: members, the curve, OPT+ and inflation factors."""
    members, curve, opt_plus = analysis.members, analysis.curve, analysis.opt_plus
    ratios = [f"{b.full_cost / a.full_cost:.2f}" for a, b in pairwise(members)]
    md = [f"Members: {', '.join(f'{m.name} ({m.full_cost:,.0f} MACs)' for m in members)}; cost ratios "
          f"{', '.join(ratios) or '-'}.", ""]
    md += md_table(["MACs", "error (%)", "output", "OPT+ error at this cost (%)"],
                   [[f"{row['macs']:,.0f}", pct(row["error"]), f"{row['member']} exit {row['exit']}",
                     "n/a" if opt_plus is None or row["macs"] < opt_plus.costs[0] else pct(opt_plus.error_at(row["macs"]))]
                    for row in eann_rows(curve)])
    if opt_plus is not None:
        md += ["OPT+ (best single-exit OPT net affordable at each cost):", ""]
        md += md_table(["MACs", "error (%)", "OPT run"],
                       [[f"{row['macs']:,.0f}", pct(row["error"]), row["member"]] for row in eann_rows(opt_plus)])
        inf = analysis.inflation
        md += [f"Cost inflation of the EANN against OPT+: worst {_factor(inf.worst)}, average {_factor(inf.average)}.", ""]
    md += [f"*{note}*\n" for note in analysis.notes]
    return md


def eann_plot_curves(analysis: EannAnalysis, label: str = "EANN") -> dict[str, tuple[list[float], list[float]]]:
    """Curves of an EANN plot on the chain's cost axis: the EANN step curve (held until the last
    member finishes), OPT+, and every member's own exits shifted by the earlier members' costs."""
    curve, members = analysis.curve, analysis.members
    total = sum(m.full_cost for m in members)
    costs, errors = list(curve.costs), list(curve.errors)
    if costs[-1] < total:
        costs.append(total)
        errors.append(errors[-1])
    curves = {label: (costs, errors)}
    if analysis.opt_plus is not None:
        curves["OPT+"] = (list(analysis.opt_plus.costs), list(analysis.opt_plus.errors))
    offset = 0.0
    for m in members:
        curves[f"{m.name} (from {offset / 1e6:.3g}M)" if offset else m.name] = (
            [offset + c for c in m.exit_costs], list(m.reported_errors))
        offset += m.full_cost
    return curves
