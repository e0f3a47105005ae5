"""OPT baselines (spec §5.4): single-exit runs that say how good an exit at a given depth can be.

``OPT at unit i`` is the same network, data and training as an anytime run, trained with the
one-hot scheme ``optimal@j`` (its only head at unit i, the trunk truncated after it) and the
``static`` strategy. The relative error increase of an anytime net at milestone q compares its
exit at ``idx_q = round_half_up(q * L) - 1`` with OPT at that unit, so every anytime run needs OPT
runs at the milestones (n = 9: units 6, 13, 19, 26) or, for a whole curve, at every exit.

``optimal@j`` indexes the *exit slots* of the model (with period p: units (L-1) % p, +p, ...). A
milestone unit that is not a slot of the run's period gets an OPT run with period 1: a single-exit
network is the same trunk and one head whatever the period, so nothing else changes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from ._flags import add_config_flag, add_quiet
from .config import EXECUTION_KEYS, RunConfig, StrategyConfig
from .models import count_units, exit_positions
from .schemes import is_single_exit, scheme_weights

__all__ = ["OptRun", "opt_units", "opt_config", "plan_opt_runs", "run_opt_plan", "num_units_of", "cli_main"]


def num_units_of(config: RunConfig) -> int:
    """L, the number of residual units of ``config``'s full architecture (no model is built)."""
    m = config.model
    return count_units(m.arch, n=m.n, depth=m.depth)


def opt_units(config: RunConfig, *, every_exit: bool = False) -> list[int]:
    """Units that need an OPT run: the distinct milestone units, or every exit of ``config``'s model
    (the slots where its scheme puts weight, as the trainer builds them)."""
    from .metrics import milestone_indices

    num_units = num_units_of(config)
    if not every_exit:
        return sorted(set(milestone_indices(num_units)))
    slots = exit_positions(num_units, config.model.period)
    weights = scheme_weights(config.scheme.name, len(slots), config.scheme.normalize).tolist()
    return [u for u, w in zip(slots, weights, strict=True) if w > 0]


def opt_config(config: RunConfig, unit: int) -> RunConfig:
    """``config`` turned into OPT at ``unit``: scheme ``optimal@j`` with j the slot of ``unit``,
    strategy ``static`` (no hyper-parameters), a default run name; everything else unchanged except
    the period when ``unit`` is not one of its slots (see the module docstring) and a ``log``
    normalisation, which becomes ``last``: the spec's OPT (f=2) weighs its one exit 1, while ``log``
    would weigh it log2(K+1) (4.8 for K = 27), scaling its loss, so its effective learning rate, and
    its head's weight decay."""
    num_units = num_units_of(config)
    if not 0 <= unit < num_units:
        raise ValueError(f"OPT unit {unit} is out of range for a model of {num_units} units (0 .. {num_units - 1})")
    model = config.model
    slots = exit_positions(num_units, model.period)
    if unit not in slots:
        model = replace(model, period=1)
        slots = exit_positions(num_units, 1)
    return replace(
        config,
        name="",
        model=model,
        scheme=replace(config.scheme, name=f"optimal@{slots.index(unit)}",
                       normalize="last" if config.scheme.normalize == "log" else config.scheme.normalize),
        strategy=StrategyConfig(name="static", params={}),
    ).resolve()


class OptRun(NamedTuple):
    """One planned OPT run: its exit's unit, its resolved config and its run directory."""

    unit: int
    config: RunConfig
    run_dir: Path


def plan_opt_runs(like_dir: str | Path, *, out_root: str | Path | None = None, every_exit: bool = False,
                  overrides: dict[str, Any] | None = None) -> list[OptRun]:
    """The OPT runs for the model of run directory ``like_dir``.

    Run directories are ``out_root/<default run name>`` (default: beside ``like_dir``).
    ``overrides`` (dotted keys) may only change where and how a run executes (``train.device``,
    ``train.num_threads``, ``train.progress``, ``train.compile``, ``train.checkpoint_minutes``),
    never what it computes, so the baselines stay comparable.
    """
    from .runs import load_run_config

    like_dir = Path(like_dir)
    if not (like_dir / "config.json").is_file():
        raise ValueError(f"--like {str(like_dir)!r}: not a run directory (no config.json)")
    config = load_run_config(like_dir)
    if is_single_exit(config.scheme.name):
        raise ValueError(f"--like {str(like_dir)!r} is itself an OPT run (scheme {config.scheme.name!r}); "
                         "give an anytime run")
    allowed = [k for k in EXECUTION_KEYS if k.startswith("train.")]
    bad = sorted(k for k in (overrides or {}) if k not in allowed)
    if bad:
        raise ValueError(f"overrides {bad} would change what OPT computes; allowed: {', '.join(allowed)}")
    if overrides:
        config = RunConfig.from_flat(overrides, base=config)
    root = Path(out_root) if out_root is not None else like_dir.parent
    plan: list[OptRun] = []
    for unit in opt_units(config, every_exit=every_exit):
        cfg = opt_config(config, unit)
        plan.append(OptRun(unit, cfg, root / cfg.name))
    return plan


