"""A report's figures redrawn from the report's own CSV tables.

A committed report (``results/reports/reference/...``) keeps its tables but not the run directories
behind them, which stay wherever the campaign was trained. ``per_exit_errors.csv`` holds every
run's error at every exit (OPT runs included), ``eann.csv`` every EANN chain's curve and
``probability_stacks.csv`` every probability stack: enough to draw the figures again, in the
current style, without training anything (``adaptive-weights plot report DIR``).

A report written before ``probability_stacks.csv`` existed gets it from its runs
(``plot report DIR --runs RUN_DIR...``): a run is taken only when its per-exit errors are those of
the report's table, so a stack is never drawn from a run the report did not use. The EANN figures
need the members' own exits, which no table holds: they are left as they are, and
:func:`redraw_report` names them.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .errors import RefusedError
from .plots import Curve
from .rendering import Plot, mean
from .runs import DATASET_CLASSES

__all__ = ["report_plots", "stack_plots", "stacks_from_runs", "redraw_report"]

_PERIOD = re.compile(r" p\d+$")  # OPT runs match a model whatever its prediction period


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _error_column(rows: Sequence[dict[str, str]], path: Path) -> str:
    """The one ``<split>_error`` column of ``per_exit_errors.csv`` (``test_error`` or ``val_error``)."""
    split_cols = [c for c in (rows[0] if rows else {}) if c.endswith("_error")]
    if len(split_cols) != 1:
        raise RefusedError(f"{path}: expected one <split>_error column (test_error or val_error), got {split_cols}")
    return split_cols[0]


def report_plots(report_dir: str | Path) -> list[Plot]:
    """The error-versus-MACs plot of every model in ``report_dir/per_exit_errors.csv``, with OPT
    (its rows of method ``OPT``) and the EANN chains of ``eann.csv`` on the model's data set, as
    :func:`adaptive_weights.report.build_report` draws them from the runs."""
    from .report import _slug

    report_dir = Path(report_dir)
    path = report_dir / "per_exit_errors.csv"
    if not path.is_file():
        raise RefusedError(f"{report_dir}: no per_exit_errors.csv; expected the directory of a report written by "
                           "`adaptive-weights report`")
    rows = _read(path)
    err_col = _error_column(rows, path)
    split = err_col[: -len("_error")]
    # model -> (method, units) -> run -> [(exit, macs, error)]
    exits: dict[str, dict[tuple[str, tuple[int, ...]], dict[str, list[tuple[int, float, float]]]]] = defaultdict(dict)
    per_run: dict[tuple[str, str, str], list[tuple[int, int, float, float]]] = defaultdict(list)
    opt: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        try:
            unit, macs, err = int(row["unit"]), float(row["macs"]), float(row[err_col])
            exit_ = int(row["exit"])
        except (KeyError, TypeError, ValueError):
            raise RefusedError(f"{path}: row {row!r} lacks a number in exit, unit, macs or {err_col}") from None
        if row["method"] == "OPT":
            opt[_PERIOD.sub("", row["model"])][unit].append((macs, err))
        else:
            per_run[(row["model"], row["method"], row["run"])].append((exit_, unit, macs, err))
    for (model, method, run), points in per_run.items():
        points.sort()
        units = tuple(u for _, u, _, _ in points)
        exits[model].setdefault((method, units), {})[run] = [(e, m, v) for e, _, m, v in points]
    chains: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    if (report_dir / "eann.csv").is_file():
        for row in _read(report_dir / "eann.csv"):
            chains[row["chain"]].append((float(row["macs"]), float(row["error"]), row["member"]))
    data_sets = {model.partition("/")[0] for model in exits}
    plots = []
    for model in sorted(exits):
        data = model.partition("/")[0]
        curves: dict[str, Curve] = {}
        for (method, units), runs in sorted(exits[model].items()):
            per_seed = [[v for _, _, v in pts] for pts in runs.values()]
            macs = [m for _, m, _ in next(iter(runs.values()))]
            cols = list(zip(*per_seed, strict=True))
            spread = ([min(c) for c in cols], [max(c) for c in cols]) if len(per_seed) > 1 else (None, None)
            curves[method if method not in curves else f"{method} (exits at units {list(units)})"] = Curve(
                macs, [mean(c) for c in cols], *spread)
        points = opt.get(_PERIOD.sub("", model), {})
        if points:
            by_unit = [points[u] for u in sorted(points)]
            errors = [[e for _, e in p] for p in by_unit]
            several = all(len(e) > 1 for e in errors)
            curves["OPT"] = Curve([p[0][0] for p in by_unit], [mean(e) for e in errors],
                                  [min(e) for e in errors] if several else None,
                                  [max(e) for e in errors] if several else None)
        step = []
        for label, curve in chains.items():
            if len(data_sets) == 1 or all(member.startswith(f"{data}-") for _, _, member in curve):
                curves[label] = Curve([m for m, _, _ in curve], [e for _, e, _ in curve])
                step.append(label)
        plots.append(Plot(f"error_vs_macs_{_slug(model)}.png", "error_vs_macs", f"{model} ({split} error)", curves,
                          step=tuple(step), num_classes=DATASET_CLASSES.get(data)))
    return plots


def stack_plots(report_dir: str | Path) -> list[Plot]:
    """The probability stacks of ``report_dir/probability_stacks.csv`` (none when it is absent), as
    :func:`adaptive_weights.report.build_report` draws them from the runs."""
    from .report import stack_filename, stack_title

    path = Path(report_dir) / STACKS_CSV
    if not path.is_file():
        return []
    stacks: dict[tuple[str, str, str], dict[float, dict[str, float]]] = defaultdict(dict)
    for row in _read(path):
        try:
            epoch, exit_, prob = float(row["epoch"]), int(row["exit"]), float(row["probability"])
            key = (row["method"], row["model"], row["run"])
        except (KeyError, TypeError, ValueError):
            raise RefusedError(f"{path}: row {row!r} lacks method, model, run or a number in epoch, exit or "
                               "probability") from None
        stacks[key].setdefault(epoch, {"epoch": epoch})[f"train/prob/exit_{exit_}"] = prob
    return [Plot(stack_filename(method, model), "probability_stack", stack_title(method, model, run),
                 [by_epoch[e] for e in sorted(by_epoch)])
            for (method, model, run), by_epoch in sorted(stacks.items())]


STACKS_CSV = "probability_stacks.csv"


def stacks_from_runs(report_dir: str | Path, run_dirs: Sequence[str | Path]) -> list[dict[str, object]]:
    """The rows of ``probability_stacks.csv`` from the report's runs found under ``run_dirs``: for
    each method and model whose strategy samples, its first run (lowest seed) as the report chose
    it. A run whose per-exit errors differ from the report's table is refused (it is not the run
    behind the report); a stack whose run is not among ``run_dirs`` is left out."""
    from .logging import read_metrics
    from .report import stack_table_rows
    from .runs import load_runs

    report_dir = Path(report_dir)
    table = report_dir / "per_exit_errors.csv"
    rows = [r for r in _read(table) if r["method"] != "OPT"] if table.is_file() else []
    if not rows:
        raise RefusedError(f"{report_dir}: no per_exit_errors.csv with anytime runs; expected the directory of a "
                           "report written by `adaptive-weights report`")
    err_col = _error_column(rows, table)
    first: dict[tuple[str, str], tuple[int, str]] = {}
    errors: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in rows:
        key, rank = (row["method"], row["model"]), (int(row["seed"]), row["run"])
        first[key] = min(first.get(key, rank), rank)
        errors[row["run"]].append((int(row["exit"]), float(row[err_col])))
    chosen = {run: key for key, (_, run) in first.items()}
    found = {r.name: r for r in load_runs(run_dirs) if r.name in chosen}
    out: list[dict[str, object]] = []
    for name, run in sorted(found.items()):
        if run.config.get("strategy.name") == "static":
            continue
        want = [e for _, e in sorted(errors[name])]
        got = run.split_errors(err_col[: -len("_error")])
        if len(got) != len(want) or any(abs(a - b) > 5e-5 for a, b in zip(got, want, strict=False)):
            raise RefusedError(f"{run.path}: its per-exit errors {[round(e, 4) for e in got]} are not those of "
                               f"{table} ({want}); expected the run directory the report was made from")
        method, model = chosen[name]
        out += stack_table_rows(method, model, name, read_metrics(run.path / "metrics.jsonl"))
    return out


def redraw_report(report_dir: str | Path, runs: Sequence[str | Path] = ()) -> tuple[list[Path], list[str]]:
    """Redraw the figures of the report in ``report_dir`` from its CSVs (each PNG written
    atomically); returns the files written and those left as they were (EANN figures, and the
    probability stacks of a report without ``probability_stacks.csv``: their data is not in the
    tables). ``runs`` (run directories) first fill ``probability_stacks.csv`` from the report's own
    runs (:func:`stacks_from_runs`), keeping the stacks of runs not given."""
    from ._io import atomic_write_text
    from .plots import plot_error_vs_macs, plot_probability_stack, save_figure
    from .rendering import csv_text
    from .report import STACK_COLUMNS

    report_dir = Path(report_dir)
    plots = report_plots(report_dir)
    if runs:
        new = stacks_from_runs(report_dir, runs)
        drawn = {r["run"] for r in new}
        old = [r for r in _read(report_dir / STACKS_CSV) if r["run"] not in drawn] \
            if (report_dir / STACKS_CSV).is_file() else []
        atomic_write_text(report_dir / STACKS_CSV, csv_text(old + new, STACK_COLUMNS))
    written = []
    for p in plots:
        fig = plot_error_vs_macs(p.data, title=p.title, step=p.step, num_classes=p.num_classes)
        written.append(save_figure(fig, report_dir / p.filename))
    for p in stack_plots(report_dir):
        written.append(save_figure(plot_probability_stack(p.data, title=p.title), report_dir / p.filename))
    kept = sorted(f.name for f in report_dir.glob("*.png") if f not in written)
    return written, kept
