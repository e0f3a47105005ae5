"""What a report is and how it is written, shared by ``report``, ``eann`` and the sweep report.

A :class:`Report` is plain data (markdown text, CSV tables as dict rows, :class:`Plot` descriptions),
built from :class:`Section` parts; :func:`write_report` renders it into files (each atomically).
The helpers format what every table shows the same way: percentages, markdown tables, CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._io import atomic_write_text
from .errors import RefusedError

__all__ = ["Plot", "Report", "Section", "write_report", "md_table", "pct", "csv_text", "mean"]


@dataclass(frozen=True)
class Plot:
    """A figure to draw: ``kind`` is ``error_vs_macs`` (``data`` = {label: :class:`~.plots.Curve` or
    (macs, errors)}, ``step`` = labels drawn as step curves, ``num_classes`` = where the chance line
    lies) or ``probability_stack`` (``data`` = metrics rows)."""

    filename: str
    kind: str
    title: str
    data: Any
    step: tuple[str, ...] = ()
    num_classes: int | None = None


@dataclass
class Report:
    """Everything a report contains, before rendering: markdown text, CSV tables, plots."""

    markdown: str
    tables: dict[str, list[dict[str, Any]]]
    plots: list[Plot]
    warnings: list[str] = field(default_factory=list)
    columns: dict[str, Sequence[str]] = field(default_factory=dict)  # a table's header, also without rows


@dataclass(frozen=True)
class Section:
    """What one section of a report contributes: its markdown lines, CSV tables, warnings, plots."""

    markdown: list[str]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    columns: dict[str, Sequence[str]] = field(default_factory=dict)  # see Report.columns


def write_report(report: Report, out_dir: str | Path, *, markdown_name: str = "report.md") -> list[Path]:
    """Write the markdown, one CSV per table and the PNG plots into ``out_dir`` (each atomically).
    An ``out_dir`` that is (or lies below) an existing file is refused before anything is written."""
    from .plots import plot_error_vs_macs, plot_probability_stack, save_figure

    out_dir = Path(out_dir)
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RefusedError(f"--out {str(out_dir)!r}: {existing} is a file; expected a directory (existing or new) "
                           "for the report's files")
    written = [atomic_write_text(out_dir / markdown_name, report.markdown)]
    for name, rows in report.tables.items():
        written.append(atomic_write_text(out_dir / f"{name}.csv", csv_text(rows, report.columns.get(name, ()))))
    for p in report.plots:
        if p.kind == "error_vs_macs":
            fig = plot_error_vs_macs(p.data, title=p.title, step=p.step, num_classes=p.num_classes)
        else:
            fig = plot_probability_stack(p.data, title=p.title)
        written.append(save_figure(fig, out_dir / p.filename))
    return written


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def pct(x: float | None, digits: int = 2) -> str:
    """``x`` (a fraction) in percent; ``n/a`` for None."""
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A markdown table as lines, followed by an empty line. A cell's ``|`` (a run directory named
    ``a|b``) is escaped and its line breaks become spaces, so every row is one line with the
    header's column count; ``&``, ``<`` and ``>`` are escaped, so a name or path holding HTML is
    shown as text, never rendered by a markdown viewer."""
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def md_cell(value: Any) -> str:
    """``value`` as the text of one markdown table cell (see :func:`md_table`)."""
    text = " ".join(str(value).splitlines())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str] = ()) -> str:
    """CSV of dict rows (columns: ``columns``, then every other key in order of first appearance;
    None as an empty cell). ``columns`` gives a table without rows its header line."""
    buf = io.StringIO()
    fields = list(dict.fromkeys([*columns, *(k for row in rows for k in row)]))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()
