"""Run directories -> the paper's tables and plots (docs/reports.md).

A report answers "which weighting rule gives better anytime predictions, and is the difference
real?" from run directories alone (``config.json``, ``summary.json``, ``metrics.jsonl``), so it can
be redrawn at any time without training. It holds

(a) the per-exit error of every method (mean over seeds) and the OPT baselines;
(b) the relative error increase against OPT at the milestones q in {1/4, 1/2, 3/4, 1};
(c) win rates of every pair of methods over matched settings, with one-sided p-values;
(d) EANN chains (:mod:`adaptive_weights.eann`): the step curve, OPT+ and the cost-inflation factors;
and PNG plots: error versus MACs per model (every method, OPT, EANN) and the probability stack of
every sampling strategy.

Runs are grouped into *methods* by config keys (``--group-by``, default ``strategy.name``; several
keys join with ``+``, e.g. ``sieve+aann``). A *setting* is (data set, model, seed): win rates
compare methods on the settings both have. OPT runs are recognised by a single-exit scheme
(``optimal@i``) and matched to anytime runs by data set, model (the period does not matter for a
single exit) and seed. Anything that cannot be computed (a missing OPT run, an OPT run with 0
errors, an exit that does not cover a milestone, runs trained with different settings, an
unfinished run, a run directory without ``summary.json``) is listed in the report's "Warnings"
section, never skipped in silence.

Every section is a function of the grouped runs that returns its :class:`Section` (markdown,
tables, warnings, plots); :func:`build_report` joins them into a :class:`~.rendering.Report` (plain
data, testable) and :func:`~.rendering.write_report` renders it.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from ._flags import add_quiet
from .conventions import EXIT_NUMBERING, MACS_CONVENTION
from .eann import (
    EANN_EXPLANATION,
    EannAnalysis,
    StepCurve,
    eann_analysis,
    eann_markdown,
    eann_plot_curves,
    eann_rows,
)
from .grouping import (
    NO_EXIT,
    NO_OPT,
    Q_LABEL,
    QUANTILES,
    ZERO_OPT_ERRORS,
    GroupedRuns,
    group_runs,
    grouping_warnings,
    setting_text,
)
from .plots import Curve
from .rendering import Plot, Report, Section, md_table, mean, pct, write_report
from .runs import Run, divergence_text, find_run_dirs, load_run, model_label, opt_points

__all__ = ["ZERO_OPT", "build_report", "cli_main"]

# the (b) table's cell when a relative increase divides by an OPT error of 0
ZERO_OPT = "undefined: OPT has 0 errors"

Curves = dict[str, Curve]


def _curve(macs: Sequence[float], per_seed: Sequence[Sequence[float]]) -> Curve:
    """Mean errors over runs (seeds) at each point, with their lowest and highest when there are several."""
    cols = [list(col) for col in zip(*per_seed, strict=True)]
    if len(per_seed) < 2:
        return Curve(list(macs), [mean(c) for c in cols])
    return Curve(list(macs), [mean(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols])


def _display_path(path: Path) -> str:
    """Relative to the working directory when below it (reports are usually made from the repo root)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")


