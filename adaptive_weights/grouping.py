"""Which runs a report compares with which: methods, settings, milestones, comparability.

Anytime runs are grouped into *methods* by config keys (``sieve+aann``); a *setting* is (data set,
model, seed), what two methods must share to be compared; OPT runs (single-exit schemes) are matched
by data set, model and seed (:func:`adaptive_weights.runs.opt_points`). :class:`GroupedRuns` is this
grouping, done once and read by every section of a report; :func:`grouping_warnings` lists what
makes a comparison not like for like.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import NamedTuple

from .config import EXECUTION_KEYS, MODEL_KEYS
from .errors import RefusedError
from .runs import Run, opt_points

__all__ = ["QUANTILES", "Q_LABEL", "GroupedRuns", "NO_EXIT", "NO_OPT", "Ratio", "ZERO_OPT_ERRORS", "group_runs",
           "grouping_warnings", "setting_text", "unfinished_warning"]

QUANTILES = (Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), Fraction(1))
Q_LABEL = {Fraction(1, 4): "1/4", Fraction(1, 2): "1/2", Fraction(3, 4): "3/4", Fraction(1): "1"}


def setting_text(run: Run) -> str:
    return f"{run.model_label} seed {run.seed}"


def _protocol_mismatches(runs: Sequence[Run], group_by: Sequence[str] = ()) -> list[str]:
    """Config keys (other than method, setting and execution keys) on which runs of one data set
    disagree: their comparison (win rates, OPT, EANN) would not be like for like. A method key
    names the method, and so may differ: the scheme and strategy sections always, and a section
    whose ``name`` is a ``group_by`` key (``objective.name`` makes every ``objective.*`` a method key)."""
    skip = set(EXECUTION_KEYS) | set(MODEL_KEYS) | {"train.seed"} | set(group_by)
    method_sections = ("scheme.", "strategy.") + tuple(k[: -len("name")] for k in group_by if k.endswith(".name"))
    by_data: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_data[str(r.config.get("data.name"))].append(r)
    out = []
    for data_name, group in sorted(by_data.items()):
        keys = sorted({k for r in group for k in r.config if k not in skip and not k.startswith(method_sections)})
        for key in keys:
            by_value: dict[str, list[str]] = defaultdict(list)
            for r in group:
                by_value[repr(r.config.get(key))].append(r.name)
            if len(by_value) > 1:
                parts = "; ".join(f"{v} in {len(names)} run(s) ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                                  for v, names in sorted(by_value.items(), key=lambda kv: -len(kv[1])))
                out.append(f"mismatched setting `{key}` among the {data_name} runs: {parts}")
    return out


@dataclass(frozen=True)
class GroupedRuns:
    """The runs of a report grouped once (read-only): anytime runs by method, the OPT runs, and the
    split whose errors are compared."""

    split: str
    methods: dict[str, list[Run]]
    opt_runs: list[Run]
    group_by: tuple[str, ...] = ()

    @property
    def method_names(self) -> list[str]:
        return sorted(self.methods)

    @cached_property
    def model_keys(self) -> list[tuple]:
        return sorted({r.model_key for rs in self.methods.values() for r in rs}, key=str)

    def label_of(self, model_key: tuple) -> str:
        return next(r.model_label for rs in self.methods.values() for r in rs if r.model_key == model_key)

    def runs_of(self, name: str, model_key: tuple) -> list[Run]:
        return [r for r in self.methods[name] if r.model_key == model_key]

    def milestone_errors(self, run: Run) -> list[tuple[Fraction, int, float | None]]:
        """``(q, idx_q, error at idx_q or None when no exit covers it)`` for every milestone."""
        from .metrics import error_at_depth, milestone_indices

        errs = run.split_errors(self.split)
        out = []
        for q, idx in zip(QUANTILES, milestone_indices(run.num_units, QUANTILES), strict=True):
            try:
                out.append((q, idx, error_at_depth(run.exit_units, errs, idx)))
            except ValueError:
                out.append((q, idx, None))
        return out




    def opt_error(self, run: Run, unit: int) -> tuple[float | None, str]:
        """OPT's error at ``unit`` for ``run``'s data set and model: the OPT run of its own seed, else
        OPT's mean over the seeds it has (then with a note saying so); ``(None, "")`` without any."""
        own = {p.unit: p for p in opt_points(self.opt_runs, self.split, like=run, seed=run.seed)}
        if unit in own:
            return own[unit].error, ""
        pooled = {p.unit: p for p in opt_points(self.opt_runs, self.split, like=run)}
        if unit not in pooled:
            return None, ""
        seeds = sorted({o.seed for o in pooled[unit].runs})
        return pooled[unit].error, f"no OPT run of seed {run.seed}: compared with OPT's mean over seeds {seeds}"


    def relative_increase(self, run: Run, unit: int, e_ann: float | None) -> Ratio:
        """(e_ANN - e_OPT) / e_OPT of ``run`` at ``unit`` (``e_ann``: its error there, None without an
        exit around it) against :meth:`opt_error`, or why it is undefined."""
        e_opt, fallback = self.opt_error(run, unit)
        if e_ann is None:
            return Ratio(None, NO_EXIT, e_opt, fallback)
        if e_opt is None:
            return Ratio(None, NO_OPT, None, fallback)
        if e_opt <= 0:
            return Ratio(None, ZERO_OPT_ERRORS, e_opt, fallback)
        return Ratio((e_ann - e_opt) / e_opt, "", e_opt, fallback)


