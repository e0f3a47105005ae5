"""``adaptive-weights sweep``: run a sweep file's grid with Ray Tune, locally or on a cluster.

Without ``--address`` the sweep starts an in-process Ray on this machine, bound to loopback
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` set before Ray is imported, no dashboard): nothing to
start by hand, nothing reachable from the network. With ``--address`` it joins an existing cluster
(``ray start --head`` on one node, ``ray start --address HEAD:PORT`` on the others). Results and
checkpoints go to ``OUT/NAME`` (``--out`` default ``results/sweeps``; any storage path Ray
supports, e.g. a shared file system or ``s3://bucket/sweeps`` on a cluster). A failed trial is
retried from its last checkpoint (``--max-failures``); an interrupted sweep continues with
``--resume`` and does not re-run finished trials. ``--report`` chooses each strategy's setting
(the paper's rule, :mod:`tuning.selection`) and writes the report of the chosen settings.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sweepfile import SweepSpec, load_sweep

__all__ = ["run_sweep", "write_sweep_report", "cli_main", "SweepOutcome", "ensure_loopback",
           "DEFAULT_OUT", "SELECTION_METRIC"]

DEFAULT_OUT = "results/sweeps"
SELECTION_METRIC = "val/err/mean"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_SPEC_FILE = "sweep.json"
_RUNS_DIR = "runs"


@dataclass(frozen=True)
class SweepOutcome:
    """Where a finished sweep lives and what came of it."""

    experiment: str             # Ray's experiment path (a local directory or a URI)
    runs_dir: Path              # local copies of every trial's final run directory
    run_dirs: list[Path]
    errored: list[str]          # names of trials that failed for good
    unfinished: list[str]       # names of trials that stopped early (ASHA) or were interrupted


def ensure_loopback() -> None:
    """Make every Ray process of a single-machine run bind to 127.0.0.1 (DESIGN.md, "Keep Ray on
    loopback"). Ray reads the variable when it is imported, so it must be set before that."""
    if "ray" in sys.modules:
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            raise RuntimeError(
                f"Ray was imported before {LOOPBACK_ENV}=0 was set, so a local Ray would bind to the network "
                f"address; set {LOOPBACK_ENV}=0 in the environment (the Makefile does) or pass --address")
    os.environ[LOOPBACK_ENV] = "0"


def _is_uri(path: str) -> bool:
    return "://" in path


def _experiment_path(out: str, name: str) -> tuple[str, str]:
    """(storage root for Ray, experiment path): absolute local paths (trial workers change
    directory) or URIs left as they are."""
    root = out if _is_uri(out) else str(Path(out).expanduser().resolve())
    return root, f"{root.rstrip('/')}/{name}"


def _local_results_dir(out: str, name: str) -> Path:
    """Where run directories and the report go on this machine: the experiment directory when
    it is local, else ``results/sweeps/NAME``."""
    if _is_uri(out):
        return Path(DEFAULT_OUT).resolve() / name
    return Path(out).expanduser().resolve() / name


def _trial_name(trial: Any) -> str:
    return str(trial.config["run"])


def run_sweep(
    spec: SweepSpec,
    *,
    out: str | Path = DEFAULT_OUT,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_concurrent: int | None = None,
    resume: bool = False,
    scheduler: str = "fifo",
    max_failures: int = 3,
    tensorboard: bool = True,
    verbose: int = 1,
) -> SweepOutcome:
    """Run (or with ``resume`` continue) ``spec`` with Ray Tune; returns where its results are.

    ``scheduler``: ``fifo`` (full grid, as in the paper) or ``asha`` (early stopping on
    ``val/err/mean``). Without ``address`` a loopback-only Ray is started in this process and shut
    down afterwards; an already initialised Ray is used as it is. ``verbose``: 0 silent, 1 a line
    per finished trial, 2 Ray's own progress tables and results.
    """
    out = str(out)
    if cpus_per_trial <= 0 or gpus_per_trial < 0:
        raise ValueError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, got {cpus_per_trial}, {gpus_per_trial}")
    if gpus_per_trial > 1 and not float(gpus_per_trial).is_integer():
        raise ValueError(f"--gpus-per-trial {gpus_per_trial}: a fraction must be below 1 (several trials share "
                         "one GPU) or a whole number of GPUs")
    if max_concurrent is not None and max_concurrent < 1:
        raise ValueError(f"--max-concurrent must be >= 1, got {max_concurrent}")
    if scheduler not in ("fifo", "asha"):
        raise ValueError(f"--scheduler {scheduler!r}; allowed: fifo, asha")
    if max_failures < 0:
        raise ValueError(f"--max-failures must be >= 0, got {max_failures}")
    root, experiment = _experiment_path(out, spec.name)
    local_dir = _local_results_dir(out, spec.name)
    trials = _with_threads(spec.trials, cpus_per_trial)
    _check_experiment(experiment, trials, resume=resume)
    if address is None:
        ensure_loopback()

    import ray
    from ray import tune

    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(address="local", include_dashboard=False, configure_logging=verbose > 0,
                     log_to_driver=verbose > 1)
        else:
            ray.init(address=address, log_to_driver=verbose > 1)
        started = True
    try:
        from .trainable import train_trial

        # trials are named in the param space; their configs travel with the trainable
        runs = {t["name"]: t for t in trials}
        trainable = tune.with_resources(tune.with_parameters(train_trial, runs=runs),
                                        {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
        # a snapshot of the experiment after each kept checkpoint is what makes --resume exact
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        if resume:
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True,
                                       resume_errored=True, restart_errored=False)
        else:
            if not _is_uri(experiment):
                _write_spec(Path(experiment), trials)
            tuner = tune.Tuner(
                trainable,
                param_space={"run": tune.grid_search(list(runs)), "tensorboard": tensorboard},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=max_concurrent,
                    scheduler=_scheduler(scheduler, trials),
                    trial_name_creator=_trial_name,
                    trial_dirname_creator=_trial_name,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=spec.name,
                    storage_path=root,
                    failure_config=tune.FailureConfig(max_failures=max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    verbose=max(0, verbose - 1),
                    callbacks=[_progress_callback(len(trials))] if verbose == 1 else [],
                ),
            )
        grid = tuner.fit()
        run_dirs, errored = _export_runs(grid, local_dir / _RUNS_DIR)
    finally:
        if started:
            ray.shutdown()
    unfinished = sorted({t["name"] for t in trials} - set(errored) - _completed(run_dirs))
    return SweepOutcome(experiment, local_dir / _RUNS_DIR, run_dirs, errored, unfinished)


def _completed(run_dirs: Sequence[Path]) -> set[str]:
    from adaptive_weights.runs import is_completed

    return {p.name for p in run_dirs if is_completed(p)}


def _progress_callback(total: int):
    """One line per finished or failed trial (Ray's own tables, ``verbose=2``, print every metric)."""
    from ray import tune

    class _TrialLines(tune.Callback):
        def __init__(self) -> None:
            self.done = 0

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.done += 1
            r = trial.last_result or {}
            errs = (f"val err final {100 * r['val/err/final']:.2f}% mean {100 * r['val/err/mean']:.2f}%"
                    if "val/err/final" in r else "no result")
            print(f"[{self.done}/{total}] {trial.config['run']}: {errs} after {int(r.get('epoch', 0))} epochs "
                  f"({r.get('time_total_s', 0.0):.0f} s)", flush=True)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            print(f"[failed] {trial.config['run']}: see {trial.path}/error.txt", flush=True)

    return _TrialLines()


def _with_threads(trials: list[dict[str, Any]], cpus_per_trial: float) -> list[dict[str, Any]]:
    """A trial uses the CPUs Ray gave it: ``train.num_threads`` defaults to ``--cpus-per-trial``."""
    threads = max(1, int(cpus_per_trial))
    return [t if t.get("train.num_threads") else {**t, "train.num_threads": threads} for t in trials]


def _scheduler(name: str, trials: list[dict[str, Any]]):
    if name == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(metric=SELECTION_METRIC, mode="min", time_attr="training_iteration",
                         max_t=max(int(t["train.epochs"]) for t in trials), grace_period=1)


def _check_experiment(experiment: str, trials: list[dict[str, Any]], *, resume: bool) -> None:
    """Refuse to overwrite a sweep, to resume one that does not exist, or to resume with a
    changed grid (Ray would silently keep the stored one)."""
    if _is_uri(experiment):
        return
    path = Path(experiment)
    exists = (path / _SPEC_FILE).exists() or any(path.glob("experiment_state*.json"))
    if exists and not resume:
        raise ValueError(f"sweep directory {path} already exists; pass --resume to continue it, or another "
                         "--out / sweep.name")
    if resume:
        if not any(path.glob("experiment_state*.json")):
            raise ValueError(f"--resume: no sweep to resume in {path}")
        spec_file = path / _SPEC_FILE
        if spec_file.exists():
            from adaptive_weights._io import read_json

            stored = read_json(spec_file)["trials"]
            if _canonical(stored) != _canonical(trials):
                raise ValueError(f"--resume: the sweep file's grid differs from the one stored in {spec_file}; "
                                 "resume with the same file, or start a new sweep under another name")


def _canonical(trials: list[dict[str, Any]]) -> list[str]:
    import json

    return sorted(json.dumps(t, sort_keys=True) for t in trials)


def _write_spec(path: Path, trials: list[dict[str, Any]]) -> None:
    from adaptive_weights._io import atomic_write_json

    atomic_write_json(path / _SPEC_FILE, {"trials": trials})


def _export_runs(grid: Any, dest: Path) -> tuple[list[Path], list[str]]:
    """Copy every trial's last checkpoint (a complete run directory) to ``dest/<run name>``."""
    import shutil

    run_dirs, errored = [], []
    for result in grid:
        name = str(result.config["run"])
        if result.error is not None:
            errored.append(name)
        if result.checkpoint is None:
            continue
        target = dest / name
        if target.exists():
            shutil.rmtree(target)
        result.checkpoint.to_directory(str(target))
        run_dirs.append(target)
    return sorted(run_dirs), sorted(errored)


def write_sweep_report(run_dirs: Sequence[Path], out_dir: str | Path, *, title: str = "Sweep report",
                       baselines: Sequence[Path] = ()) -> Path:
    """Choose each group's setting (validation split) and write the report of the chosen
    settings (test split): ``out_dir/report.md`` with the selection table first, CSVs, plots.

    ``baselines`` are OPT run directories (single-exit schemes) for the relative-increase table;
    they take no part in the selection."""
    from adaptive_weights._io import atomic_write_text
    from adaptive_weights.rendering import write_report
    from adaptive_weights.report import build_report
    from adaptive_weights.runs import load_runs

    from .selection import select_settings, selection_csv, selection_markdown

    out_dir = Path(out_dir)
    runs = load_runs(run_dirs)
    choices = select_settings(runs)
    chosen = {p for c in choices for p in c.chosen.runs}
    report = build_report([r for r in runs if r.path in chosen] + load_runs(baselines) if baselines
                          else [r for r in runs if r.path in chosen],
                          group_by=("strategy.name",), split="test", title=title)
    write_report(report, out_dir)
    atomic_write_text(out_dir / "selection.csv", selection_csv(choices))
    md = report.markdown.split("\n", 2)
    text = "\n".join(md[:2]) + "\n" + selection_markdown(choices) + "\n" + (md[2] if len(md) > 2 else "")
    return atomic_write_text(out_dir / "report.md", text)


def _complete_runs(local_dir: Path, spec: SweepSpec) -> list[Path] | None:
    """The exported run directories if every trial of ``spec`` finished, else None."""
    from adaptive_weights.runs import is_completed

    dirs = []
    for t in spec.trials:
        run_dir = local_dir / _RUNS_DIR / t["name"]
        if not is_completed(run_dir):
            return None
        dirs.append(run_dir)
    return dirs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adaptive-weights sweep", description=__doc__.split("\n\n")[0],
                                epilog="Sweep file format: see README.md, section \"Sweeps with Ray Tune\".")
    p.add_argument("sweep_file", metavar="SWEEP.yaml", help="config keys; a list is a grid axis")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"storage root; results go to OUT/NAME (default {DEFAULT_OUT})")
    p.add_argument("--name", help="sweep name (default: sweep.name in the file, else the file's stem)")
    p.add_argument("--address", help="an existing Ray cluster (HEAD_IP:PORT); default: in-process Ray on loopback")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs per trial; a fraction (0.25) lets several small trials share one GPU")
    p.add_argument("--max-concurrent", type=int, default=None, help="at most N trials at once (default: as resources allow)")
    p.add_argument("--max-failures", type=int, default=3, help="retries of a failed trial from its last checkpoint")
    p.add_argument("--scheduler", choices=["fifo", "asha"], default="fifo",
                   help="asha: early stopping on val/err/mean (default fifo: the full grid, as in the paper)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep; finished trials are kept")
    p.add_argument("--report", action="store_true",
                   help="choose each strategy's setting and write the report to OUT/NAME/report")
    p.add_argument("--no-tensorboard", action="store_true", help="runs write no TensorBoard events")
    p.add_argument("--dry-run", action="store_true", help="validate the sweep file and list the trials only")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing per trial")
    p.add_argument("-v", "--verbose", action="store_true", help="Ray's own progress tables and every result")
    return p