def build_report(
    runs: Sequence[Run],
    *,
    group_by: Sequence[str] = ("strategy.name",),
    split: str = "test",
    eann_chains: Sequence[Sequence[Run]] = (),
    without_summary: Sequence[Path] = (),
    title: str = "Anytime prediction report",
    claims: bool = False,
    preamble: str = "",
    baselines: Sequence[str] = (),
) -> Report:
    """Compute every table and plot of a report from loaded runs (see the module docstring).
    ``without_summary``: run directories found without ``summary.json``, listed under Warnings;
    ``claims``: open with "The paper's claims, checked" (:mod:`adaptive_weights.claims`);
    ``preamble``: markdown placed under the title (the protocol of a campaign, say); ``baselines``:
    method labels that the win rates compare every other method with (default: every pair)."""
    if split not in ("test", "val"):
        raise ValueError(f"--split {split!r}; allowed: test, val")
    group_by = tuple(group_by)
    if not group_by:
        raise ValueError("--group-by needs at least one config key (e.g. strategy.name)")
    diverged = [r for r in runs if r.status == "diverged"]
    runs = [r for r in runs if r.status != "diverged"]
    g = group_runs(runs, group_by, split)
    if not g.methods and not eann_chains:
        raise ValueError("no anytime run among the run directories (only OPT runs); nothing to report")
    unknown = [b for b in baselines if b not in g.methods]
    if unknown:
        raise ValueError(f"--baseline {unknown[0]!r} is no method of these runs (grouped by {'+'.join(group_by)}); "
                         f"methods: {', '.join(g.method_names)}")
    warnings = [f"{_display_path(p)} has no summary.json (killed before its first epoch finished?), so it is "
                "left out; resume it (`adaptive-weights train --resume DIR`, if it has a checkpoint) or remove it"
                for p in without_summary]
    warnings += [f"run {r.name} diverged ({divergence_text(r)}), so it is left out of every table; its method "
                 "has no result in that setting" for r in diverged]
    given = {r.path for r in runs}
    warnings += grouping_warnings(g, list(runs) + [m for c in eann_chains for m in c if m.path not in given])

    md = [f"# {title}", "",
          f"{sum(map(len, g.methods.values()))} anytime run(s) in {len(g.methods)} method(s) grouped by "
          f"`{'+'.join(group_by)}`, {len(g.opt_runs)} OPT run(s), {len(eann_chains)} EANN chain(s). Errors are top-1 errors in percent "
          f"on the **{split}** split after the last epoch, as in the paper (no epoch is chosen on the test split). {MACS_CONVENTION} {EXIT_NUMBERING}", ""]
    if preamble.strip():
        md += [preamble.strip(), ""]
    exit_errors, method_curves = _section_exit_errors(g)
    analyses = _eann_analyses(g, eann_chains)
    eann, eann_curves = _section_eann(g, analyses)
    sections = [exit_errors, _section_opt(g), _section_relative_increase(g), _section_win_rates(g, baselines), eann,
                _section_plots(g, method_curves, eann_curves, eann.plots)]
    if claims:
        from .claims import claims_section

        sections.insert(0, claims_section(g, [(label, a) for label, _, a in analyses]))
    tables: dict[str, list[dict[str, Any]]] = {}
    columns: dict[str, Sequence[str]] = {}
    plots: list[Plot] = []
    for s in sections:
        md += s.markdown
        tables.update(s.tables)
        columns.update(s.columns)
        warnings += s.warnings
        plots += s.plots
    warnings = list(dict.fromkeys(warnings))  # one line per distinct problem, in order
    md += ["## Warnings", ""]
    md += [f"- {w}" for w in warnings] if warnings else ["None: every milestone had its OPT run and every setting matched."]
    md += ["", "## Runs", ""]
    md += md_table(["run", "method", "model", "seed", "epochs", "path"],
                   [[r.name, "OPT" if r.is_opt else r.label(group_by), r.model_label, r.seed, r.epochs,
                     _display_path(r.path)]
                    for r in sorted(runs, key=lambda r: (r.is_opt, r.name))])
    return Report("\n".join(md) + "\n", tables, plots, warnings, columns)