# why a relative increase is undefined (Ratio.problem)
NO_EXIT, NO_OPT, ZERO_OPT_ERRORS = "no exit at or around unit", "no OPT run at unit", "OPT has 0 errors at unit"


class Ratio(NamedTuple):
    """A relative error increase against OPT: its value, or None and the ``problem`` (NO_EXIT, NO_OPT,
    ZERO_OPT_ERRORS); the OPT error used, and the note when OPT's mean stood in for the run's seed."""

    value: float | None
    problem: str
    e_opt: float | None
    fallback: str


def group_runs(runs: Sequence[Run], group_by: Sequence[str], split: str) -> GroupedRuns:
    """Anytime runs by method label (the values of ``group_by`` joined with ``+``), OPT runs apart.
    A key that no anytime run has is refused: a strategy hyper-parameter may be absent from some runs
    (left out of their label), but one absent from all is a typo that would make every run one method."""
    anytime = [r for r in runs if not r.is_opt]
    known = {k for r in anytime for k in r.config}
    unknown = [k for k in group_by if anytime and k not in known]
    if unknown:
        section = unknown[0].partition(".")[0] + "."
        raise RefusedError(f"--group-by {','.join(group_by)}: no key {unknown[0]!r} in any of the {len(anytime)} anytime runs; their keys "
                           f"in {section}*: {', '.join(sorted(k for k in known if k.startswith(section))) or 'none'}")
    methods: dict[str, list[Run]] = defaultdict(list)
    for r in anytime:
        methods[r.label(group_by)].append(r)
    return GroupedRuns(split, dict(methods), [r for r in runs if r.is_opt], tuple(group_by))


def unfinished_warning(run: Run) -> str:
    """The warning for a run that has not trained its whole schedule (a report or an EANN uses it anyway)."""
    return (f"run {run.name} is unfinished (its summary is of epoch {run.epochs} of {run.config.get('train.epochs')}); "
            "its numbers are provisional")


def grouping_warnings(g: GroupedRuns, runs: Sequence[Run]) -> list[str]:
    """Unfinished runs, config keys on which the runs of a data set disagree (``runs`` may include
    EANN members that are no method), and methods with several runs of one setting."""
    out = [unfinished_warning(r) for r in runs if not r.completed]
    out += _protocol_mismatches(runs, g.group_by)
    for name in g.method_names:
        seen: dict[tuple, str] = {}
        for r in g.methods[name]:
            if r.setting in seen:
                out.append(f"method {name} has several runs for setting {setting_text(r)} "
                           f"({seen[r.setting]}, {r.name}); tables and win rates use their mean")
            seen.setdefault(r.setting, r.name)
    return out
