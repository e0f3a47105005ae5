"""``adaptive-weights`` command line: train | evaluate | strategies | objectives | gradients | plot | report |
opt | eann | sweep.

Every config key is a dotted flag (``--model.n 9``, ``--strategy.gamma 0.3``; dashes or
underscores), exactly the keys of YAML files and Ray Tune param spaces (see ``config.py``). Bad
values fail before any work starts, naming the key, the value and what is allowed.

Every command reports a refusal (:class:`~adaptive_weights.errors.RefusedError`: a bad value, a
run that exists, a corrupt or unsafe file, a bad label, a diverged run, a busy run directory; also
a missing file) as one line ``error: ...`` on stderr and exit status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from ._flags import add_config_flag, add_quiet
from .errors import RefusedError

__all__ = ["main", "parse_overrides", "command_parser"]


def parse_overrides(tokens: Sequence[str]) -> dict[str, Any]:
    """``["--model.n", "9", "--train.amp", "--x.y=z"]`` -> ``{"model.n": "9", "train.amp": "true",
    "x.y": "z"}``. A flag followed by another flag (or nothing) is a boolean ``true``."""
    from .config import config_key, suggest_keys

    out: dict[str, Any] = {}
    i = 0
    tokens = list(tokens)
    while i < len(tokens):
        tok = tokens[i]
        bare = tok[2:].split("=", 1)[0]
        if not tok.startswith("--") or ("." not in bare and bare != "name"):
            hints = suggest_keys(bare) if tok.startswith("--") else []
            hint = f"did you mean {' or '.join('--' + h for h in hints)}? " if hints else ""
            raise ValueError(f"unexpected argument {tok!r}; {hint}config keys are given as --section.key VALUE "
                             "(e.g. --model.n 9); see --help")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            value = tokens[i + 1]
            i += 2
        else:
            value = "true"
            i += 1
        out[config_key(key)] = value
    return out


def _config_help() -> str:
    """Every config key with its type, default and one-line description (the ``doc`` of its
    field, :func:`adaptive_weights.config.key_docs`), in aligned columns."""
    from .config import _SECTIONS, OPEN_SECTIONS, PRESETS, RunConfig, key_docs

    docs = key_docs()
    default = RunConfig()
    rows = [("--name", "str", repr(default.name), docs["name"])]
    for section, tp in _SECTIONS.items():
        hints = typing.get_type_hints(tp)
        for f in fields(tp):
            if section in OPEN_SECTIONS and f.name == "params":
                continue
            value = getattr(getattr(default, section), f.name)
            tname = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            rows.append((f"--{section}.{f.name}", tname, str(value), docs[f"{section}.{f.name}"]))
    listings = {"strategy": "see below", "objective": "adaptive-weights objectives",
                "gradient": "adaptive-weights gradients"}
    rows += [(f"--{s}.<hparam>", "", "", f"{docs[f'{s}.<hparam>']} ({listings[s]})") for s in OPEN_SECTIONS]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["config keys (flag = YAML key = Ray Tune param_space key; dashes or underscores):",
             f"  {'key':<{widths[0]}}  {'type':<{widths[1]}}  {'default':<{widths[2]}}  description"]
    lines += [f"  {k:<{widths[0]}}  {t:<{widths[1]}}  {d:<{widths[2]}}  {doc}" for k, t, d, doc in rows]
    lines.append("presets (train.preset): " + ", ".join(
        f"{k} ({e} epochs, lr {list(v)} after {list(m)})" for k, (e, m, v) in PRESETS.items()))
    return "\n".join(lines)


def _build_config(args: argparse.Namespace, overrides: dict[str, Any]):
    from .config import RunConfig, load_config_file

    flat: dict[str, Any] = {}
    if getattr(args, "config", None):
        flat.update(load_config_file(args.config))
    flat.update(overrides)
    return RunConfig.from_flat(flat)


def _cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    """Resolve the config once (bad values fail here, before any work) and train it."""
    from .config import RunConfig, load_config_file
    from .training import train

    overrides = parse_overrides(extra)
    if args.quiet:  # an execution key: it changes how the run reports, never what it computes
        overrides["train.progress"] = False
    if args.resume:
        run_dir = Path(args.resume)
        changes = load_config_file(args.config) if args.config else {}
        changes.update(overrides)
        # the changes apply to the recorded config: a plug-in changed by name (--strategy.name aann)
        # drops the recorded one's hyper-parameters, so the resume names the change it refuses
        cfg = RunConfig.from_flat(changes, base=RunConfig.from_flat(load_config_file(run_dir / "config.json"))).resolve()
        summary = train(cfg, out_dir=run_dir, resume=True)
    else:
        cfg = _build_config(args, overrides).resolve()
        summary = train(cfg, out_dir=args.out)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone prints the table
        _print_summary(summary)
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    from .evaluate import format_exit_table

    print(format_exit_table(summary["exit_units"], summary["exit_macs"], summary["errors"]))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_checkpoint, load_model_state
    from .evaluate import evaluate_exits, format_exit_table
    from .runs import load_run_config
    from .training import build_run, resolve_device

    run_dir = Path(args.run_dir)
    cfg = load_run_config(run_dir)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    data, model, _, _ = build_run(cfg, device)
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt_path, map_location=device)
    load_model_state(model, state["model"], ckpt_path)
    if args.split not in data.eval:
        raise ValueError(f"--split {args.split!r}: this run's data has splits {sorted(data.eval)}")
    fractions = _budget_fractions(args, model.exit_macs(), data) if args.budgets else []
    ev = evaluate_exits(model, data.eval[args.split], progress=None if args.quiet else f"evaluate {args.split}")
    print(f"{cfg.name}: {args.split} split, {ev.num_samples} samples, epoch {state['epoch']}")
    print(format_exit_table(model.exit_units, model.exit_macs(), {args.split: ev.errors}))
    if fractions:
        _print_budgeted(model, data, fractions, progress=not args.quiet)
    return 0


def _budget_fractions(args: argparse.Namespace, exit_macs: Sequence[float], data) -> list[float]:
    """``--budgets`` as fractions of the full cost, refused before any evaluation runs when it cannot
    be served: no validation split to fit thresholds on, ``--split val``, or a fraction outside
    [first exit's cost, 1] (no early exit can average below the first exit's MACs)."""
    if "val" not in data.eval:
        raise ValueError("--budgets needs a validation split to fit thresholds on (data.val_split > 0); "
                         "thresholds are never fitted on the test split")
    if args.split == "val":
        raise ValueError("--budgets evaluates on the test split; thresholds are fitted on val")
    try:
        fractions = [float(f) for f in args.budgets.split(",")]
    except ValueError:
        raise ValueError(f"--budgets: expected comma-separated fractions of the full cost, got {args.budgets!r}") from None
    lowest = exit_macs[0] / exit_macs[-1]
    outside = [f for f in fractions if not lowest <= f <= 1]
    if outside:
        raise RefusedError(f"--budgets {args.budgets}: {outside[0]:g} is outside [{lowest:.3f}, 1], the fractions of "
                           f"the full cost ({exit_macs[-1]:,.0f} MACs) from the first exit's {exit_macs[0]:,.0f} MACs "
                           "to the last exit's")
    return fractions


def _print_budgeted(model, data, fractions: Sequence[float], *, progress: bool = True) -> None:
    """Budgeted-batch inference: thresholds fitted on the validation split for each target average
    cost (a fraction of the full network's MACs), then real per-sample early exit on the test split
    (``progress``: a bar with an ETA over it all, on a terminal; it takes a minute on CIFAR)."""
    from .budgeted import evaluate_budgeted

    full = model.exit_macs()[-1]
    rows = evaluate_budgeted(model, data.eval["val"], data.eval["test"], [f * full for f in fractions],
                             progress=f"budgeted inference, {len(fractions)} budget(s)" if progress else None)
    print(f"\nbudgeted-batch inference (thresholds fitted on val, evaluated on test; full cost {full:,.0f} MACs)")
    print(f"{'target':>8} {'val cost':>9} {'test cost':>10} {'test err %':>11}  exits used (test samples per exit)")
    for f, r in zip(fractions, rows, strict=False):
        print(f"{f:>8.3f} {r['val_avg_macs'] / full:>9.3f} {r['avg_macs'] / full:>10.3f} "
              f"{100 * (1 - r['accuracy']):>11.2f}  {r['exit_histogram']}")


def _cmd_strategies(args: argparse.Namespace) -> int:
    from .strategies import describe_strategies

    print(describe_strategies())
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .logging import read_metrics
    from .plots import plot_probability_stack, save_figure

    if args.what == "report":
        from .redraw import redraw_report

        if args.out:
            raise RefusedError("plot report: --out is not taken; the figures are redrawn in place, in the report's "
                               "directory")
        written, kept = redraw_report(args.run_dir, args.runs)
        for path in written:
            print(path)
        if kept:
            print(f"left as they were (their data is not in the report's tables): {', '.join(kept)}")
        return 0
    if args.runs:
        raise RefusedError("plot probabilities: --runs is only taken by plot report")
    run_dir = Path(args.run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    out = Path(args.out) if args.out else run_dir / "probability_stack.png"
    save_figure(plot_probability_stack(rows, title=f"{run_dir.resolve().name}: probability of each exit"), out)
    print(out)
    return 0


def _train_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="adaptive-weights train", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Train an anytime network. Config keys are dotted flags.",
                                epilog=_lazy_epilog() if {"-h", "--help"} & set(argv) else None)
    p.add_argument("--config", help="YAML/JSON file of config keys (nested or dotted)")
    p.add_argument("--out", help="run directory (default results/runs/<name>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    add_quiet(p)
    args, extra = p.parse_known_args(argv)
    return _cmd_train(args, extra)


def _evaluate_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="adaptive-weights evaluate", description="per-exit error table of a trained run")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["test", "val"])
    add_config_flag(p, "train.device", dest="device", default="auto",
                    help="where to evaluate: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--budgets", metavar="F1,F2,...",
                   help="also run budgeted-batch inference at these average costs (fractions of the full MACs)")
    add_quiet(p)
    return _cmd_evaluate(p.parse_args(argv))


def _strategies_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="adaptive-weights strategies",
                                description="list registered strategies and their hyper-parameters")
    return _cmd_strategies(add_quiet(p).parse_args(argv))


def _list_plugins(argv: list[str], command: str, description: str, describe) -> int:
    add_quiet(argparse.ArgumentParser(prog=f"adaptive-weights {command}", description=description)).parse_args(argv)
    print(describe())
    return 0


def _objectives_main(argv: list[str]) -> int:
    from .objectives import describe_objectives

    return _list_plugins(argv, "objectives", COMMANDS["objectives"][0], describe_objectives)


def _gradients_main(argv: list[str]) -> int:
    from .gradients import describe_gradient_rules

    return _list_plugins(argv, "gradients", COMMANDS["gradients"][0], describe_gradient_rules)


def _plot_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="adaptive-weights plot", description="redraw a run's figures from its files (probabilities RUN_DIR), or "
        "a report's figures from its CSV tables, in place, without its runs (report REPORT_DIR)")
    p.add_argument("what", choices=["probabilities", "report"])
    p.add_argument("run_dir", metavar="DIR", help="a run directory (probabilities) or a report's directory (report)")
    p.add_argument("--out", help="PNG path (probabilities; default RUN_DIR/probability_stack.png)")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR",
                   help="report: the report's run directories (or folders holding them), to fill its "
                        "probability_stacks.csv and redraw the probability stacks of a report written without it; "
                        "a run is taken only when its per-exit errors are the report's")
    return _cmd_plot(add_quiet(p).parse_args(argv))


# The one dispatch table: command -> (help line, "module:function" that takes the command's argv).
# Commands of other modules are imported only when they run.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train one run", "adaptive_weights.cli:_train_main"),
    "evaluate": ("per-exit error table of a trained run", "adaptive_weights.cli:_evaluate_main"),
    "strategies": ("list registered strategies and their hyper-parameters", "adaptive_weights.cli:_strategies_main"),
    "objectives": ("list registered objectives (objective.name) and their hyper-parameters",
                   "adaptive_weights.cli:_objectives_main"),
    "gradients": ("list registered gradient rules (gradient.name) and their hyper-parameters",
                  "adaptive_weights.cli:_gradients_main"),
    "plot": ("redraw a run's figures, or a report's from its tables", "adaptive_weights.cli:_plot_main"),
    "report": ("tables and figures over many runs", "adaptive_weights.report:cli_main"),
    "opt": ("plan and train the OPT baselines of a run", "adaptive_weights.opt:cli_main"),
    "eann": ("EANN analysis over runs", "adaptive_weights.eann_cli:cli_main"),
    "sweep": ("Ray Tune sweep from a sweep file", "adaptive_weights.tuning.cli:cli_main"),
    "pack": ("train a sweep file's grid as packed runs in this process (no Ray)",
             "adaptive_weights.tuning.packed:cli_main"),
}


def _command(name: str):
    import importlib

    module, _, attr = COMMANDS[name][1].partition(":")
    return getattr(importlib.import_module(module), attr)


def command_parser() -> argparse.ArgumentParser:
    """``adaptive-weights`` itself: ``--version`` and one subparser per command of :data:`COMMANDS`
    (each only names its command; the command's own parser is built when it runs)."""
    parser = argparse.ArgumentParser(prog="adaptive-weights", description="Anytime neural networks: train, "
                                     "evaluate, compare strategies, sweep and report.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"adaptive-weights {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_line, _) in COMMANDS.items():
        sub.add_parser(name, help=f"{help_line} (see `adaptive-weights {name} --help`)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        command_parser().parse_args(argv[:1])  # --help, or an unknown command: argparse prints it and exits
        return 2
    return _reporting_refusals(lambda: _command(argv[0])(argv[1:]))


# RefusedError is a ValueError; the library's older refusals are plain ValueErrors, so both print.
_REFUSALS = (RefusedError, ValueError, FileNotFoundError)


def _reporting_refusals(command: Callable[[], int | None]) -> int:
    """Run one command: its exit status, or 2 with ``error: <message>`` for a refusal."""
    try:
        return int(command() or 0)
    except _REFUSALS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _lazy_epilog() -> str:
    try:
        from .strategies import describe_strategies

        listing = describe_strategies()
    except Exception as err:  # the help must not die with a broken plugin
        listing = f"(strategies unavailable: {err})"
    return _config_help() + "\n\nstrategies:\n" + listing


if __name__ == "__main__":
    sys.exit(main())