def _section_exit_errors(g: GroupedRuns) -> tuple[Section, dict[tuple, Curves]]:
    """(a) Mean error of every exit per method and model; long-format CSV of every run's exits.
    Also returns each model's curves (method -> (MACs, mean errors)) for its plot."""
    from .metrics import error_cost_auc

    split = g.split
    md = ["## (a) Error of every exit", "",
          "Mean over the seeds of each method (the `seeds` column counts them). Column `uI (M)`: the exit "
          "after unit I and its MACs in millions. `AUC` is the mean error over budgets spread "
          "uniformly between the first and the last exit's MACs, each exit's error held until the next exit "
          "(the step curve an anytime net delivers); lower is better.", ""]
    rows_csv: list[dict[str, Any]] = []
    curves_by_model: dict[tuple, Curves] = {}
    for mk in g.model_keys:
        groups: dict[tuple[str, tuple[int, ...]], list[Run]] = defaultdict(list)
        for name in g.method_names:
            for r in g.runs_of(name, mk):
                groups[(name, r.exit_units)].append(r)
        ref = max((rs[0] for rs in groups.values()), key=lambda r: len(r.exit_units))
        header = (["method", "seeds"]
                  + [f"u{u} ({m / 1e6:.3g}M)" for u, m in zip(ref.exit_units, ref.exit_macs, strict=True)] + ["AUC"])
        body = []
        curves: Curves = {}
        for (name, units), rs in sorted(groups.items()):
            errs = [mean(col) for col in zip(*(r.split_errors(split) for r in rs), strict=True)]
            macs = list(rs[0].exit_macs)
            by_unit = dict(zip(units, errs, strict=True))
            auc = error_cost_auc(macs, errs) if len(macs) > 1 else errs[0]
            body.append([name, len(rs)] + [pct(by_unit[u]) if u in by_unit else "-" for u in ref.exit_units]
                        + [pct(auc)])
            curves[name if name not in curves else f"{name} (exits at units {list(units)})"] = _curve(
                macs, [r.split_errors(split) for r in rs])
            for r in rs:
                for k, (u, m, e) in enumerate(zip(r.exit_units, r.exit_macs, r.split_errors(split), strict=True)):
                    rows_csv.append({"run": r.name, "method": name, "model": r.model_label, "seed": r.seed,
                                     "exit": k, "unit": u, "macs": m, f"{split}_error": e})
        md += [f"### {g.label_of(mk)}", ""] + md_table(header, body)
        curves_by_model[mk] = curves
    for r in g.opt_runs:
        rows_csv.append({"run": r.name, "method": "OPT", "model": r.model_label, "seed": r.seed, "exit": 0,
                         "unit": r.exit_units[0], "macs": r.exit_macs[0], f"{split}_error": r.split_errors(split)[0]})
    columns = ("run", "method", "model", "seed", "exit", "unit", "macs", f"{split}_error")  # also without runs
    return Section(md, {"per_exit_errors": rows_csv}, columns={"per_exit_errors": columns}), curves_by_model


def _section_opt(g: GroupedRuns) -> Section:
    md = ["### OPT baselines", "",
          "OPT at unit i: the same network trained with a single exit at unit i (scheme `optimal@i`, strategy "
          "`static`; the paper's OPT baseline), mean over seeds.", ""]
    points = opt_points(g.opt_runs, g.split)
    if points:
        md += md_table(["model", "unit", "MACs", "seeds", "error (%)"],
                       [[p.model, p.unit, f"{p.macs:,}", len(p.runs), pct(p.error)] for p in points])
    else:
        md += ["No OPT run was given, so every relative increase is n/a (train them with "
               "`adaptive-weights opt --like RUN_DIR`).", ""]
    return Section(md)


# the relative_increase CSV's header, written also without anytime runs (a report of EANN chains only)
RELATIVE_INCREASE_COLUMNS = ("run", "method", "model", "seed", "q", "unit", "ann_error", "opt_error",
                             "relative_increase", "note")


