"""``adaptive-weights sweep``: run a sweep file with Ray Tune, locally or on a cluster.

Without ``--address`` the sweep starts an in-process Ray on this machine, bound to loopback
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` set before Ray is imported, no dashboard): nothing to
start by hand, nothing reachable from the network. With ``--address`` it joins an existing cluster
(``ray start --head`` on one node, ``ray start --address HEAD:PORT`` on the others) with Ray's token
authentication (``RAY_AUTH_MODE=token`` unless set otherwise). Results and checkpoints go to
``OUT/NAME`` (``--out`` default ``results/sweeps``; any storage path Ray supports, e.g. a shared file
system or ``s3://bucket/sweeps`` on a cluster). A failed trial is retried from its last checkpoint
(``--max-failures``); an interrupted sweep continues with ``--resume``, which rebuilds the sweep
from ``sweep.json`` and the trials' checkpoints (never from Ray's pickled state) and runs only the
trials that did not finish. ``--report`` chooses each strategy's setting (the paper's rule,
:mod:`adaptive_weights.tuning.selection`) and writes the report of the chosen settings. ``--pack N``
(``sweep.pack``) trains the runs that can share a graph in packs of at most N, one Ray trial per
pack (:mod:`adaptive_weights.tuning.packsweep`); each run keeps its own run directory. ``--plugin
MODULE`` adds to ``sweep.imports``, the modules that register plug-ins for the driver and every
worker. The data and the plug-ins are checked before Ray starts (and by ``--dry-run``); trials that
fail anyway are one ``error:`` line with the first cause, and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from adaptive_weights.errors import SweepFailedError

from .cluster import require_ray_tune
from .launcher import run_sweep, write_sweep_report
from .plan import expected_trials, experiment_diff
from .sweepdir import DEFAULT_OUT, RUNS_DIR, SweepDir, experiment_path, is_uri, local_results_dir
from .sweepfile import SweepSpec, load_sweep, parse_overrides

__all__ = ["cli_main"]


def _complete_runs(out: str, spec: SweepSpec) -> list[Path] | None:
    """The exported run directories if every trial of ``spec`` finished (or a scheduler stopped
    it) with the config ``spec`` gives it, else None (a changed sweep file is then run_sweep's to
    refuse or resume)."""
    from adaptive_weights._io import read_json
    from adaptive_weights.runs import is_final

    runs_dir = local_results_dir(out, spec.name) / RUNS_DIR
    experiment = experiment_path(out, spec.name)[1]
    stopped = SweepDir(experiment).stopped() if is_uri(experiment) or Path(experiment).is_dir() else set()
    trials = {t["name"]: t for t in spec.trials}
    names = list(trials) if spec.search == "grid" else sorted(p.name for p in runs_dir.glob("*") if p.is_dir())
    if len(names) < expected_trials(spec):
        return None
    dirs = []
    for name in names:
        run_dir = runs_dir / name
        if not (is_final(run_dir) or (name in stopped and (run_dir / "summary.json").is_file())):
            return None
        if spec.search == "grid" and experiment_diff(read_json(run_dir / "summary.json").get("config") or {},
                                                     trials[name]):
            return None
        dirs.append(run_dir)
    return dirs


def _parser() -> argparse.ArgumentParser:
    from adaptive_weights._flags import add_quiet

    from .sweepfile import DEFAULT_MAX_TRIALS, SCHEDULERS

    p = argparse.ArgumentParser(prog="adaptive-weights sweep", description=__doc__.split("\n\n")[0],
                                epilog="Any dotted config key given as a flag replaces the file's value, read as "
                                       "YAML: --data.root /data, --train.seed '[0, 1]' (a grid axis). "
                                       "Sweep file format: see docs/sweeps.md.")
    p.add_argument("sweep_file", metavar="SWEEP.yaml", help="config keys; a list is a grid axis")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"storage root; results go to OUT/NAME (default {DEFAULT_OUT})")
    p.add_argument("--name", help="sweep name (default: sweep.name in the file, else the file's stem)")
    p.add_argument("--address", help="an existing Ray cluster (HEAD_IP:PORT), joined with Ray's token "
                   "authentication; default: in-process Ray on loopback")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs per trial; a fraction (0.25) lets several small trials share one GPU")
    p.add_argument("--workers-per-trial", type=int, default=1,
                   help="train every trial data-parallel on N Ray Train workers (DDP); --cpus-per-trial and "
                        "--gpus-per-trial are then per worker")
    p.add_argument("--max-concurrent", type=int, default=None, help="at most N trials at once (default: as resources allow)")
    p.add_argument("--max-failures", type=int, default=3, help="retries of a failed trial from its last checkpoint")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                   help="overrides sweep.scheduler: asha stops poor trials early on val/err/mean, pbt mutates "
                        "searched strategy keys (default fifo: every trial to the end, as in the paper)")
    p.add_argument("--pack", type=int, default=None,
                   help="overrides sweep.pack: train the runs that can share a graph (they differ only in seed, "
                        "scheme, strategy, objective) as packed networks of at most N runs, one Ray trial per pack "
                        "with the trial's resources (default 1: every run its own trial); grid and random search, "
                        "fifo scheduler only")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", dest="imports",
                   help="adds MODULE to sweep.imports (repeatable): a module that registers plug-ins, imported here "
                        "before the sweep file's trials are resolved and in every Ray worker before its trial")
    p.add_argument("--opt-baselines", action="store_true",
                   help="as sweep.opt_baselines: also train the OPT baselines (single exit at each milestone) of the "
                        "grid's models, every seed, as trials of the sweep; the report compares against them")
    p.add_argument("--baselines", nargs="+", type=Path, default=[], metavar="DIR",
                   help="OPT run directories (or folders of them) already trained, for the report's relative "
                        "increase against OPT")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep; finished trials are kept")
    p.add_argument("--report", action="store_true",
                   help="choose each strategy's setting and write the report to OUT/NAME/report")
    p.add_argument("--no-tensorboard", action="store_true", help="runs write no TensorBoard events")
    p.add_argument("--dry-run", action="store_true", help="validate the sweep file and list the trials only")
    p.add_argument("--max-trials", type=int, default=DEFAULT_MAX_TRIALS,
                   help=f"refuse a grid of more trials than this (default {DEFAULT_MAX_TRIALS:,}); every trial is "
                        "validated before Ray starts")
    add_quiet(p)  # no line per trial, no bar
    p.add_argument("-v", "--verbose", action="store_true", help="Ray's own progress tables and every result")
    return p


def _print_packs(spec: SweepSpec) -> None:
    """The dry run of a packed grid: its packs (a fresh sweep's; a resume packs what is left)."""
    from .packsweep import plan_packs
    from .plan import SweepPlan

    packs = plan_packs(spec, SweepPlan(trials=list(spec.trials)))  # refused before anything is printed
    print(f"{spec.describe()} in {len(packs)} pack(s) of at most {spec.pack} runs, one Ray trial each:")
    for name, members in packs.items():
        print(f"  {name}: {', '.join(t['name'] for t in members)}")


def _failure_advice(spec: SweepSpec) -> str:
    """What works after a failed trial: the same command with --resume, and which file changes it takes."""
    change = ("a fix in the sweep file is taken too when it changes only trials that have not finished (they "
              "start again); to change finished trials start a new sweep (--name NEW)" if spec.search == "grid" else
              "the sweep file's search must stay the same (execution-only keys aside); for another search start "
              "a new sweep (--name NEW)")
    return (f"fix the cause and run the same command with --resume: failed and interrupted trials continue from "
            f"their last checkpoint, finished ones are kept; {change}")


def cli_main(argv: Sequence[str]) -> int:
    """``adaptive-weights sweep SWEEP.yaml [--out DIR] [--address ADDR] [--gpus-per-trial 0.25]
    [--cpus-per-trial 1] [--max-concurrent N] [--resume] [--report]``. Bad input raises
    RefusedError (the CLI prints it and exits with status 2) before Ray starts."""
    args, extra = _parser().parse_known_args(list(argv))
    plugins = _plugin_flags(args.imports)  # imported first: the sweep file may name their plug-ins
    spec = load_sweep(args.sweep_file, name=args.name, overrides=parse_overrides(extra), max_trials=args.max_trials)
    spec = replace(spec, imports=tuple(dict.fromkeys([*spec.imports, *plugins])))
    if args.scheduler:
        spec = replace(spec, scheduler=args.scheduler)
    if args.opt_baselines:
        from .baselines import with_opt_baselines

        spec = with_opt_baselines(spec)  # the same trials as sweep.opt_baselines: true (added once)
    baselines = _baseline_dirs(args.baselines)  # refused before anything runs
    if args.pack is not None:
        from .sweepfile import check_pack_size

        spec = replace(spec, pack=check_pack_size(args.pack, "--pack"))
    from .launcher import check_options

    # what the real run refuses before Ray starts, refused before the dry run prints or the lock writes
    spec = check_options(spec, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                         max_concurrent=args.max_concurrent, max_failures=args.max_failures,
                         workers_per_trial=args.workers_per_trial)
    if args.dry_run or not (args.report and not args.resume):  # (a finished sweep's report reads no data)
        from .preflight import preflight

        preflight(spec, address=args.address)  # the data and the plug-ins, as run_sweep checks them
    if args.dry_run:
        if spec.pack > 1 and spec.search == "grid":
            _print_packs(spec)
            return 0
        print(spec.describe())
        for t in spec.trials:
            print(f"  {t['name']}")
        return 0
    from .sweepdir import driver_lock

    local_dir = local_results_dir(args.out, spec.name)
    if not (args.report and not args.resume):  # only a finished sweep's report needs no Ray
        require_ray_tune()  # before the lock makes the sweep's directory
    with driver_lock(local_dir):  # for the command's whole life: the sweep and its report
        return _run(args, spec, local_dir, baselines)


def _plugin_flags(modules: list[str]) -> tuple[str, ...]:
    """``--plugin MODULE``: checked and imported as ``sweep.imports`` is, named as the flag in a refusal."""
    from .plugins import check_module_names, import_plugins

    names = check_module_names(modules, "--plugin")
    import_plugins(names, "--plugin")
    return names


def _baseline_dirs(paths: list[Path]) -> list[Path]:
    """``--baselines``: run directories, or folders holding them (one level down)."""
    from adaptive_weights.errors import RefusedError

    dirs: list[Path] = []
    for path in paths:
        found = [path] if (path / "summary.json").is_file() else sorted(
            d for d in path.iterdir() if (d / "summary.json").is_file()) if path.is_dir() else []
        if not found:
            raise RefusedError(f"--baselines {str(path)!r}: no run directory there (none holds a summary.json)")
        dirs.extend(found)
    return dirs


def _run(args: argparse.Namespace, spec: SweepSpec, local_dir: Path, baselines: list[Path]) -> int:
    """The command after the dry run, under the sweep's driver lock."""
    existing = _complete_runs(args.out, spec) if (args.report and not args.resume) else None
    if existing is not None:
        run_dirs = existing  # a finished sweep: only the report is asked for
    else:
        require_ray_tune()
        packed = f" in packs of at most {spec.pack} runs, one Ray trial each" if spec.pack > 1 else ""
        print(f"{spec.describe()}{packed} -> {experiment_path(args.out, spec.name)[1]}"
              + (f" on the Ray cluster at {args.address}" if args.address else " (in-process Ray, loopback)"))
        try:
            outcome = run_sweep(spec, out=args.out, address=args.address, cpus_per_trial=args.cpus_per_trial,
                                gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
                                resume=args.resume, max_failures=args.max_failures,
                                tensorboard=not args.no_tensorboard, workers_per_trial=args.workers_per_trial,
                                pack=spec.pack, verbose=0 if args.quiet else (2 if args.verbose else 1))
        except SweepFailedError as err:  # once, with the first cause; exit status 1 as for unfinished trials
            print(f"error: {err}; {_failure_advice(spec)}", file=sys.stderr)
            return 1
        print(f"{len(outcome.run_dirs)} run directories in {outcome.runs_dir}")
        if args.no_tensorboard is False and outcome.run_dirs:
            print(f"TensorBoard of every trial: tensorboard --logdir {outcome.runs_dir}")
        if outcome.unfinished:
            print(f"error: {len(outcome.unfinished)} trial(s) did not finish (interrupted?): "
                  f"{', '.join(outcome.unfinished)}; continue with the same command and --resume", file=sys.stderr)
            return 1
        run_dirs = outcome.run_dirs
    if args.report:
        path = write_sweep_report(run_dirs, local_dir / "report", title=f"Sweep {spec.name}", baselines=baselines)
        print(f"report: {path}")
    return 0