def cli_main(argv: Sequence[str]) -> int:
    """``adaptive-weights sweep SWEEP.yaml [--out DIR] [--address ADDR] [--gpus-per-trial 0.25]
    [--cpus-per-trial 1] [--max-concurrent N] [--resume] [--report]``. Bad input raises ValueError
    (the CLI prints it and exits with status 2) before Ray starts."""
    args = _parser().parse_args(list(argv))
    spec = load_sweep(args.sweep_file, name=args.name)
    if args.dry_run:
        print(f"sweep {spec.name}: {len(spec.trials)} trials")
        for t in spec.trials:
            print(f"  {t['name']}")
        return 0
    local_dir = _local_results_dir(args.out, spec.name)
    existing = _complete_runs(local_dir, spec) if (args.report and not args.resume) else None
    if existing is not None:
        run_dirs = existing  # a finished sweep: only the report is asked for
    else:
        print(f"sweep {spec.name}: {len(spec.trials)} trials -> {_experiment_path(args.out, spec.name)[1]}"
              + (f" on the Ray cluster at {args.address}" if args.address else " (in-process Ray, loopback)"))
        outcome = run_sweep(spec, out=args.out, address=args.address, cpus_per_trial=args.cpus_per_trial,
                            gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
                            resume=args.resume, scheduler=args.scheduler, max_failures=args.max_failures,
                            tensorboard=not args.no_tensorboard,
                            verbose=0 if args.quiet else (2 if args.verbose else 1))
        print(f"{len(outcome.run_dirs)} run directories in {outcome.runs_dir}")
        if outcome.errored:
            print(f"error: {len(outcome.errored)} trial(s) failed: {', '.join(outcome.errored)}; fix the cause and "
                  "run again with --resume", file=sys.stderr)
            return 1
        if outcome.unfinished and args.scheduler != "asha":
            print(f"error: {len(outcome.unfinished)} trial(s) did not finish (interrupted?): continue with --resume",
                  file=sys.stderr)
            return 1
        run_dirs = outcome.run_dirs
    if args.report:
        path = write_sweep_report(run_dirs, local_dir / "report", title=f"Sweep {spec.name}")
        print(f"report: {path}")
    return 0