def _section_relative_increase(g: GroupedRuns) -> Section:
    """(b) (e_ANN - e_OPT) / e_OPT at the milestones; n/a (and a warning) where OPT or the exit is
    missing, ``ZERO_OPT`` in the cell (and the CSV's note) where OPT has 0 errors."""
    md = ["## (b) Relative error increase against OPT", "",
          "At milestone q the anytime net's error at unit idx_q = round_half_up(q*L) - 1 (interpolated linearly "
          "in depth between its neighbouring exits when no exit sits there) is compared with OPT at idx_q: "
          "(e_ANN - e_OPT) / e_OPT, in percent; lower is better, 0 means as good as a network trained for that "
          "depth alone. Each run is compared with the OPT run of its own seed, or with OPT's mean over seeds when "
          "OPT has no run of that seed (see Warnings). Mean over seeds, pooled over models in the `all settings` rows; "
          f"`n/a` when some run lacks its OPT run or an exit around idx_q, `{ZERO_OPT}` when some OPT run it is compared with "
          "made no error, so the ratio divides by 0 (see Warnings).", ""]
    warnings: list[str] = []
    rows: list[dict[str, Any]] = []
    rel: dict[tuple[str, tuple], dict[Fraction, list[float | str]]] = defaultdict(lambda: defaultdict(list))
    missing: set[str] = set()
    fallback: dict[tuple[str, str], list[int]] = defaultdict(list)  # (setting, note) -> units
    for name in g.method_names:
        for r in g.methods[name]:
            for q, idx, e_ann in g.milestone_errors(r):
                ratio = g.relative_increase(r, idx, e_ann)
                note = ratio.fallback
                if note and idx not in fallback[(setting_text(r), note)]:  # OPT has fewer seeds than the runs
                    fallback[(setting_text(r), note)].append(idx)
                value: float | str = "n/a" if ratio.value is None else ratio.value
                if ratio.problem == NO_EXIT:
                    note = f"{r.name} has no exit at or around unit {idx} (exits at units {list(r.exit_units)})"
                    warnings.append(note)
                elif ratio.problem == NO_OPT:
                    note = f"missing OPT at unit {idx} for {setting_text(r)}"
                    missing.add(note)
                elif ratio.problem == ZERO_OPT_ERRORS:
                    value = ZERO_OPT
                    note = f"{ZERO_OPT} (unit {idx}, {setting_text(r)}), so (e_ANN - e_OPT) / e_OPT divides by 0"
                    warnings.append(note)
                rel[(name, r.model_key)][q].append(value)
                rows.append(dict(zip(RELATIVE_INCREASE_COLUMNS, (
                    r.name, name, r.model_label, r.seed, Q_LABEL[q], idx, e_ann, ratio.e_opt, ratio.value, note),
                    strict=True)))

    def cell(values: list[float | str]) -> str:
        if ZERO_OPT in values:
            return ZERO_OPT
        return "n/a" if not values or "n/a" in values else f"{100 * mean(values):+.1f}"

    body = [[g.label_of(mk), name] + [cell(rel[(name, mk)][q]) for q in QUANTILES]
            for mk in g.model_keys for name in g.method_names if (name, mk) in rel]
    for name in g.method_names:
        body.append(["**all settings**", name]
                    + [cell([v for (n, _), d in rel.items() if n == name for v in d[q]]) for q in QUANTILES])
    md += md_table(["model", "method"] + [f"q={Q_LABEL[q]} (%)" for q in QUANTILES], body)
    fallbacks = [f"{setting}, unit{'s' if len(units) > 1 else ''} {', '.join(map(str, sorted(units)))}: {note}"
                 for (setting, note), units in sorted(fallback.items())]
    return Section(md, {"relative_increase": rows}, warnings + sorted(missing) + fallbacks,
                   columns={"relative_increase": RELATIVE_INCREASE_COLUMNS})


# the win_rates CSV's header, written also when no pair of methods is compared (one method, say)
WIN_RATE_COLUMNS = ("a", "b", "q", "settings", "a_wins", "b_wins", "ties", "n", "a_win_rate", "hoeffding_p_a_better",
                    "binomial_p_a_better", "hoeffding_p_b_better", "binomial_p_b_better")


