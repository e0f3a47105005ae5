"""``adaptive-weights eann MEMBER_RUN_DIR... [--opt DIR...] [--out DIR]``: an EANN from trained runs.

The members (anytime runs of one data set, in order of growing cost, about 2x each) make an
exponentially deepening chain (spec §5.5, :mod:`adaptive_weights.eann`). This prints and writes
its error-versus-MACs step curve, the OPT+ curve of the given OPT runs and the cost-inflation
factors of the EANN against OPT+. The numbers come from the run directories' ``summary.json`` only.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ._flags import add_quiet
from .conventions import EXIT_NUMBERING, MACS_CONVENTION
from .eann import EANN_EXPLANATION, eann_analysis, eann_markdown, eann_plot_curves, eann_rows
from .grouping import unfinished_warning
from .rendering import Plot, Report, write_report
from .runs import load_run, load_runs

__all__ = ["eann_report", "cli_main"]


def eann_report(member_dirs: Sequence[str | Path], opt_dirs: Sequence[str | Path] = (), *,
                split: str = "test") -> Report:
    """The EANN of ``member_dirs`` against OPT+ of the single-exit runs found in ``opt_dirs``
    (anytime runs among them are ignored, so a whole results folder can be given)."""
    if split not in ("test", "val"):
        raise ValueError(f"--split {split!r}; allowed: test, val")
    members = [load_run(p) for p in member_dirs]
    opt_runs = [r for r in load_runs(opt_dirs) if r.is_opt] if opt_dirs else []
    analysis = eann_analysis(members, opt_runs, split)
    unfinished = [unfinished_warning(r) for r in members if not r.completed]
    data_name = members[0].config.get("data.name")
    md = [f"# EANN on {data_name}", "", EANN_EXPLANATION, "",
          f"Errors in percent on the {split} split. {MACS_CONVENTION} {EXIT_NUMBERING}", ""]
    md += [f"*{note}*\n" for note in unfinished] + eann_markdown(analysis)
    tables = {"eann": eann_rows(analysis.curve)}
    if analysis.opt_plus is not None:
        tables["opt_plus"] = eann_rows(analysis.opt_plus)
    plot = Plot("eann.png", "error_vs_macs", f"EANN on {data_name} ({split} error)", eann_plot_curves(analysis),
                step=("EANN", "OPT+"))
    md += [f"![{plot.title}]({plot.filename})", ""]
    return Report("\n".join(md) + "\n", tables, [plot], unfinished + list(analysis.notes))


def cli_main(argv: Sequence[str]) -> int:
    """Print the EANN curve, OPT+ comparison and inflation factors; with ``--out``, write them."""
    parser = argparse.ArgumentParser(
        prog="adaptive-weights eann",
        description="Error-versus-MACs curve of an EANN (members run one after another, the paper's EANN), compared "
                    "with OPT+ (the best OPT net affordable at each cost) through cost-inflation factors.")
    parser.add_argument("members", nargs="+", metavar="MEMBER_RUN_DIR",
                        help="anytime run directories of one data set, cheapest first")
    parser.add_argument("--opt", nargs="+", default=[], metavar="DIR",
                        help="OPT run directories, or folders searched for single-exit runs")
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="errors reported (outputs are always chosen on validation errors)")
    parser.add_argument("--out", metavar="DIR", help="write eann.md, eann.csv, opt_plus.csv and eann.png here")
    add_quiet(parser)
    args = parser.parse_args(list(argv))
    report = eann_report(args.members, args.opt, split=args.split)
    print(_terminal_text(report))
    if args.out:
        write_report(report, args.out, markdown_name="eann.md")
        print(f"written: {Path(args.out) / 'eann.md'} with its CSV tables and eann.png")
    return 0


def _terminal_text(report: Report) -> str:
    """The markdown without the long explanation and the image link: what a terminal needs."""
    kept = [ln for ln in report.markdown.split("\n\n") if not ln.startswith(("![", "Exponentially deepening"))]
    return "\n\n".join(kept).strip()
