"""EANN: a sequence of exponentially deepening anytime nets, and its error-versus-cost curve (spec §5.5).

Members A_0, A_1, ... (full costs growing about 2x) run one after another, independently. While
A_k runs, the candidates for the output are the answers already paid for and A_k's latest exit;
the exit is output only if its *validation* error beats the best finished answer, which for a
chain whose finals improve is A_{k-1}'s final (the §5.5 rule). The test error of whatever is
output, plotted against the MACs spent so far, is a step curve compared with OPT+ (the best single
OPT net affordable at each cost) through cost-inflation factors.

Everything here works on plain numbers (:class:`Member`); :func:`members_from_run_dirs` is the one
bridge from ``summary.json`` files.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

from ._io import read_json

__all__ = [
    "CostInflation",
    "Member",
    "StepCurve",
    "cost_inflation",
    "eann_curve",
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
    is the member's full cost); ``val_errors`` decide what is output, ``test_errors`` are reported.
    """

    name: str
    exit_costs: tuple[float, ...]
    val_errors: tuple[float, ...]
    test_errors: tuple[float, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"member name {self.name!r} must be a non-empty string")
        costs = _floats(f"{self.name}.exit_costs", self.exit_costs)
        val = _floats(f"{self.name}.val_errors", self.val_errors)
        test = _floats(f"{self.name}.test_errors", self.test_errors)
        if not costs or not len(costs) == len(val) == len(test):
            raise ValueError(
                f"member {self.name!r}: exit_costs, val_errors and test_errors must be non-empty and of "
                f"equal length; got {len(costs)}, {len(val)}, {len(test)}"
            )
        if costs[0] <= 0 or any(b <= a for a, b in pairwise(costs)):
            raise ValueError(
                f"member {self.name!r}: exit_costs={list(costs)} must be positive and strictly increasing"
            )
        object.__setattr__(self, "exit_costs", costs)
        object.__setattr__(self, "val_errors", val)
        object.__setattr__(self, "test_errors", test)

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
        """The smallest cost at which the output's error is <= ``error`` (inf if never)."""
        return next((c for c, e in zip(self.costs, self.errors, strict=True) if e <= error), math.inf)


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

    The curve's errors are the members' ``test_errors`` of the chosen exits.
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
            errors.append(members[choice.member].test_errors[choice.exit])
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

    T(B) is the smallest cost at which ``curve`` outputs an error <= ``reference``'s error at B
    (``inf`` if it never does): how much more budget ``curve`` needs to match ``reference``.
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