def _section_win_rates(g: GroupedRuns, baselines: Sequence[str] = ()) -> Section:
    """(c) Every pair of methods (or every method against each baseline) at every milestone over
    their shared settings, with p-values."""
    from .metrics import win_rate_table

    md = ["## (c) Win rates", "",
          "For every pair of methods A, B and milestone q: in how many matched settings (same data set, model "
          "and seed) A's error at idx_q is lower than B's (`A wins`), and the reverse (`B wins`). Ties are "
          "dropped; n = A wins + B wins. `p(A>B)` is the one-sided p-value of 'A beats B more often than not': "
          "Hoeffding is the paper's bound exp(-2n(k/n - 1/2)^2) with k = A wins (1 when k/n <= 1/2); exact is "
          "the sign test P[Binomial(n, 1/2) >= k], never larger. `p(B>A)` swaps the roles. A small p says the "
          "difference is unlikely to be chance; with few settings no p can be small."
          + (f" Only pairs with a baseline ({', '.join(f'`{b}`' for b in baselines)}) are shown." if baselines else ""),
          ""]
    results: dict[str, dict[tuple, dict[Fraction, float]]] = {}
    for name in g.method_names:
        per_setting: dict[tuple, list[dict[Fraction, float]]] = defaultdict(list)
        for r in g.methods[name]:
            per_setting[r.setting].append({q: e for q, _, e in g.milestone_errors(r) if e is not None})
        results[name] = {s: {q: mean([d[q] for d in ds]) for q in set.intersection(*(set(d) for d in ds))}
                         for s, ds in per_setting.items()}
    warnings: list[str] = []
    rows: list[dict[str, Any]] = []
    body = []
    names = g.method_names
    one_sided: dict[tuple, list[str]] = defaultdict(list)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if baselines and a not in baselines and b not in baselines:
                continue
            shared = [s for s in results[a] if s in results[b]]
            for s in set(results[a]) ^ set(results[b]):
                one_sided[s].append(f"{a} vs {b}")
            if not shared:
                warnings.append(f"win rate {a} vs {b}: no common setting, no comparison")
                continue
            qs = [q for q in QUANTILES if all(q in results[m][s] for m in (a, b) for s in shared)]
            sub = {m: {s: results[m][s] for s in shared} for m in (a, b)}
            table_ab, table_ba = win_rate_table(sub, a, b, qs), win_rate_table(sub, b, a, qs)
            for q in qs:
                ab, ba = table_ab[q], table_ba[q]
                body.append([f"{a} vs {b}", Q_LABEL[q], ab.wins, ba.wins, ab.ties,
                             "n/a" if ab.n == 0 else f"{ab.rate:.2f}",
                             f"{ab.hoeffding_p:.3g} / {ab.binomial_p:.3g}", f"{ba.hoeffding_p:.3g} / {ba.binomial_p:.3g}"])
                rows.append(dict(zip(WIN_RATE_COLUMNS, (
                    a, b, Q_LABEL[q], len(shared), ab.wins, ba.wins, ab.ties, ab.n, None if ab.n == 0 else ab.rate,
                    ab.hoeffding_p, ab.binomial_p, ba.hoeffding_p, ba.binomial_p), strict=True)))
    # one line per setting that some pairs lack (a seed run for some methods only), not one per pair
    for s, pairs in sorted(one_sided.items(), key=lambda kv: str(kv[0])):
        have = [m for m in names if s in results[m]]
        shown = ", ".join(pairs[:3]) + (f" and {len(pairs) - 3} more" if len(pairs) > 3 else "")
        warnings.append(f"win rates: setting {_setting_label(g, s)} has only {len(have)} of the {len(names)} methods "
                        f"({', '.join(have)}), so it is left out of the {len(pairs)} comparison(s) of a method that "
                        f"has it with one that does not ({shown})")
    if body:
        md += md_table(["A vs B", "q", "A wins", "B wins", "ties", "A win rate", "p(A>B) Hoeffding / exact",
                        "p(B>A) Hoeffding / exact"], body)
    else:
        md += ["No pair of methods shares a setting." if len(names) > 1 else "Only one method: nothing to compare.", ""]
    return Section(md, {"win_rates": rows}, warnings, columns={"win_rates": WIN_RATE_COLUMNS})


