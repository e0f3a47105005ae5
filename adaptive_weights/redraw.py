"""A report's error-versus-MACs figures redrawn from the report's own CSV tables.

A committed report (``results/reports/reference/...``) keeps its tables but not the run directories
behind them, which stay wherever the campaign was trained. ``per_exit_errors.csv`` holds every
run's error at every exit (OPT runs included) and ``eann.csv`` every EANN chain's curve: enough to
draw the error-versus-MACs figures again, in the current style, without training anything
(``adaptive-weights plot report DIR``). The probability stacks need each run's ``metrics.jsonl``
and an EANN figure its members' own exits, which no table holds: those files are left as they are,
and :func:`redraw_report` names them.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

from .errors import RefusedError
from .plots import Curve
from .rendering import Plot, mean
from .runs import DATASET_CLASSES

__all__ = ["report_plots", "redraw_report"]

_PERIOD = re.compile(r" p\d+$")  # OPT runs match a model whatever its prediction period


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


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
    split_cols = [c for c in (rows[0] if rows else {}) if c.endswith("_error")]
    if len(split_cols) != 1:
        raise RefusedError(f"{path}: expected one <split>_error column (test_error or val_error), got {split_cols}")
    err_col = split_cols[0]
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


def redraw_report(report_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Redraw the error-versus-MACs figures of the report in ``report_dir`` from its CSVs (each PNG
    written atomically); returns the files written and those left as they were (probability
    stacks, EANN figures: their data is not in the tables)."""
    from .plots import plot_error_vs_macs, save_figure

    report_dir = Path(report_dir)
    written = []
    for p in report_plots(report_dir):
        fig = plot_error_vs_macs(p.data, title=p.title, step=p.step, num_classes=p.num_classes)
        written.append(save_figure(fig, report_dir / p.filename))
    kept = sorted(f.name for f in report_dir.glob("*.png") if f not in written)
    return written, kept