def _state(run_dir: Path) -> str:
    """``done``, ``partial`` (a checkpoint to resume) or ``new``."""
    from .runs import is_completed

    if is_completed(run_dir):
        return "done"
    return "partial" if (run_dir / "checkpoints" / "last.pt").is_file() else "new"


def _check_existing(run_dir: Path, cfg: RunConfig) -> None:
    """An existing run directory must hold this very OPT run, or skipping/resuming it would mix
    protocols in the baselines."""
    from .runs import load_run_config

    stored, planned = load_run_config(run_dir).to_flat(), cfg.to_flat()
    changed = sorted(k for k in stored.keys() | planned.keys()
                     if k not in EXECUTION_KEYS and stored.get(k) != planned.get(k))
    if changed:
        detail = ", ".join(f"{k}: {stored.get(k)!r} there, {planned.get(k)!r} planned" for k in changed)
        raise ValueError(f"{run_dir} already holds another run ({detail}); remove it or choose another --out")


def run_opt_plan(plan: Sequence[OptRun], *, tensorboard: bool = True,
                 log: Callable[[str], None] = print, jobs: int = 1, progress: bool = True) -> list[Path]:
    """Train every run of ``plan``: completed ones are skipped, interrupted ones resumed (after
    checking that they hold the planned config). ``jobs`` > 1 trains that many at once, each in its
    own process (OPT runs are independent; on a CPU give each ``train.num_threads`` = cores / jobs),
    the deepest first so the longest runs do not start last.

    ``log`` gets a line when a run starts and one when it ends, with its final error and the time
    left for the rest, in the order the runs really finish. With ``jobs`` > 1 the runs' own progress
    lines (which would tear each other) give way to one bar over the runs (``progress``, on a
    terminal's stderr).

    Returns the run directories (all completed on return). A failed run fails the call, after the
    runs already under way have finished and been reported.
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs={jobs!r}: expected a positive integer")
    todo = []
    for i, (unit, cfg, run_dir) in enumerate(plan, 1):
        state = _state(run_dir)
        if state != "new":
            _check_existing(run_dir, cfg)
        if state == "done":
            log(f"[{i}/{len(plan)}] OPT at unit {unit}: {run_dir} is complete, skipped")
            continue
        todo.append((i, unit, cfg, run_dir, state == "partial"))
    if jobs == 1 or len(todo) <= 1:
        finished = FinishedRuns(len(todo), log)
        for i, unit, cfg, run_dir, resume in todo:
            log(_start_line(i, len(plan), unit, cfg, run_dir, resume))
            finished.add(unit, *_train_one(cfg, run_dir, resume, tensorboard))
        return [run_dir for _, _, run_dir in plan]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter per worker (no forked torch thread pools or open files)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {}
        for i, unit, cfg, run_dir, resume in sorted(todo, key=lambda t: -t[1]):
            log(_start_line(i, len(plan), unit, cfg, run_dir, resume))
            silent = cfg.with_train_execution(progress=False)
            futures[pool.submit(_train_one, silent, run_dir, resume, tensorboard)] = unit
        report_as_finished(futures, log=log, progress=progress)
    return [run_dir for _, _, run_dir in plan]


class FinishedRuns:
    """The line of each finished OPT run, ``[k/N done] OPT at unit U: test err E% (T s); eta ...``,
    where the ETA of the rest is the time per run so far (a log gets it too, without any bar)."""

    def __init__(self, total: int, log: Callable[[str], None], bar: Any = None) -> None:
        from .progress import EtaClock

        self.total, self.log, self.bar = total, log, bar
        self.done = 0
        self.clock = EtaClock(total)

    def _say(self, line: str) -> None:
        from .progress import writing_above_bars

        with writing_above_bars():
            self.log(line)
        if self.bar is not None:
            self.bar.update()

    def add(self, unit: int, summary: dict[str, Any], seconds: float) -> None:
        self.done += 1
        self._say(f"[{self.done}/{self.total} done] OPT at unit {unit}: {_final_error(summary)} ({seconds:.0f} s); "
                  f"{self.clock.text(self.done)}")

    def failed(self, unit: int, err: BaseException) -> None:
        self.done += 1
        self._say(f"[{self.done}/{self.total} failed] OPT at unit {unit}: {type(err).__name__}: {err}")


def report_as_finished(futures: Mapping[Future, int], *, log: Callable[[str], None] = print,
                       progress: bool = True) -> None:
    """Wait for ``futures`` (each an OPT run's ``_train_one``, keyed to its unit) and report each the
    moment it finishes, under a bar over them all; re-raise the first failure once all are done."""
    from concurrent.futures import as_completed

    from .progress import bar

    failures: list[BaseException] = []
    with bar(len(futures), "OPT runs", unit="run", enabled=progress) as runs:
        finished = FinishedRuns(len(futures), log, runs)
        for future in as_completed(futures):
            try:
                summary, seconds = future.result()
            except Exception as err:  # reported now, raised when the others have finished
                failures.append(err)
                finished.failed(futures[future], err)
            else:
                finished.add(futures[future], summary, seconds)
    if failures:
        raise failures[0]


def _final_error(summary: Mapping[str, Any]) -> str:
    """``test err 7.12%`` of the run's one exit (``val`` where it has no test split), or why none."""
    if summary.get("status") == "diverged":
        return "diverged"
    for split in ("test", "val"):
        errors = (summary.get("errors") or {}).get(split)
        if errors:
            return f"{split} err {100 * errors[-1]:.2f}%"
    return "no error recorded"


def _start_line(i: int, total: int, unit: int, cfg: RunConfig, run_dir: Path, resume: bool) -> str:
    return f"[{i}/{total}] OPT at unit {unit} ({cfg.scheme.name}): {'resuming' if resume else 'training'} {run_dir}"


def _train_one(cfg: RunConfig, run_dir: Path, resume: bool, tensorboard: bool) -> tuple[dict[str, Any], float]:
    """Train one OPT run; its summary and the seconds it took (measured where it ran)."""
    import time

    from .training import train

    t0 = time.monotonic()
    summary = train(cfg, out_dir=run_dir, resume=resume, tensorboard=tensorboard)
    return summary, time.monotonic() - t0


def cli_main(argv: Sequence[str]) -> int:
    """``adaptive-weights opt --like RUN_DIR [--like RUN_DIR ...] [--out DIR] [--every-exit] [--dry-run]
    [--train.device D] [--jobs N] [--train.num_threads T] [--train.KEY VALUE ...] [-q]``."""
    parser = argparse.ArgumentParser(
        prog="adaptive-weights opt",
        description="Train the OPT baselines (single-exit runs, the paper's OPT) for the model of an anytime run: "
                    "at the milestone units round_half_up(q*L)-1, q in {1/4, 1/2, 3/4, 1} (n=9: 6, 13, 19, 26), "
                    "or at every exit. Everything but the scheme and strategy is copied from --like (a scheme.normalize "
                    "log becomes last: OPT weighs its one exit 1).")
    parser.add_argument("--like", required=True, action="append", metavar="RUN_DIR",
                        help="an anytime run directory to copy; repeat for several (e.g. one per seed)")
    parser.add_argument("--out", metavar="DIR", help="parent directory of the OPT runs (default: beside RUN_DIR)")
    parser.add_argument("--every-exit", action="store_true", help="one OPT run per exit instead of per milestone")
    parser.add_argument("--dry-run", action="store_true", help="list the runs without training")
    add_config_flag(parser, "train.device", dest="device", help="where the OPT runs train (default: the --like run's)")
    parser.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard event files")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="train N OPT runs at once, each in its own process (default 1), with one line per "
                             "finished run and a bar over them; on a CPU pair it with --train.num_threads")
    add_config_flag(parser, "train.num_threads", dest="threads", type=int, metavar="T",
                    help="CPU threads of every OPT run (default: the --like run's)")
    add_quiet(parser)
    parser.epilog = ("Other execution keys are dotted flags as for train (--train.compile true, "
                     "--train.checkpoint_minutes 10); keys that would change what OPT computes are refused.")
    args, extra = parser.parse_known_args(list(argv))
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        raise ValueError(f"--jobs {args.jobs} / --train.num_threads {args.threads}: expected positive integers")
    from .cli import parse_overrides

    overrides = {k: v for k, v in (("train.device", args.device), ("train.num_threads", args.threads)) if v}
    overrides.update(parse_overrides(extra))
    if args.quiet:
        overrides["train.progress"] = False
    try:
        plan: list[OptRun] = []
        planned: set[Path] = set()  # an OPT run two --like runs share is trained once
        for like in args.like:
            for p in plan_opt_runs(like, out_root=args.out, every_exit=args.every_exit, overrides=overrides or None):
                if p.run_dir not in planned:
                    planned.add(p.run_dir)
                    plan.append(p)
        if args.dry_run:
            for unit, cfg, run_dir in plan:
                print(f"unit {unit:>3}  {cfg.scheme.name:<12} {_state(run_dir):<8} {run_dir}")
            return 0
        dirs = run_opt_plan(plan, tensorboard=not args.no_tensorboard, jobs=args.jobs, progress=not args.quiet,
                            log=(lambda line: None) if args.quiet else print)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    print("OPT runs:")
    for d in dirs:
        print(f"  {d}")
    return 0