def _setting_label(g: GroupedRuns, setting: tuple) -> str:
    run = next(r for rs in g.methods.values() for r in rs if r.setting == setting)
    return setting_text(run)


def _eann_analyses(g: GroupedRuns, chains: Sequence[Sequence[Run]]) -> list[tuple[str, Sequence[Run], EannAnalysis]]:
    """Every EANN chain with its label (``EANN``, or ``EANN c`` for several) and its analysis, computed once."""
    return [(f"EANN {c}" if len(chains) > 1 else "EANN", chain, eann_analysis(chain, g.opt_runs, g.split))
            for c, chain in enumerate(chains)]


def _section_eann(g: GroupedRuns, analyses: Sequence[tuple[str, Sequence[Run], EannAnalysis]],
                  ) -> tuple[Section, dict[str, list[tuple[str, StepCurve]]]]:
    """(d) Every EANN chain: its step curve, OPT+ and the cost-inflation factors, and a plot each.
    Also returns the chains' curves by data set, drawn into that data set's error-versus-MACs plots."""
    curves: dict[str, list[tuple[str, StepCurve]]] = defaultdict(list)
    if not analyses:
        return Section([]), curves
    md = ["## (d) EANN", "", EANN_EXPLANATION, ""]
    warnings: list[str] = []
    plots: list[Plot] = []
    rows: list[dict[str, Any]] = []
    for c, (label, chain, a) in enumerate(analyses):
        md += [f"### {label}: {' -> '.join(model_label(r.config) for r in chain)}", ""] + eann_markdown(a)
        warnings += [f"{label}: {note}" for note in a.notes]
        rows += [{"chain": label, **row} for row in eann_rows(a.curve)]
        data_name = chain[0].config.get("data.name")
        curves[data_name].append((label, a.curve))
        plots.append(Plot(f"eann_{c}.png", "error_vs_macs", f"{label} on {data_name} ({g.split} error)",
                          eann_plot_curves(a, label), step=(label, "OPT+"), num_classes=chain[0].num_classes))
    return Section(md, {"eann": rows}, warnings, plots), curves


def _section_plots(g: GroupedRuns, method_curves: dict[tuple, Curves],
                   eann_curves: dict[str, list[tuple[str, StepCurve]]], eann_plots: Sequence[Plot]) -> Section:
    """Error versus MACs per model (the methods' curves of (a), OPT, the EANNs of its data set) and
    the probability stacks; ``eann_plots`` (drawn by (d)) are linked here too."""
    from .logging import read_metrics

    md = ["## Plots", "",
          "Error versus MACs: each method's exits (mean over seeds; the shaded band spans the lowest to the highest "
          "error over seeds), OPT as a dashed black baseline (one point per single-exit depth, mean over seeds, "
          "joined), the EANN of the same data set as a grey step curve (the anytime error at a budget is that of "
          "the last output), and the dotted chance error 1 - 1/classes. The x-axis spans the methods' costs; a "
          "longer EANN is clipped there (its own plot shows all of it). Beyond 8 methods, each panel shows at most 4 "
          "over the same baselines.", ""]
    plots: list[Plot] = []
    warnings: list[str] = []
    stack_rows: list[dict[str, Any]] = []
    for mk in g.model_keys:
        curves = dict(method_curves[mk])
        like = next(r for rs in g.methods.values() for r in rs if r.model_key == mk)
        points = opt_points(g.opt_runs, g.split, like=like)
        if points:
            spread = [[r.split_errors(g.split)[0] for r in p.runs] for p in points]
            curves["OPT"] = (Curve([p.macs for p in points], [p.error for p in points],
                                   [min(e) for e in spread], [max(e) for e in spread])
                             if all(len(e) > 1 for e in spread) else
                             Curve([p.macs for p in points], [p.error for p in points]))
        step = []
        for label, curve in eann_curves.get(mk[0], []):
            curves[label] = (list(curve.costs), list(curve.errors))
            step.append(label)
        plots.append(Plot(f"error_vs_macs_{_slug(g.label_of(mk))}.png", "error_vs_macs",
                          f"{g.label_of(mk)} ({g.split} error)", curves, step=tuple(step), num_classes=like.num_classes))
    md += [f"![{p.title}]({p.filename})\n" for p in [*eann_plots, *plots]]
    md += ["Probability stacks: the sampling distribution over exits (numbered from 0) at the end of every epoch "
           "(early exits light, the final exit dark) for every method whose strategy is not `static`, from its "
           "first run (lowest seed) of each model.", ""]
    for name in g.method_names:
        for mk in g.model_keys:
            rs = sorted(g.runs_of(name, mk), key=lambda r: (r.seed, r.name))
            if not rs or rs[0].config.get("strategy.name") == "static":
                continue
            path = rs[0].path / "metrics.jsonl"
            if not path.is_file():
                warnings.append(f"{rs[0].name}: no metrics.jsonl, so no probability stack for {name}")
                continue
            rows = read_metrics(path)
            p = Plot(stack_filename(name, g.label_of(mk)), "probability_stack",
                     stack_title(name, g.label_of(mk), rs[0].name), rows)
            plots.append(p)
            stack_rows += stack_table_rows(name, g.label_of(mk), rs[0].name, rows)
            md += [f"![{p.title}]({p.filename})", ""]
    return Section(md, {"probability_stacks": stack_rows}, warnings=warnings, plots=plots,
                   columns={"probability_stacks": STACK_COLUMNS})


