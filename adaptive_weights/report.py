"""Run directories -> the paper's tables and plots (spec §5.3-§5.5; DESIGN.md "Evaluation").

A report answers "which weighting rule gives better anytime predictions, and is the difference
real?" from run directories alone (``config.json``, ``summary.json``, ``metrics.jsonl``), so it can
be redrawn at any time without training. It holds

(a) the per-exit error of every method (mean over seeds) and the OPT baselines;
(b) the relative error increase against OPT at the milestones q in {1/4, 1/2, 3/4, 1};
(c) win rates of every pair of methods over matched settings, with one-sided p-values;
(d) EANN chains: the error-versus-MACs step curve, OPT+ and the cost-inflation factors;
and PNG plots: error versus MACs per model (every method, OPT, EANN) and the probability stack of
every sampling strategy.

Runs are grouped into *methods* by config keys (``--group-by``, default ``strategy.name``; several
keys join with ``+``, e.g. ``sieve+aann``). A *setting* is (data set, model, seed): win rates
compare methods on the settings both have. OPT runs are recognised by a single-exit scheme
(``optimal@i``) and matched to anytime runs by data set, model (the period does not matter for a
single exit) and seed. Anything that cannot be computed (a missing OPT run, an exit that does not
cover a milestone, runs trained with different settings, an unfinished run) is listed in the
report's "Warnings" section, never skipped in silence.

:func:`build_report` computes everything (plain data, testable); :func:`write_report` renders it.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

from ._io import atomic_write_text
from .eann import (
    CostInflation,
    Member,
    StepCurve,
    cost_inflation,
    eann_curve,
    member_from_errors,
    opt_plus_curve,
)
from .runs import (
    EXECUTION_KEYS,
    MODEL_KEYS,
    Run,
    find_run_dirs,
    load_run,
    load_runs,
    model_label,
)

__all__ = [
    "MACS_CONVENTION",
    "Run",
    "Plot",
    "Report",
    "load_run",
    "find_run_dirs",
    "load_runs",
    "EannAnalysis",
    "eann_analysis",
    "eann_markdown",
    "eann_plot_curves",
    "eann_rows",
    "build_report",
    "write_report",
    "cli_main",
]

MACS_CONVENTION = ("MACs are multiply-accumulates of the convolution and linear layers (trunk up to the "
                   "exit plus every head evaluated so far); batch norm, ReLU, pooling and additions are not "
                   "counted.")

QUANTILES = (Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), Fraction(1))
_Q_LABEL = {Fraction(1, 4): "1/4", Fraction(1, 2): "1/2", Fraction(3, 4): "3/4", Fraction(1): "1"}


# --------------------------------------------------------------------------------- report data
@dataclass(frozen=True)
class Plot:
    """A figure to draw: ``kind`` is ``error_vs_macs`` (``data`` = {label: (macs, errors)}, ``step``
    = labels drawn as step curves) or ``probability_stack`` (``data`` = metrics rows)."""

    filename: str
    kind: str
    title: str
    data: Any
    step: tuple[str, ...] = ()


@dataclass
class Report:
    """Everything a report contains, before rendering: markdown text, CSV tables, plots."""

    markdown: str
    tables: dict[str, list[dict[str, Any]]]
    plots: list[Plot]
    warnings: list[str] = field(default_factory=list)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def _display_path(path: Path) -> str:
    """Relative to the working directory when below it (reports are usually made from the repo root)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _protocol_mismatches(runs: Sequence[Run]) -> list[str]:
    """Config keys (other than method, setting and execution keys) on which runs of one data set
    disagree: their comparison (win rates, OPT, EANN) would not be like for like."""
    skip = set(EXECUTION_KEYS) | set(MODEL_KEYS) | {"train.seed"}
    by_data: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_data[str(r.config.get("data.name"))].append(r)
    out = []
    for data_name, group in sorted(by_data.items()):
        keys = sorted({k for r in group for k in r.config if k not in skip and not k.startswith(("scheme.", "strategy."))})
        for key in keys:
            by_value: dict[str, list[str]] = defaultdict(list)
            for r in group:
                by_value[repr(r.config.get(key))].append(r.name)
            if len(by_value) > 1:
                parts = "; ".join(f"{v} in {len(names)} run(s) ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                                  for v, names in sorted(by_value.items(), key=lambda kv: -len(kv[1])))
                out.append(f"mismatched setting `{key}` among the {data_name} runs: {parts}")
    return out


def _opt_table(opt_runs: Sequence[Run], split: str) -> dict[tuple, dict[int, list[tuple[Run, float]]]]:
    """opt_key -> unit -> [(run, error)]."""
    table: dict[tuple, dict[int, list[tuple[Run, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in opt_runs:
        table[r.opt_key][r.exit_units[0]].append((r, r.split_errors(split)[0]))
    return table


def _without_period(model_key: tuple) -> tuple:
    return tuple(v for k, v in zip(MODEL_KEYS, model_key, strict=True) if k != "model.period")


def _setting_text(run: Run) -> str:
    return f"{run.model_label} seed {run.seed}"


EANN_EXPLANATION = (
    "Exponentially deepening members run one after another (spec §5.5). While member k runs, its latest exit is "
    "output only if its *validation* error beats the best finished member's final; the error shown is the "
    "output's error on the report's split. Exit i of member k costs the full MACs of members 0..k-1 plus its own "
    "MACs up to exit i. OPT+ is, at every cost, the best OPT net affordable (the OPT runs of the same data set, "
    "mean over seeds). The cost-inflation factor at an OPT+ breakpoint B is T(B)/B, with T(B) the smallest cost "
    "at which the EANN is at least as good as OPT+ at B; worst = the maximum over breakpoints (the supremum over "
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
    if not member_runs:
        raise ValueError("an EANN needs at least one member run directory")
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
    points: dict[tuple[str, int], tuple[int, list[float]]] = {}
    for r in opt_runs:
        if r.config.get("data.name") == data_name:
            key = (model_label({**r.config, "model.period": 1}), r.exit_units[0])
            points.setdefault(key, (r.exit_macs[0], []))[1].append(r.split_errors(split)[0])
    opt_plus = inflation = None
    if points:
        keys = sorted(points, key=lambda k: (points[k][0], k))
        opt_plus = opt_plus_curve([(points[k][0], _mean(points[k][1])) for k in keys],
                                  names=[f"OPT {label} unit {u}" for label, u in keys])
        inflation = cost_inflation(curve, opt_plus)
    else:
        notes.append(f"no OPT run on {data_name}: OPT+ and the cost-inflation factors are n/a")
    return EannAnalysis(members, curve, opt_plus, inflation, notes)


def eann_rows(curve: StepCurve) -> list[dict[str, Any]]:
    """CSV rows of a step curve: where the output changes, its cost, error and source exit."""
    return [{"macs": cost, "error": e, "member": src, "exit": k}
            for cost, e, (src, k) in zip(curve.costs, curve.errors, curve.sources, strict=True)]


def eann_markdown(analysis: EannAnalysis) -> list[str]:
    """Markdown lines for one :func:`eann_analysis`: members, the curve, OPT+ and inflation factors."""
    members, curve, opt_plus = analysis.members, analysis.curve, analysis.opt_plus
    ratios = [f"{b.full_cost / a.full_cost:.2f}" for a, b in pairwise(members)]
    md = [f"Members: {', '.join(f'{m.name} ({m.full_cost:,.0f} MACs)' for m in members)}; cost ratios "
          f"{', '.join(ratios) or '-'}.", ""]
    md += _md_table(["MACs", "error (%)", "output", "OPT+ error at this cost (%)"],
                    [[f"{row['macs']:,.0f}", _pct(row["error"]), f"{row['member']} exit {row['exit']}",
                      "n/a" if opt_plus is None or row["macs"] < opt_plus.costs[0] else _pct(opt_plus.error_at(row["macs"]))]
                     for row in eann_rows(curve)])
    if opt_plus is not None:
        md += ["OPT+ (best single-exit OPT net affordable at each cost):", ""]
        md += _md_table(["MACs", "error (%)", "OPT run"],
                        [[f"{row['macs']:,.0f}", _pct(row["error"]), row["member"]] for row in eann_rows(opt_plus)])
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
            [offset + c for c in m.exit_costs], list(m.test_errors))
        offset += m.full_cost
    return curves


@dataclass
class _Context:
    """What every section of a report reads (the grouped runs) and appends to (text, tables, plots)."""

    runs: Sequence[Run]
    group_by: tuple[str, ...]
    split: str
    methods: dict[str, list[Run]]
    opt_runs: list[Run]
    opt: dict[tuple, dict[int, list[tuple[Run, float]]]]
    md: list[str] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    curves: dict[tuple, dict[str, tuple[list[float], list[float]]]] = field(default_factory=dict)
    eann_curves: dict[str, list[tuple[str, StepCurve]]] = field(default_factory=lambda: defaultdict(list))

    @property
    def method_names(self) -> list[str]:
        return sorted(self.methods)

    @property
    def model_keys(self) -> list[tuple]:
        return sorted({r.model_key for rs in self.methods.values() for r in rs}, key=str)

    def label_of(self, model_key: tuple) -> str:
        return next(r.model_label for rs in self.methods.values() for r in rs if r.model_key == model_key)

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


def build_report(
    runs: Sequence[Run],
    *,
    group_by: Sequence[str] = ("strategy.name",),
    split: str = "test",
    eann_chains: Sequence[Sequence[Run]] = (),
    title: str = "Anytime prediction report",
) -> Report:
    """Compute every table and plot of a report from loaded runs (see the module docstring)."""
    if split not in ("test", "val"):
        raise ValueError(f"--split {split!r}; allowed: test, val")
    group_by = tuple(group_by)
    if not group_by:
        raise ValueError("--group-by needs at least one config key (e.g. strategy.name)")
    ann_runs = [r for r in runs if not r.is_opt]
    opt_runs = [r for r in runs if r.is_opt]
    if not ann_runs and not eann_chains:
        raise ValueError("no anytime run among the run directories (only OPT runs); nothing to report")
    methods: dict[str, list[Run]] = defaultdict(list)
    for r in ann_runs:
        methods[r.label(group_by)].append(r)
    ctx = _Context(runs, group_by, split, dict(methods), opt_runs, _opt_table(opt_runs, split))

    for r in runs:
        if not r.completed:
            ctx.warnings.append(f"run {r.name} is unfinished (its summary is of epoch {r.epochs} of "
                                f"{r.config.get('train.epochs')}); its numbers are provisional")
    given = {r.path for r in runs}
    ctx.warnings += _protocol_mismatches(list(runs) + [m for c in eann_chains for m in c if m.path not in given])
    for name in ctx.method_names:
        seen: dict[tuple, str] = {}
        for r in methods[name]:
            if r.setting in seen:
                ctx.warnings.append(f"method {name} has several runs for setting {_setting_text(r)} "
                                    f"({seen[r.setting]}, {r.name}); tables and win rates use their mean")
            seen.setdefault(r.setting, r.name)

    ctx.md += [f"# {title}", "",
               f"{len(ann_runs)} anytime run(s) in {len(methods)} method(s) grouped by `{'+'.join(group_by)}`, "
               f"{len(opt_runs)} OPT run(s), {len(eann_chains)} EANN chain(s). Errors are top-1 errors in percent "
               f"on the **{split}** split after the last epoch (spec §5.3). " + MACS_CONVENTION, ""]
    _section_exit_errors(ctx)
    _section_opt(ctx)
    _section_relative_increase(ctx)
    _section_win_rates(ctx)
    _section_eann(ctx, eann_chains)
    _section_plots(ctx)
    ctx.warnings = list(dict.fromkeys(ctx.warnings))  # one line per distinct problem, in order
    ctx.md += ["## Warnings", ""]
    ctx.md += ([f"- {w}" for w in ctx.warnings] if ctx.warnings
               else ["None: every milestone had its OPT run and every setting matched."])
    ctx.md += ["", "## Runs", ""]
    ctx.md += _md_table(["run", "method", "model", "seed", "epochs", "path"],
                        [[r.name, "OPT" if r.is_opt else r.label(group_by), r.model_label, r.seed, r.epochs,
                          _display_path(r.path)]
                         for r in sorted(runs, key=lambda r: (r.is_opt, r.name))])
    return Report("\n".join(ctx.md) + "\n", ctx.tables, ctx.plots, ctx.warnings)


def _section_exit_errors(ctx: _Context) -> None:
    """(a) Mean error of every exit per method and model; long-format CSV of every run's exits."""
    from .metrics import error_cost_auc

    split = ctx.split
    ctx.md += ["## (a) Error of every exit", "",
               "Mean over the seeds of each method (the `seeds` column counts them). Column `uI (M)`: the exit "
               "after unit I (0-based) and its MACs in millions. `AUC` is the mean error over budgets spread "
               "uniformly between the first and the last exit's MACs, each exit's error held until the next exit "
               "(the step curve an anytime net delivers); lower is better.", ""]
    rows_csv: list[dict[str, Any]] = []
    for mk in ctx.model_keys:
        groups: dict[tuple[str, tuple[int, ...]], list[Run]] = defaultdict(list)
        for name in ctx.method_names:
            for r in ctx.methods[name]:
                if r.model_key == mk:
                    groups[(name, r.exit_units)].append(r)
        ref = max((rs[0] for rs in groups.values()), key=lambda r: len(r.exit_units))
        header = (["method", "seeds"]
                  + [f"u{u} ({m / 1e6:.3g}M)" for u, m in zip(ref.exit_units, ref.exit_macs, strict=True)] + ["AUC"])
        body = []
        curves: dict[str, tuple[list[float], list[float]]] = {}
        for (name, units), rs in sorted(groups.items()):
            errs = [_mean(col) for col in zip(*(r.split_errors(split) for r in rs), strict=True)]
            macs = list(rs[0].exit_macs)
            by_unit = dict(zip(units, errs, strict=True))
            auc = error_cost_auc(macs, errs) if len(macs) > 1 else errs[0]
            body.append([name, len(rs)] + [_pct(by_unit[u]) if u in by_unit else "-" for u in ref.exit_units]
                        + [_pct(auc)])
            curves[name if name not in curves else f"{name} (exits at units {list(units)})"] = (macs, errs)
            for r in rs:
                for k, (u, m, e) in enumerate(zip(r.exit_units, r.exit_macs, r.split_errors(split), strict=True)):
                    rows_csv.append({"run": r.name, "method": name, "model": r.model_label, "seed": r.seed,
                                     "exit": k, "unit": u, "macs": m, f"{split}_error": e})
        ctx.md += [f"### {ctx.label_of(mk)}", ""] + _md_table(header, body)
        ctx.curves[mk] = curves
    for r in ctx.opt_runs:
        rows_csv.append({"run": r.name, "method": "OPT", "model": r.model_label, "seed": r.seed, "exit": 0,
                         "unit": r.exit_units[0], "macs": r.exit_macs[0], f"{split}_error": r.split_errors(split)[0]})
    ctx.tables["per_exit_errors"] = rows_csv


def _opt_points(ctx: _Context, model_key: tuple) -> dict[int, tuple[int, list[float]]]:
    """OPT runs of ``model_key`` (any period, every seed): unit -> (MACs, errors)."""
    out: dict[int, tuple[int, list[float]]] = {}
    for key, units in ctx.opt.items():
        if key[:-1] == _without_period(model_key):
            for u, entries in units.items():
                out.setdefault(u, (entries[0][0].exit_macs[0], []))[1].extend(e for _, e in entries)
    return out


def _section_opt(ctx: _Context) -> None:
    ctx.md += ["### OPT baselines", "",
               "OPT at unit i: the same network trained with a single exit at unit i (scheme `optimal@i`, strategy "
               "`static`; spec §5.4), mean over seeds.", ""]
    rows = defaultdict(list)
    for r in ctx.opt_runs:
        label = model_label({**r.config, "model.period": 1})
        rows[(label, r.exit_units[0], r.exit_macs[0])].append(r.split_errors(ctx.split)[0])
    if rows:
        ctx.md += _md_table(["model", "unit", "MACs", "seeds", "error (%)"],
                            [[label, u, f"{m:,}", len(es), _pct(_mean(es))] for (label, u, m), es in sorted(rows.items())])
    else:
        ctx.md += ["No OPT run was given, so every relative increase is n/a (train them with "
                   "`adaptive-weights opt --like RUN_DIR`).", ""]


def _section_relative_increase(ctx: _Context) -> None:
    """(b) (e_ANN - e_OPT) / e_OPT at the milestones; n/a (and a warning) where OPT or the exit is missing."""
    ctx.md += ["## (b) Relative error increase against OPT", "",
               "At milestone q the anytime net's error at unit idx_q = round_half_up(q*L) - 1 (interpolated linearly "
               "in depth between its neighbouring exits when no exit sits there) is compared with OPT at idx_q: "
               "(e_ANN - e_OPT) / e_OPT, in percent; lower is better, 0 means as good as a network trained for that "
               "depth alone. Mean over seeds, pooled over models in the `all settings` rows; `n/a` when some run "
               "lacks its OPT run or an exit around idx_q (see Warnings).", ""]
    rows: list[dict[str, Any]] = []
    rel: dict[tuple[str, tuple], dict[Fraction, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    missing: set[str] = set()
    for name in ctx.method_names:
        for r in ctx.methods[name]:
            for q, idx, e_ann in ctx.milestone_errors(r):
                entries = ctx.opt.get(r.opt_key, {}).get(idx)
                e_opt = _mean([e for _, e in entries]) if entries else None
                value, note = None, ""
                if e_ann is None:
                    note = f"{r.name} has no exit at or around unit {idx} (exits at units {list(r.exit_units)})"
                    ctx.warnings.append(note)
                elif e_opt is None:
                    note = f"missing OPT at unit {idx} for {_setting_text(r)}"
                    missing.add(note)
                elif e_opt <= 0:
                    note = f"OPT error at unit {idx} for {_setting_text(r)} is 0: the relative increase is undefined"
                    ctx.warnings.append(note)
                else:
                    value = (e_ann - e_opt) / e_opt
                rel[(name, r.model_key)][q].append(value)
                rows.append({"run": r.name, "method": name, "model": r.model_label, "seed": r.seed,
                             "q": _Q_LABEL[q], "unit": idx, "ann_error": e_ann, "opt_error": e_opt,
                             "relative_increase": value, "note": note})
    ctx.warnings += sorted(missing)
    ctx.tables["relative_increase"] = rows

    def cell(values: list[float | None]) -> str:
        return "n/a" if not values or any(v is None for v in values) else f"{100 * _mean(values):+.1f}"

    body = [[ctx.label_of(mk), name] + [cell(rel[(name, mk)][q]) for q in QUANTILES]
            for mk in ctx.model_keys for name in ctx.method_names if (name, mk) in rel]
    for name in ctx.method_names:
        body.append(["**all settings**", name]
                    + [cell([v for (n, _), d in rel.items() if n == name for v in d[q]]) for q in QUANTILES])
    ctx.md += _md_table(["model", "method"] + [f"q={_Q_LABEL[q]} (%)" for q in QUANTILES], body)


def _section_win_rates(ctx: _Context) -> None:
    """(c) Every pair of methods at every milestone over their shared settings, with p-values."""
    from .metrics import win_rate_table

    ctx.md += ["## (c) Win rates", "",
               "For every pair of methods A, B and milestone q: in how many matched settings (same data set, model "
               "and seed) A's error at idx_q is lower than B's (`A wins`), and the reverse (`B wins`). Ties are "
               "dropped; n = A wins + B wins. `p(A>B)` is the one-sided p-value of 'A beats B more often than not': "
               "Hoeffding is the paper's bound exp(-2n(k/n - 1/2)^2) with k = A wins (1 when k/n <= 1/2); exact is "
               "the sign test P[Binomial(n, 1/2) >= k], never larger. `p(B>A)` swaps the roles. A small p says the "
               "difference is unlikely to be chance; with few settings no p can be small.", ""]
    results: dict[str, dict[tuple, dict[Fraction, float]]] = {}
    for name in ctx.method_names:
        per_setting: dict[tuple, list[dict[Fraction, float]]] = defaultdict(list)
        for r in ctx.methods[name]:
            per_setting[r.setting].append({q: e for q, _, e in ctx.milestone_errors(r) if e is not None})
        results[name] = {s: {q: _mean([d[q] for d in ds]) for q in set.intersection(*(set(d) for d in ds))}
                         for s, ds in per_setting.items()}
    rows: list[dict[str, Any]] = []
    body = []
    names = ctx.method_names
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = [s for s in results[a] if s in results[b]]
            only = len(results[a]) + len(results[b]) - 2 * len(shared)
            if only:
                ctx.warnings.append(f"win rate {a} vs {b}: {only} setting(s) have only one of the two methods and "
                                    "are left out of the comparison")
            if not shared:
                ctx.warnings.append(f"win rate {a} vs {b}: no common setting, no comparison")
                continue
            qs = [q for q in QUANTILES if all(q in results[m][s] for m in (a, b) for s in shared)]
            sub = {m: {s: results[m][s] for s in shared} for m in (a, b)}
            table_ab, table_ba = win_rate_table(sub, a, b, qs), win_rate_table(sub, b, a, qs)
            for q in qs:
                ab, ba = table_ab[q], table_ba[q]
                body.append([f"{a} vs {b}", _Q_LABEL[q], ab.wins, ba.wins, ab.ties,
                             "n/a" if ab.n == 0 else f"{ab.rate:.2f}",
                             f"{ab.hoeffding_p:.3g} / {ab.binomial_p:.3g}", f"{ba.hoeffding_p:.3g} / {ba.binomial_p:.3g}"])
                rows.append({"a": a, "b": b, "q": _Q_LABEL[q], "settings": len(shared), "a_wins": ab.wins,
                             "b_wins": ba.wins, "ties": ab.ties, "n": ab.n, "a_win_rate": None if ab.n == 0 else ab.rate,
                             "hoeffding_p_a_better": ab.hoeffding_p, "binomial_p_a_better": ab.binomial_p,
                             "hoeffding_p_b_better": ba.hoeffding_p, "binomial_p_b_better": ba.binomial_p})
    if body:
        ctx.md += _md_table(["A vs B", "q", "A wins", "B wins", "ties", "A win rate", "p(A>B) Hoeffding / exact",
                             "p(B>A) Hoeffding / exact"], body)
    else:
        ctx.md += ["No pair of methods shares a setting." if len(names) > 1 else "Only one method: nothing to compare.", ""]
    ctx.tables["win_rates"] = rows


def _section_eann(ctx: _Context, chains: Sequence[Sequence[Run]]) -> None:
    """(d) Every EANN chain: its step curve, OPT+ and the cost-inflation factors."""
    if not chains:
        return
    ctx.md += ["## (d) EANN", "", EANN_EXPLANATION, ""]
    rows: list[dict[str, Any]] = []
    for c, chain in enumerate(chains):
        label = f"EANN {c}" if len(chains) > 1 else "EANN"
        a = eann_analysis(chain, ctx.opt_runs, ctx.split)
        ctx.md += [f"### {label}: {' -> '.join(model_label(r.config) for r in chain)}", ""] + eann_markdown(a)
        ctx.warnings += [f"{label}: {note}" for note in a.notes]
        rows += [{"chain": label, **row} for row in eann_rows(a.curve)]
        data_name = chain[0].config.get("data.name")
        ctx.eann_curves[data_name].append((label, a.curve))
        ctx.plots.append(Plot(f"eann_{c}.png", "error_vs_macs", f"{label} on {data_name} ({ctx.split} error)",
                              eann_plot_curves(a, label), step=(label, "OPT+")))
    ctx.tables["eann"] = rows


def _section_plots(ctx: _Context) -> None:
    ctx.md += ["## Plots", "",
               "Error versus MACs: each method's exits (mean over seeds), OPT (one point per single-exit depth, mean "
               "over seeds, joined) and the EANN of the same data set as a step curve (the anytime error at a budget "
               "is that of the last output).", ""]
    for mk in ctx.model_keys:
        curves = dict(ctx.curves[mk])
        points = _opt_points(ctx, mk)
        if points:
            units = sorted(points)
            curves["OPT"] = ([points[u][0] for u in units], [_mean(points[u][1]) for u in units])
        step = []
        for label, curve in ctx.eann_curves.get(mk[0], []):
            curves[label] = (list(curve.costs), list(curve.errors))
            step.append(label)
        ctx.plots.append(Plot(f"error_vs_macs_{_slug(ctx.label_of(mk))}.png", "error_vs_macs",
                              f"{ctx.label_of(mk)} ({ctx.split} error)", curves, step=tuple(step)))
    ctx.md += [f"![{p.title}]({p.filename})\n" for p in ctx.plots if p.kind == "error_vs_macs"]
    ctx.md += ["Probability stacks: the sampling distribution over exits at the end of every epoch (early exits "
               "light, the final exit dark) for every method whose strategy is not `static`, from its first run "
               "(lowest seed) of each model.", ""]
    from .logging import read_metrics

    for name in ctx.method_names:
        for mk in ctx.model_keys:
            rs = sorted((r for r in ctx.methods[name] if r.model_key == mk), key=lambda r: (r.seed, r.name))
            if not rs or rs[0].config.get("strategy.name") == "static":
                continue
            path = rs[0].path / "metrics.jsonl"
            if not path.is_file():
                ctx.warnings.append(f"{rs[0].name}: no metrics.jsonl, so no probability stack for {name}")
                continue
            p = Plot(f"probability_stack_{_slug(name)}_{_slug(ctx.label_of(mk))}.png", "probability_stack",
                     f"{name}, {ctx.label_of(mk)} ({rs[0].name})", read_metrics(path))
            ctx.plots.append(p)
            ctx.md += [f"![{p.title}]({p.filename})", ""]


def _factor(x: float) -> str:
    return "inf (the EANN never reaches that error)" if math.isinf(x) else f"{x:.2f}x"


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def write_report(report: Report, out_dir: str | Path, *, markdown_name: str = "report.md") -> list[Path]:
    """Write the markdown, one CSV per table and the PNG plots into ``out_dir`` (each atomically)."""
    from .plots import plot_error_vs_macs, plot_probability_stack, save_figure

    out_dir = Path(out_dir)
    written = [atomic_write_text(out_dir / markdown_name, report.markdown)]
    for name, rows in report.tables.items():
        written.append(atomic_write_text(out_dir / f"{name}.csv", _csv_text(rows)))
    for p in report.plots:
        if p.kind == "error_vs_macs":
            fig = plot_error_vs_macs(p.data, title=p.title, step=p.step)
        else:
            fig = plot_probability_stack(p.data, title=p.title)
        written.append(save_figure(fig, out_dir / p.filename))
    return written


def cli_main(argv: Sequence[str]) -> int:
    """``adaptive-weights report RUN_DIR... [--group-by KEYS] [--split S] [--eann DIR...] [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="adaptive-weights report",
        description="Tables (markdown + CSV) and plots (PNG) from run directories: per-exit errors, relative "
                    "increase against OPT at the milestones, win rates with p-values, EANN against OPT+.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories, or directories holding run directories (searched recursively)")
    parser.add_argument("--group-by", default="strategy.name",
                        help="config key(s), comma-separated, whose values name a method (default strategy.name; "
                             "e.g. scheme.name,strategy.name gives sieve+aann)")
    parser.add_argument("--split", default="test", choices=["test", "val"], help="which errors to report")
    parser.add_argument("--eann", nargs="+", action="append", default=[], metavar="MEMBER_RUN_DIR",
                        help="an EANN chain: member run directories in order of cost (repeat for several chains)")
    parser.add_argument("--out", default="results/reports/latest", help="output directory")
    parser.add_argument("--title", default="Anytime prediction report")
    args = parser.parse_args(list(argv))
    group_by = [k.strip() for k in args.group_by.split(",") if k.strip()]
    try:
        runs = load_runs(args.runs)
        chains = [[load_run(p) for p in chain] for chain in args.eann]
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    report = build_report(runs, group_by=group_by, split=args.split, eann_chains=chains, title=args.title)
    written = write_report(report, args.out)
    print(f"report: {Path(args.out) / 'report.md'} ({len(written)} files)")
    for w in report.warnings:
        print(f"warning: {w}")
    return 0
