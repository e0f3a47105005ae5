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
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, read_json
from .schemes import is_single_exit

__all__ = [
    "MACS_CONVENTION",
    "Run",
    "Plot",
    "Report",
    "load_run",
    "find_run_dirs",
    "load_runs",
    "eann_analysis",
    "build_report",
    "write_report",
    "cli_main",
]

MACS_CONVENTION = ("MACs are multiply-accumulates of the convolution and linear layers (trunk up to the "
                   "exit plus that exit's head); batch norm, ReLU, pooling and additions are not counted.")

# Keys that identify a setting (with train.seed) and that OPT matching uses (without the period).
MODEL_KEYS = ("data.name", "model.arch", "model.n", "model.c", "model.period", "model.depth", "model.unit_style")
OPT_MODEL_KEYS = tuple(k for k in MODEL_KEYS if k != "model.period")
# Keys that change only where or how fast a run executes, never what it computes.
_EXECUTION_KEYS = {
    "name", "data.root", "data.download", "data.num_workers", "train.device", "train.num_threads",
    "train.progress", "train.compile", "train.channels_last", "train.checkpoint_minutes", "train.eval_splits",
}
QUANTILES = (Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), Fraction(1))
_Q_LABEL = {Fraction(1, 4): "1/4", Fraction(1, 2): "1/2", Fraction(3, 4): "3/4", Fraction(1): "1"}


# --------------------------------------------------------------------------------- run directories
@dataclass(frozen=True)
class Run:
    """What a report needs from one run directory (``summary.json`` and ``config.json``)."""

    path: Path
    name: str
    config: dict[str, Any]
    num_units: int
    exit_units: tuple[int, ...]
    exit_macs: tuple[int, ...]
    errors: dict[str, list[float] | None]
    completed: bool
    epochs: int

    @property
    def is_opt(self) -> bool:
        return is_single_exit(str(self.config.get("scheme.name", "")))

    @property
    def seed(self) -> int:
        return int(self.config.get("train.seed", 0))

    @property
    def model_key(self) -> tuple:
        return tuple(self.config.get(k) for k in MODEL_KEYS)

    @property
    def opt_key(self) -> tuple:
        """(data, model without period, seed): how OPT runs are matched to anytime runs."""
        return tuple(self.config.get(k) for k in OPT_MODEL_KEYS) + (self.seed,)

    @property
    def setting(self) -> tuple:
        """(data, model, seed): what two methods must share to be compared in a win rate."""
        return self.model_key + (self.seed,)

    @property
    def model_label(self) -> str:
        return model_label(self.config)

    def split_errors(self, split: str) -> list[float]:
        errs = self.errors.get(split)
        if errs is None:
            raise ValueError(f"{self.path}: summary.json has no {split!r} errors (errors.{split} is null); "
                             f"choose another --split or train with train.eval_splits including {split!r}")
        return list(errs)

    def label(self, keys: Sequence[str]) -> str:
        """Method label: the values of ``keys`` joined with ``+`` (``sieve+aann``)."""
        missing = [k for k in keys if k not in self.config]
        if missing:
            raise ValueError(f"--group-by {','.join(keys)}: run {self.name} has no key {missing[0]!r}; "
                             f"available keys: {', '.join(sorted(self.config))}")
        return "+".join(str(self.config[k]) for k in keys)


def model_label(config: dict[str, Any]) -> str:
    """``digits/resnet n3 c16`` (``p2`` appended for a prediction period 2)."""
    arch = config.get("model.arch")
    if arch == "resnet":
        body = f"resnet n{config.get('model.n')} c{config.get('model.c')}"
        if config.get("model.period", 1) != 1:
            body += f" p{config.get('model.period')}"
    else:
        body = f"{arch}{config.get('model.depth')}"
    return f"{config.get('data.name')}/{body}"