STACK_COLUMNS = ("method", "model", "run", "epoch", "exit", "probability")


def stack_filename(method: str, model: str) -> str:
    """The file of a method's probability stack on a model (also what ``plot report`` redraws)."""
    return f"probability_stack_{_slug(method)}_{_slug(model)}.png"


def stack_title(method: str, model: str, run: str) -> str:
    return f"{method}, {model} ({run})"


def stack_table_rows(method: str, model: str, run: str, metrics: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A probability stack as rows of ``probability_stacks.csv``: one per epoch and exit, so the
    figure can be redrawn from the report alone, without the run's metrics.jsonl."""
    from .plots import probability_series

    epochs, series = probability_series(metrics)
    return [{"method": method, "model": model, "run": run, "epoch": int(epoch) if epoch.is_integer() else epoch,
             "exit": k, "probability": probs[i]}
            for i, epoch in enumerate(epochs) for k, probs in enumerate(series)]


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
    parser.add_argument("--preamble", metavar="FILE.md",
                        help="markdown placed under the title: the protocol of the runs, what the data are")
    parser.add_argument("--baseline", action="append", default=[], metavar="METHOD",
                        help="win rates of every method against this method only (repeat for several); "
                             "default: every pair of methods")
    parser.add_argument("--claims", action="store_true",
                        help="open the report with \"The paper's claims, checked\": each claim, its number with the "
                             "seed spread, and a verdict (needs the paper's methods among the runs)")
    add_quiet(parser)
    args = parser.parse_args(list(argv))
    preamble = ""
    if args.preamble:
        path = Path(args.preamble)
        if not path.is_file():
            raise FileNotFoundError(f"--preamble {args.preamble!r}: no such file")
        preamble = path.read_text()
    group_by = [k.strip() for k in args.group_by.split(",") if k.strip()]
    found = find_run_dirs(args.runs)
    runs = [load_run(p) for p in found.finished]
    chains = [[load_run(p) for p in chain] for chain in args.eann]
    report = build_report(runs, group_by=group_by, split=args.split, eann_chains=chains,
                          without_summary=found.without_summary, title=args.title, claims=args.claims,
                          preamble=preamble, baselines=args.baseline)
    written = write_report(report, args.out)
    print(f"report: {Path(args.out) / 'report.md'} ({len(written)} files)")
    for w in report.warnings:
        print(f"warning: {w}")
    return 0