def load_run(path: str | Path) -> Run:
    """Read one run directory; a missing or corrupt file raises ``ValueError`` naming it."""
    path = Path(path)
    try:
        summary = read_json(path / "summary.json")
    except FileNotFoundError:
        raise ValueError(f"{path}: not a finished-epoch run directory (no summary.json)") from None
    for key in ("exit_units", "exit_macs", "errors", "num_units", "config"):
        if key not in summary:
            raise ValueError(f"{path / 'summary.json'}: missing key {key!r}")
    config = dict(summary["config"])
    if (path / "config.json").is_file():
        from .config import load_config_file

        config = {**load_config_file(path / "config.json"), **config}
    return Run(
        path=path, name=path.name, config=config, num_units=int(summary["num_units"]),
        exit_units=tuple(int(u) for u in summary["exit_units"]),
        exit_macs=tuple(int(m) for m in summary["exit_macs"]),
        errors=dict(summary["errors"]), completed=bool(summary.get("completed", False)),
        epochs=int(summary.get("epochs", 0)),
    )


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories among ``paths``: a path holding ``summary.json`` is one; any other directory
    contributes the run directories below it (at any depth), in sorted order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "summary.json").is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(s.parent for s in p.rglob("summary.json"))
            if not found:
                raise ValueError(f"{p}: no run directory (summary.json) under it")
            out.extend(found)
        else:
            raise ValueError(f"{p}: no such run directory")
    unique = list(dict.fromkeys(q.resolve() for q in out))
    return unique


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    return [load_run(p) for p in find_run_dirs(paths)]


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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _protocol_mismatches(runs: Sequence[Run]) -> list[str]:
    """Config keys (other than method, setting and execution keys) on which runs disagree."""
    skip = set(_EXECUTION_KEYS) | set(MODEL_KEYS) | {"train.seed"}
    keys = sorted({k for r in runs for k in r.config
                   if k not in skip and not k.startswith(("scheme.", "strategy."))})
    out = []
    for key in keys:
        by_value: dict[str, list[str]] = defaultdict(list)
        for r in runs:
            by_value[repr(r.config.get(key))].append(r.name)
        if len(by_value) > 1:
            parts = "; ".join(f"{v} in {len(names)} run(s) ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                              for v, names in sorted(by_value.items(), key=lambda kv: -len(kv[1])))
            out.append(f"mismatched setting `{key}`: {parts}")
    return out


def _opt_table(opt_runs: Sequence[Run], split: str) -> dict[tuple, dict[int, list[tuple[Run, float]]]]:
    """opt_key -> unit -> [(run, error)]."""
    table: dict[tuple, dict[int, list[tuple[Run, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in opt_runs:
        table[r.opt_key][r.exit_units[0]].append((r, r.split_errors(split)[0]))
    return table


def _without_period(model_key: tuple) -> tuple:
    return tuple(v for k, v in zip(MODEL_KEYS, model_key) if k != "model.period")


def _setting_text(run: Run) -> str:
    return f"{run.model_label} seed {run.seed}"


def eann_analysis(member_runs: Sequence[Run], opt_runs: Sequence[Run], split: str = "test") -> dict[str, Any]:
    """EANN of ``member_runs`` (in order) against OPT+ of the OPT runs of the same data set.

    Returns ``{"members", "curve", "opt_plus" (or None), "inflation" (or None), "notes"}``;
    OPT errors of several seeds at the same model and unit are averaged into one OPT+ point.
    """
    from .eann import cost_inflation, eann_curve, members_from_run_dirs, opt_plus_curve

    if not member_runs:
        raise ValueError("an EANN needs at least one member run directory")
    data = {r.config.get("data.name") for r in member_runs}
    if len(data) != 1:
        raise ValueError(f"EANN members must share one data set; got {sorted(map(str, data))}")
    members = members_from_run_dirs([r.path for r in member_runs], split=split)
    curve = eann_curve(members)
    notes: list[str] = []
    costs = [m.full_cost for m in members]
    if any(b <= a for a, b in zip(costs, costs[1:])):
        notes.append(f"EANN members are not in increasing cost order (full MACs {costs}); the chain runs them as given")
    (data_name,) = data
    points: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for r in opt_runs:
        if r.config.get("data.name") == data_name:
            key = (model_label(r.config), r.exit_units[0])
            points[key].append((r.exit_macs[0], r.split_errors(split)[0]))
    opt_plus = inflation = None
    if points:
        keys = sorted(points, key=lambda k: (points[k][0][0], k))
        opt_plus = opt_plus_curve([(points[k][0][0], _mean([e for _, e in points[k]])) for k in keys],
                                  names=[f"OPT {label} unit {u}" for label, u in keys])
        inflation = cost_inflation(curve, opt_plus)
    else:
        notes.append(f"no OPT run on {data_name}: OPT+ and the cost-inflation factors are n/a")
    return {"members": members, "curve": curve, "opt_plus": opt_plus, "inflation": inflation, "notes": notes}


def build_report(
    runs: Sequence[Run],
    *,
    group_by: Sequence[str] = ("strategy.name",),
    split: str = "test",
    eann_chains: Sequence[Sequence[Run]] = (),
    title: str = "Anytime prediction report",
) -> Report:
    """Compute every table and plot of a report from loaded runs (see the module docstring)."""
    from .metrics import error_at_depth, error_cost_auc, milestone_indices, win_rate_table

    if split not in ("test", "val"):
        raise ValueError(f"--split {split!r}; allowed: test, val")
    group_by = tuple(group_by)
    if not group_by:
        raise ValueError("--group-by needs at least one config key (e.g. strategy.name)")
    ann_runs = [r for r in runs if not r.is_opt]
    opt_runs = [r for r in runs if r.is_opt]
    if not ann_runs and not eann_chains:
        raise ValueError("no anytime run among the run directories (only OPT runs); nothing to report")
    warnings: list[str] = []
    for r in runs:
        if not r.completed:
            warnings.append(f"run {r.name} is unfinished (its summary is of epoch {r.epochs} of "
                            f"{r.config.get('train.epochs')}); its numbers are provisional")
    given = {r.path for r in runs}
    all_runs = list(runs) + [m for chain in eann_chains for m in chain if m.path not in given]
    warnings += _protocol_mismatches(all_runs)

    methods: dict[str, list[Run]] = defaultdict(list)
    for r in ann_runs:
        methods[r.label(group_by)].append(r)
    method_names = sorted(methods)
    for name in method_names:
        seen: dict[tuple, str] = {}
        for r in methods[name]:
            if r.setting in seen:
                warnings.append(f"method {name} has several runs for setting {_setting_text(r)} "
                                f"({seen[r.setting]}, {r.name}); tables average them and win rates use the mean")
            seen.setdefault(r.setting, r.name)
    opt = _opt_table(opt_runs, split)
    opt_by_model: dict[tuple, dict[int, tuple[int, list[float]]]] = defaultdict(dict)  # unit -> (MACs, errors)
    for key, units in opt.items():
        for u, entries in units.items():
            macs, errs = opt_by_model[key[:-1]].setdefault(u, (entries[0][0].exit_macs[0], []))
            errs.extend(e for _, e in entries)
    model_keys = sorted({r.model_key for r in ann_runs}, key=str)
    labels = {r.model_key: r.model_label for r in ann_runs}

    md: list[str] = [f"# {title}", ""]
    md += [f"{len(ann_runs)} anytime run(s) in {len(method_names)} method(s) grouped by "
           f"`{'+'.join(group_by)}`, {len(opt_runs)} OPT run(s), {len(eann_chains)} EANN chain(s). "
           f"Errors are top-1 errors in percent on the **{split}** split after the last epoch (spec §5.3). "
           + MACS_CONVENTION, ""]
    tables: dict[str, list[dict[str, Any]]] = {}
    plots: list[Plot] = []

    # (a) per-exit errors -------------------------------------------------------------------
    md += ["## (a) Error of every exit", "",
           "Mean over the seeds of each method (the `seeds` column counts them). `AUC` is the mean error over "
           "budgets spread uniformly between the first and the last exit's MACs, holding each exit's error "
           "until the next exit (the step curve an anytime net delivers); lower is better.", ""]
    rows_csv: list[dict[str, Any]] = []
    curves_by_model: dict[tuple, dict[str, tuple[list[int], list[float]]]] = {}
    for mk in model_keys:
        groups: dict[tuple[str, tuple[int, ...]], list[Run]] = defaultdict(list)
        for name in method_names:
            for r in methods[name]:
                if r.model_key == mk:
                    groups[(name, r.exit_units)].append(r)
        widest = max((units for _, units in groups), key=len)
        ref = next(r for (_, u), rs in groups.items() if u == widest for r in rs)
        header = ["method", "seeds"] + [f"u{u} ({m / 1e6:.3g}M)" for u, m in zip(ref.exit_units, ref.exit_macs)] + ["AUC"]
        body = []
        curves: dict[str, tuple[list[int], list[float]]] = {}
        for (name, units), rs in sorted(groups.items()):
            errs = [_mean(col) for col in zip(*(r.split_errors(split) for r in rs))]
            macs = list(rs[0].exit_macs)
            by_unit = dict(zip(units, errs))
            auc = error_cost_auc(macs, errs) if len(macs) > 1 else errs[0]
            body.append([name, len(rs)] + [_pct(by_unit.get(u)) if u in by_unit else "-" for u in ref.exit_units]
                        + [_pct(auc)])
            curves[name if name not in curves else f"{name} (exits at units {list(units)})"] = (macs, errs)
            for r in rs:
                for k, (u, m, e) in enumerate(zip(r.exit_units, r.exit_macs, r.split_errors(split))):
                    rows_csv.append({"run": r.name, "method": name, "model": r.model_label, "seed": r.seed,
                                     "exit": k, "unit": u, "macs": m, f"{split}_error": e})
        md += [f"### {labels[mk]}", "", "Columns: exit at unit u (0-based) and its MACs.", ""]
        md += _md_table(header, body)
        curves_by_model[mk] = curves
    for r in opt_runs:
        rows_csv.append({"run": r.name, "method": "OPT", "model": r.model_label, "seed": r.seed, "exit": 0,
                         "unit": r.exit_units[0], "macs": r.exit_macs[0], f"{split}_error": r.split_errors(split)[0]})
    tables["per_exit_errors"] = rows_csv

    md += ["### OPT baselines", "",
           "OPT at unit i: the same network trained with a single exit at unit i (scheme `optimal@i`, strategy "
           "`static`; spec §5.4), mean over seeds.", ""]
    opt_rows = defaultdict(list)
    for r in opt_runs:
        opt_rows[(r.config.get("data.name"), model_label({**r.config, "model.period": 1}), r.exit_units[0],
                  r.exit_macs[0])].append(r.split_errors(split)[0])
    if opt_rows:
        md += _md_table(["model", "unit", "MACs", "seeds", "error (%)"],
                        [[label, u, f"{m:,}", len(es), _pct(_mean(es))]
                         for (_, label, u, m), es in sorted(opt_rows.items(), key=lambda kv: (kv[0][1], kv[0][2]))])
    else:
        md += ["No OPT run was given: relative increases are n/a (train them with `adaptive-weights opt --like RUN_DIR`).", ""]

    # (b) relative increase -------------------------------------------------------------------
    md += ["## (b) Relative error increase against OPT", "",
           "At milestone q the anytime net's error at unit idx_q = round_half_up(q*L) - 1 (interpolated linearly "
           "in depth between its neighbouring exits when no exit sits there) is compared with OPT at idx_q: "
           "(e_ANN - e_OPT) / e_OPT, in percent; lower is better, 0 means as good as a network trained for that "
           "depth alone. Mean over seeds; `n/a` when some seed lacks the OPT run or the exit (see Warnings).", ""]
    rel_rows: list[dict[str, Any]] = []
    rel: dict[tuple[str, tuple], dict[Fraction, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    missing: set[str] = set()
    for name in method_names:
        for r in methods[name]:
            errs = r.split_errors(split)
            for q, idx in zip(QUANTILES, milestone_indices(r.num_units, QUANTILES)):
                e_ann = e_opt = value = None
                note = ""
                try:
                    e_ann = error_at_depth(r.exit_units, errs, idx)
                except ValueError:
                    note = f"{r.name} has no exit at or around unit {idx} (exits at units {list(r.exit_units)})"
                entries = opt.get(r.opt_key, {}).get(idx)
                if entries:
                    e_opt = _mean([e for _, e in entries])
                else:
                    note = note or f"missing OPT at unit {idx} for {_setting_text(r)}"
                    missing.add(f"missing OPT at unit {idx} for {_setting_text(r)}")
                if e_ann is not None and e_opt is not None:
                    if e_opt > 0:
                        value = (e_ann - e_opt) / e_opt
                    else:
                        note = f"OPT error at unit {idx} for {_setting_text(r)} is 0: the relative increase is undefined"
                if note and not note.startswith("missing OPT"):
                    warnings.append(note)
                rel[(name, r.model_key)][q].append(value)
                rel_rows.append({"run": r.name, "method": name, "model": r.model_label, "seed": r.seed,
                                 "q": _Q_LABEL[q], "unit": idx, "ann_error": e_ann, "opt_error": e_opt,
                                 "relative_increase": value, "note": note})
    warnings += sorted(missing)
    tables["relative_increase"] = rel_rows

    def cell(values: list[float | None]) -> str:
        return "n/a" if not values or any(v is None for v in values) else f"{100 * _mean(values):+.1f}"

    body = []
    for mk in model_keys:
        for name in method_names:
            if (name, mk) in rel:
                body.append([labels[mk], name] + [cell(rel[(name, mk)][q]) for q in QUANTILES])
    for name in method_names:
        pooled = {q: [v for (n, _), d in rel.items() if n == name for v in d[q]] for q in QUANTILES}
        body.append(["**all settings**", name] + [cell(pooled[q]) for q in QUANTILES])
    md += _md_table(["model", "method"] + [f"q={_Q_LABEL[q]} (%)" for q in QUANTILES], body)

    # (c) win rates ---------------------------------------------------------------------------
    md += ["## (c) Win rates", "",
           "For every pair of methods A, B and milestone q: in how many matched settings (same data set, model "
           "and seed) A's error at idx_q is lower than B's. Ties are dropped (n counts the decisive settings). "
           "`p(A>B)` tests 'A beats B more often than B beats A' one-sidedly: Hoeffding is the paper's bound "
           "exp(-2n(k/n - 1/2)^2) for k/n > 1/2 (1 otherwise); exact is the sign test P[Binomial(n, 1/2) >= k], "
           "never larger. `p(B>A)` is the same with the roles swapped. Small p: the difference is unlikely to be "
           "chance.", ""]
    results: dict[str, dict[tuple, dict[Fraction, float]]] = defaultdict(dict)
    for name in method_names:
        per_setting: dict[tuple, list[dict[Fraction, float]]] = defaultdict(list)
        for r in methods[name]:
            errs = r.split_errors(split)
            at_q = {}
            for q, idx in zip(QUANTILES, milestone_indices(r.num_units, QUANTILES)):
                try:
                    at_q[q] = error_at_depth(r.exit_units, errs, idx)
                except ValueError:
                    pass
            per_setting[r.setting].append(at_q)
        for s, dicts in per_setting.items():
            common = set.intersection(*(set(d) for d in dicts))
            results[name][s] = {q: _mean([d[q] for d in dicts]) for q in common}
    win_rows: list[dict[str, Any]] = []
    body = []
    for i, a in enumerate(method_names):
        for b in method_names[i + 1:]:
            shared = [s for s in results[a] if s in results[b]]
            only = len(results[a]) + len(results[b]) - 2 * len(shared)
            if only:
                warnings.append(f"win rate {a} vs {b}: {only} setting(s) have only one of the two methods and are "
                                "left out of the comparison")
            if not shared:
                warnings.append(f"win rate {a} vs {b}: no common setting, no comparison")
                continue
            qs = [q for q in QUANTILES if all(q in results[m][s] for m in (a, b) for s in shared)]
            sub = {m: {s: results[m][s] for s in shared} for m in (a, b)}
            table_ab = win_rate_table(sub, a, b, qs)
            table_ba = win_rate_table(sub, b, a, qs)
            for q in qs:
                ab, ba = table_ab[q], table_ba[q]
                rate = "n/a" if ab.n == 0 else f"{ab.rate:.2f}"
                body.append([f"{a} vs {b}", _Q_LABEL[q], ab.wins, ba.wins, ab.ties, rate,
                             f"{ab.hoeffding_p:.3g} / {ab.binomial_p:.3g}", f"{ba.hoeffding_p:.3g} / {ba.binomial_p:.3g}"])
                win_rows.append({"a": a, "b": b, "q": _Q_LABEL[q], "settings": len(shared), "a_wins": ab.wins,
                                 "b_wins": ba.wins, "ties": ab.ties, "n": ab.n,
                                 "a_win_rate": None if ab.n == 0 else ab.rate,
                                 "hoeffding_p_a_better": ab.hoeffding_p, "binomial_p_a_better": ab.binomial_p,
                                 "hoeffding_p_b_better": ba.hoeffding_p, "binomial_p_b_better": ba.binomial_p})
    if body:
        md += _md_table(["A vs B", "q", "A wins", "B wins", "ties", "A win rate", "p(A>B) Hoeffding / exact",
                         "p(B>A) Hoeffding / exact"], body)
    else:
        md += ["No pair of methods shares a setting." if len(method_names) > 1
               else "Only one method: nothing to compare.", ""]
    tables["win_rates"] = win_rows

    # (d) EANN -----------------------------------------------------------------------------------
    eann_curves: dict[str, list[tuple[str, Any]]] = defaultdict(list)  # data name -> [(label, StepCurve)]
    if eann_chains:
        md += ["## (d) EANN", "",
               "Exponentially deepening members run one after another (spec §5.5). While member k runs, its "
               "latest exit is output only if its *validation* error beats the best finished member's final; the "
               "error shown is the output's error on the report's split. Exit i of member k costs the full MACs "
               f"of members 0..k-1 plus its own MACs up to exit i. OPT+ is, at every cost, the best OPT net "
               f"affordable (OPT runs of the same data set). The cost-inflation factor at an OPT+ breakpoint B is "
               f"T(B)/B, T(B) the smallest cost at which the EANN is at least as good; worst = max over breakpoints "
               f"(the supremum), average = their mean.", ""]
        eann_rows: list[dict[str, Any]] = []
        for c, chain in enumerate(eann_chains):
            a = eann_analysis(chain, opt_runs, split)
            data_name = chain[0].config.get("data.name")
            label = f"EANN {c}" if len(eann_chains) > 1 else "EANN"
            members = a["members"]
            ratios = [f"{b.full_cost / m.full_cost:.2f}" for m, b in zip(members, members[1:])]
            md += [f"### {label}: {' -> '.join(model_label(r.config) for r in chain)}", "",
                   f"Members: {', '.join(f'{m.name} ({m.full_cost:,.0f} MACs)' for m in members)}; cost ratios "
                   f"{', '.join(ratios) or '-'}.", ""]
            md += _md_table(["MACs", "error (%)", "output"],
                            [[f"{cost:,.0f}", _pct(e), f"{src} exit {k}"]
                             for cost, e, (src, k) in zip(a["curve"].costs, a["curve"].errors, a["curve"].sources)])
            inf = a["inflation"]
            if inf is not None:
                md += [f"Cost inflation against OPT+: worst {_factor(inf.worst)}, average {_factor(inf.average)} "
                       "(the paper's analysis bounds the worst by about 4, or 2 to 3 with good second-half exits, "
                       "for doubling costs).", ""]
            for note in a["notes"]:
                warnings.append(f"{label}: {note}")
                md += [f"*{note}*", ""]
            for cost, e, (src, k) in zip(a["curve"].costs, a["curve"].errors, a["curve"].sources):
                eann_rows.append({"chain": label, "macs": cost, "error": e, "member": src, "exit": k})
            eann_curves[data_name].append((label, a["curve"]))
            curves = {label: (list(a["curve"].costs), list(a["curve"].errors))}
            if a["opt_plus"] is not None:
                curves["OPT+"] = (list(a["opt_plus"].costs), list(a["opt_plus"].errors))
            for m in members:
                curves[m.name] = (list(m.exit_costs), list(m.test_errors))
            plots.append(Plot(f"eann_{c}.png", "error_vs_macs", f"{label} on {data_name} ({split} error)", curves,
                              step=(label, "OPT+")))
        tables["eann"] = eann_rows

    # plots -----------------------------------------------------------------------------------------
    md += ["## Plots", "", "Error versus MACs: each method's exits (mean over seeds), OPT (one point per single-exit "
           "run, joined), EANN and OPT+ as step curves (the anytime error at a budget is the last output's).", ""]
    for mk in model_keys:
        curves = dict(curves_by_model[mk])
        data_name = mk[0]
        by_unit = opt_by_model.get(_without_period(mk), {})
        if by_unit:
            units = sorted(by_unit)
            curves["OPT"] = ([by_unit[u][0] for u in units], [_mean(by_unit[u][1]) for u in units])
        step = []
        for label, curve in eann_curves.get(data_name, []):
            curves[label] = (list(curve.costs), list(curve.errors))
            step.append(label)
        fname = f"error_vs_macs_{_slug(labels[mk])}.png"
        plots.append(Plot(fname, "error_vs_macs", f"{labels[mk]} ({split} error)", curves, step=tuple(step)))
    for p in plots:
        if p.kind == "error_vs_macs":
            md += [f"![{p.title}]({p.filename})", ""]
    md += ["Probability stacks: the sampling distribution over exits at the end of every epoch "
           "(early exits light, the final exit dark), for every method whose strategy samples, from its first run "
           "of each model.", ""]
    for name in method_names:
        for mk in model_keys:
            rs = sorted((r for r in methods[name] if r.model_key == mk), key=lambda r: (r.seed, r.name))
            if not rs or rs[0].config.get("strategy.name") == "static":
                continue
            metrics_path = rs[0].path / "metrics.jsonl"
            if not metrics_path.is_file():
                warnings.append(f"{rs[0].name}: no metrics.jsonl, no probability stack for {name}")
                continue
            from .logging import read_metrics

            fname = f"probability_stack_{_slug(name)}_{_slug(labels[mk])}.png"
            p = Plot(fname, "probability_stack", f"{name}, {labels[mk]} ({rs[0].name})", read_metrics(metrics_path))
            plots.append(p)
            md += [f"![{p.title}]({p.filename})", ""]

    md += ["## Warnings", ""]
    md += [f"- {w}" for w in warnings] if warnings else ["None: every milestone had its OPT run and every setting matched."]
    md += ["", "## Runs", ""]
    md += _md_table(["run", "method", "model", "seed", "epochs", "path"],
                    [[r.name, "OPT" if r.is_opt else r.label(group_by), r.model_label, r.seed, r.epochs, r.path]
                     for r in sorted(runs, key=lambda r: (r.is_opt, r.name))])
    return Report("\n".join(md) + "\n", tables, plots, warnings)


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


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """Write ``report.md``, one CSV per table and the PNG plots into ``out_dir`` (atomically each)."""
    from .plots import plot_error_vs_macs, plot_probability_stack, save_figure

    out_dir = Path(out_dir)
    written = [atomic_write_text(out_dir / "report.md", report.markdown)]
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
