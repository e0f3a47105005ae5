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
:mod:`tuning.selection`) and writes the report of the chosen settings.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from adaptive_weights.config import EXECUTION_KEYS
from adaptive_weights.errors import RefusedError

from .space import SELECTION_METRIC
from .sweepdir import SPEC_FILE, SweepDir, TrialCheckpoint
from .sweepfile import SweepSpec, load_sweep, parse_overrides

__all__ = ["run_sweep", "write_sweep_report", "cli_main", "SweepOutcome", "ensure_loopback", "init_local_ray",
           "plan_sweep", "SweepPlan", "DEFAULT_OUT", "SELECTION_METRIC"]

DEFAULT_OUT = "results/sweeps"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_MODE_ENV = "RAY_AUTH_MODE"
_RUNS_DIR = "runs"
_SPEC_FORMAT = 2


@dataclass(frozen=True)
class SweepOutcome:
    """Where a finished sweep lives and what came of it."""

    experiment: str             # Ray's experiment path (a local directory or a URI)
    runs_dir: Path              # local copies of every trial's final run directory
    run_dirs: list[Path]
    errored: list[str]          # names of trials that failed for good
    unfinished: list[str]       # trials that were interrupted (not those a scheduler stopped); for a searcher
                                # also "N sample(s) without a checkpoint"
    dataframe: Any = None       # Ray's ResultGrid.get_dataframe() of the trials this call ran (config/<key> columns)


@dataclass(frozen=True)
class SweepPlan:
    """What a (resumed) sweep still runs, decided from plain JSON before Ray starts.

    ``trials``: explicit trial configs to run (a grid's trials, or a searcher's started trials that
    did not finish); ``resume_from``: run name -> the checkpoint (a run directory) it continues
    from; ``samples``: new samples a searcher still draws; ``warm``: finished searcher trials
    (searched values, mean validation error) that warm-start Optuna/HyperOpt."""

    trials: list[dict[str, Any]]
    resume_from: dict[str, str] = field(default_factory=dict)
    samples: int = 0
    warm: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    taken_dirs: frozenset[str] = frozenset()
    expected: int = 0           # trials the whole sweep runs


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


def init_local_ray(*, verbose: int = 1, **kwargs: Any) -> None:
    """The in-process Ray of a sweep without ``--address``: loopback only, no dashboard."""
    ensure_loopback()
    import ray

    ray.init(address="local", include_dashboard=False, configure_logging=verbose > 0,
             log_to_driver=verbose > 1, **kwargs)


def ensure_cluster_auth(environ: Mapping[str, str] | None = None) -> str:
    """Ray's token authentication for ``--address`` (Ray >= 2.52): ``RAY_AUTH_MODE=token`` unless
    the environment sets a mode, and a token from ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH``
    or ``~/.ray/auth_token`` (the cluster's own: ``ray get-auth-token`` on the head prints it).
    Returns the mode; refuses token mode without a token before Ray starts."""
    env = os.environ if environ is None else environ
    mode = env.get(AUTH_MODE_ENV, "").lower() or "token"
    if environ is None:
        os.environ[AUTH_MODE_ENV] = mode
    if mode != "token":
        return mode
    token_path = env.get("RAY_AUTH_TOKEN_PATH")
    if env.get("RAY_AUTH_TOKEN"):
        return mode
    path = Path(token_path).expanduser() if token_path else Path(env.get("HOME", "~")).expanduser() / ".ray" / "auth_token"
    if not path.is_file():
        raise RefusedError(
            f"--address: Ray's token authentication ({AUTH_MODE_ENV}=token) needs the cluster's token; none in "
            f"RAY_AUTH_TOKEN, and {path} does not exist: copy the head's token there (ray get-auth-token on the head "
            f"prints it) or set RAY_AUTH_TOKEN_PATH; {AUTH_MODE_ENV}=disabled connects without authentication")
    return mode


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
    """A trial's run name (and Ray trial name): the grid's ``name``, or for a sampled trial the
    name of its first config, kept when a scheduler (PBT) mutates the config later."""
    from .trainable import sampled_run_name

    if getattr(trial, "custom_trial_name", None):
        return str(trial.custom_trial_name)
    return str(trial.config.get("name") or sampled_run_name(trial.config, trial.trial_id))


def run_sweep(
    spec: SweepSpec,
    *,
    out: str | Path = DEFAULT_OUT,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_concurrent: int | None = None,
    resume: bool = False,
    scheduler: str | None = None,
    max_failures: int = 3,
    tensorboard: bool = True,
    verbose: int = 1,
    workers_per_trial: int = 1,
) -> SweepOutcome:
    """Run (or with ``resume`` continue) ``spec`` with Ray Tune; returns where its results are.

    ``scheduler`` overrides the sweep file's ``sweep.scheduler`` (``fifo``: every trial to the end,
    as in the paper; ``asha``: early stopping on ``val/err/mean``; ``pbt``). Without ``address`` a
    loopback-only Ray is started in this process and shut down afterwards; an already initialised
    Ray is used as it is. ``verbose``: 0 silent, 1 a line per finished trial, 2 Ray's own progress
    tables and results. ``workers_per_trial > 1``: every trial is one data-parallel run on that
    many Ray Train workers (:mod:`tuning.ray_train`); the CPUs and GPUs per trial are then per worker.
    """
    from .space import check_search_available

    out = str(out)
    if cpus_per_trial <= 0 or gpus_per_trial < 0:
        raise RefusedError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, got {cpus_per_trial}, "
                           f"{gpus_per_trial}")
    if gpus_per_trial > 1 and not float(gpus_per_trial).is_integer():
        raise RefusedError(f"--gpus-per-trial {gpus_per_trial}: a fraction must be below 1 (several trials share "
                           "one GPU) or a whole number of GPUs")
    if max_concurrent is not None and max_concurrent < 1:
        raise RefusedError(f"--max-concurrent must be >= 1, got {max_concurrent}")
    if scheduler is not None:
        from .sweepfile import SCHEDULERS

        if scheduler not in SCHEDULERS:
            raise RefusedError(f"--scheduler {scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
        spec = replace(spec, scheduler=scheduler)
    if max_failures < 0:
        raise RefusedError(f"--max-failures must be >= 0, got {max_failures}")
    _check_workers(workers_per_trial, gpus_per_trial, spec.scheduler)
    check_search_available(spec.search)
    root, experiment = _experiment_path(out, spec.name)
    local_dir = _local_results_dir(out, spec.name)
    spec = _with_threads(spec, cpus_per_trial)
    sweep_dir = SweepDir(experiment)
    plan = plan_sweep(sweep_dir, spec, resume=resume)
    errored: set[str] = set()
    frames: list[Any] = []
    if plan.trials or plan.samples:  # a resume of a finished sweep only exports its runs again
        errored, frames = _fit(spec, plan, root=root, sweep_dir=sweep_dir, address=address,
                               cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                               max_concurrent=max_concurrent, max_failures=max_failures, tensorboard=tensorboard,
                               verbose=verbose, workers_per_trial=workers_per_trial)
    else:
        sweep_dir.write_spec(_spec_record(spec))
    found = _matching(sweep_dir.checkpoints(), spec)
    run_dirs = [sweep_dir.download(c, local_dir / _RUNS_DIR / name) for name, c in sorted(found.items())]
    expected = {t["name"] for t in spec.trials} if spec.search == "grid" else set(found) | errored
    done = {n for n, c in found.items() if c.completed} | sweep_dir.stopped()
    unfinished = sorted(expected - done - errored)
    if spec.search != "grid" and len(found) < plan.expected:  # samples that never reached a checkpoint
        unfinished.append(f"{plan.expected - len(found)} sample(s) without a checkpoint")
    return SweepOutcome(experiment, local_dir / _RUNS_DIR, run_dirs, sorted(errored & expected), unfinished,
                        _concat(frames))


def _fit(spec: SweepSpec, plan: SweepPlan, *, root: str, sweep_dir: SweepDir, address: str | None,
         **options: Any) -> tuple[set[str], list[Any]]:
    """Start (or join) Ray, run the plan's Tuners, stop what was started; the failed trials' names
    and each Tuner's result dataframe."""
    if address is None:
        ensure_loopback()
    else:
        ensure_cluster_auth()
    import ray

    started = False
    if not ray.is_initialized():
        if address is None:
            init_local_ray(verbose=options["verbose"])
        else:
            ray.init(address=address, log_to_driver=options["verbose"] > 1)
        started = True
    errored: set[str] = set()
    frames = []
    try:
        sweep_dir.write_spec(_spec_record(spec))
        fits = [(plan.trials, 0)] if plan.trials else []
        if plan.samples:
            fits.append(([], plan.samples))
        for trials, samples in fits:
            grid = _tuner(spec, plan, trials, samples, root=root, sweep_dir=sweep_dir, **options).fit()
            errored |= {_result_name(r) for r in grid if r.error is not None}
            frames.append(grid.get_dataframe())
    finally:
        if started:
            ray.shutdown()
    return errored, frames


def _concat(frames: list[Any]) -> Any:
    if not frames:
        return None
    import pandas

    return pandas.concat(frames, ignore_index=True)


def _result_name(result: Any) -> str:
    return str(result.config.get("name") or Path(result.path).name)


def _tuner(spec: SweepSpec, plan: SweepPlan, trials: list[dict[str, Any]], samples: int, *, root: str,
           sweep_dir: SweepDir, cpus_per_trial: float, gpus_per_trial: float, max_concurrent: int | None,
           max_failures: int, tensorboard: bool, verbose: int, workers_per_trial: int = 1) -> Any:
    """One Tuner: explicit ``trials`` (a grid, or the trials a resume continues) or ``samples``
    new samples of the searcher."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from .space import grid_param_space, make_scheduler, pbt_mutations, search_algorithm, search_param_space
    from .trainable import train_trial

    hparam_keys = ([k for k in spec.axes if k != "strategy.name"] if spec.search != "grid"
                   else _varying(spec.trials))
    trainable = tune.with_parameters(train_trial, tensorboard=tensorboard, resume_from=plan.resume_from,
                                     hparam_keys=hparam_keys, workers=workers_per_trial,
                                     cpus_per_worker=cpus_per_trial, gpus_per_worker=gpus_per_trial,
                                     adopt_hparams=spec.scheduler == "pbt")
    if workers_per_trial > 1:  # the trial is a driver; Ray Train's workers hold the resources
        from .ray_train import DRIVER_RESOURCES

        trainable = tune.with_resources(trainable, DRIVER_RESOURCES)
        max_concurrent = max_concurrent or _trials_that_fit(workers_per_trial, cpus_per_trial, gpus_per_trial)
    else:
        trainable = tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    if trials:
        param_space, search_alg, num_samples = grid_param_space(trials), None, 1
    else:
        warm_points = [p for p, _ in plan.warm]
        search_alg = search_algorithm(spec.search, points=warm_points, rewards=[r for _, r in plan.warm],
                                      max_concurrent=max_concurrent)
        param_space, num_samples = search_param_space(spec), samples
    max_epochs = max([_epochs(t) for t in trials] or [_epochs(spec.space)])
    taken = set(plan.taken_dirs)

    def dirname(trial: Any) -> str:
        """The run name; a run continued by a later attempt gets a fresh directory beside its first."""
        name = _trial_name(trial)
        candidate, k = name, 1
        while candidate in taken:
            k += 1
            candidate = f"{name}.{k}"
        taken.add(candidate)
        return candidate

    # Ray's own TensorBoard logger is left out (its hint points at Ray's staging folder, not at the
    # runs); every run writes its TensorBoard and HParams in its own tb/, shown by the runs/ folder
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # Ray's experiment snapshots are not what a resume reads: their frequency is of no concern
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    callbacks = [JsonLoggerCallback(), CSVLoggerCallback(), _StoppedRecorder(sweep_dir)] + ([_progress_callback(plan.expected)] if verbose == 1 else [])
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            num_samples=num_samples,
            # the random search's generator takes the limit itself (Tune would warn and ignore it)
            max_concurrent_trials=None if (not trials and spec.search == "random") else max_concurrent,
            scheduler=make_scheduler(spec.scheduler, max_epochs=max_epochs, mutations=pbt_mutations(spec)),
            trial_name_creator=_trial_name,
            trial_dirname_creator=dirname,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=root,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            # PBT continues a trial from another's checkpoint of any age: it keeps them all
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None if spec.scheduler == "pbt" else 2),
            verbose=max(0, verbose - 1),
            callbacks=callbacks,
        ),
    )


def _check_workers(workers: int, gpus_per_worker: float, scheduler: str) -> None:
    """``--workers-per-trial``: a whole number of workers, whole GPUs each (NCCL runs one process per
    GPU), and no PBT (it restarts trials from Tune's checkpoints; a multi-worker trial's checkpoints
    are Ray Train's)."""
    if workers < 1:
        raise RefusedError(f"--workers-per-trial must be >= 1, got {workers}")
    if workers > 1 and 0 < gpus_per_worker < 1:
        raise RefusedError(f"--gpus-per-trial {gpus_per_worker} with --workers-per-trial {workers}: every worker "
                           "needs a whole GPU (NCCL runs one process per GPU); use --gpus-per-trial 1")
    if workers > 1 and scheduler == "pbt":
        raise RefusedError(f"sweep.scheduler: 'pbt' with --workers-per-trial {workers}: PBT restarts trials from Tune "
                           "checkpoints, and a multi-worker trial checkpoints through Ray Train; use fifo or asha")


def _trials_that_fit(workers: int, cpus_per_worker: float, gpus_per_worker: float) -> int:
    """How many multi-worker trials the cluster holds at once: their drivers reserve nothing, so
    without this cap every trial would start and their worker groups would wait on each other."""
    import ray

    total = ray.cluster_resources()
    fits = [total.get("CPU", 0.0) / (workers * cpus_per_worker)]
    if gpus_per_worker:
        fits.append(total.get("GPU", 0.0) / (workers * gpus_per_worker))
    return max(1, int(min(fits)))


def _epochs(flat: Mapping[str, Any]) -> int:
    from .trainable import run_config

    if flat.get("train.epochs") and not isinstance(flat["train.epochs"], (list, Mapping)):
        return int(flat["train.epochs"])
    probe = {k: v for k, v in flat.items() if not isinstance(v, (list, Mapping))}
    return int(run_config(probe).train.epochs)


def _varying(trials: list[dict[str, Any]]) -> list[str]:
    from .space import varying_keys

    return varying_keys(trials)


def _matching(found: dict[str, TrialCheckpoint], spec: SweepSpec) -> dict[str, TrialCheckpoint]:
    """The checkpoints that belong to this sweep: a grid's trials with their current config (a
    failed trial whose config a resume changed starts again, its old checkpoint is not its run)."""
    if spec.search != "grid":
        return found
    by_name = {t["name"]: t for t in spec.trials}
    return {n: c for n, c in found.items() if n in by_name and not _experiment_diff(c.config, by_name[n])}


class _StoppedRecorder:
    """Records in ``stopped.json`` the trials a scheduler stopped early (not errored, not all
    epochs), so that a resume does not run them on. Built lazily as a Tune callback."""

    def __new__(cls, sweep_dir: SweepDir):
        from ray import tune

        class _Recorder(tune.Callback):
            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                from .trainable import run_config

                epochs = run_config(trial.config).train.epochs
                if int((trial.last_result or {}).get("epoch", 0)) < epochs:
                    sweep_dir.record_stopped(_trial_name(trial))

        return _Recorder()


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
            print(f"[{self.done}/{total}] {_trial_name(trial)}: {errs} after {int(r.get('epoch', 0))} epochs "
                  f"({r.get('time_total_s', 0.0):.0f} s)", flush=True)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            print(f"[failed] {_trial_name(trial)}: see {trial.path}/error.txt", flush=True)

    return _TrialLines()


def _with_threads(spec: SweepSpec, cpus_per_trial: float) -> SweepSpec:
    """A trial uses the CPUs Ray gave it: ``train.num_threads`` defaults to ``--cpus-per-trial``."""
    threads = max(1, int(cpus_per_trial))
    trials = [t if t.get("train.num_threads") else {**t, "train.num_threads": threads} for t in spec.trials]
    space = dict(spec.space)
    if spec.search != "grid" and not space.get("train.num_threads"):
        space["train.num_threads"] = threads
    return replace(spec, trials=trials, space=space)


# ---------------------------------------------------------------------- resuming without Ray's pickles
def _spec_record(spec: SweepSpec) -> dict[str, Any]:
    """``sweep.json``: everything a resume needs, as plain JSON."""
    return {"format": _SPEC_FORMAT, "name": spec.name, "search": spec.search, "num_samples": spec.num_samples,
            "scheduler": spec.scheduler, "trials": spec.trials, "space": spec.space}


def _experiment_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Keys (not execution-only ones) whose values differ: ``key: old -> new``."""
    skip = set(EXECUTION_KEYS)
    keys = sorted((set(a) | set(b)) - skip)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def plan_sweep(sweep_dir: SweepDir, spec: SweepSpec, *, resume: bool) -> SweepPlan:
    """Decide what runs, from ``sweep.json`` and the trials' checkpoints (JSON only), refusing with
    a message that says what differs. A fresh sweep runs everything; a resume keeps finished trials
    and the ones a scheduler stopped, continues the others from their last checkpoint, and accepts
    changes to execution-only keys (threads, device, data root, ...) and to trials that have not
    finished (they start again)."""
    expected = spec.num_samples * _grid_size(spec) if spec.search != "grid" else len(spec.trials)
    exists = sweep_dir.exists(SPEC_FILE) or bool(sweep_dir.trial_dirs())
    if not resume:
        if exists:
            raise RefusedError(f"sweep directory {sweep_dir.experiment} already exists; pass --resume to continue it, "
                               "or another --out / sweep.name")
        return SweepPlan(trials=list(spec.trials), samples=0 if spec.search == "grid" else spec.num_samples,
                         expected=expected)
    if not sweep_dir.exists(SPEC_FILE):
        raise RefusedError(f"--resume: no sweep to resume in {sweep_dir.experiment} (no {SPEC_FILE})")
    stored = sweep_dir.spec()
    if stored.get("format") != _SPEC_FORMAT:
        raise RefusedError(f"--resume: {sweep_dir.uri(SPEC_FILE)} was written by another version of this library "
                           f"(format {stored.get('format')!r}, expected {_SPEC_FORMAT}); start a new sweep")
    found = sweep_dir.checkpoints()
    stopped = sweep_dir.stopped()
    taken = frozenset(sweep_dir.entries())
    if spec.search == "grid":
        _check_grid_change(stored, spec, found, sweep_dir)
        current = _matching(found, spec)
        todo = [t for t in spec.trials if t["name"] not in stopped
                and not (t["name"] in current and current[t["name"]].completed)]
        return SweepPlan(trials=todo, resume_from={t["name"]: current[t["name"]].path for t in todo
                                                   if t["name"] in current},
                         taken_dirs=taken, expected=expected)
    _check_search_change(stored, spec, sweep_dir)
    unfinished = [c for c in found.values() if not c.completed and c.name not in stopped]
    todo = [{**{k: v for k, v in c.config.items() if k not in EXECUTION_KEYS or k == "name"},
             **{k: v for k, v in spec.space.items() if k in EXECUTION_KEYS and not isinstance(v, (list, Mapping))}}
            for c in unfinished]
    started = len(set(found) | stopped)
    remaining = max(0, expected - started)
    samples = math.ceil(remaining / _grid_size(spec)) if spec.search == "random" else remaining
    searched = [k for k, v in spec.space.items() if isinstance(v, (list, Mapping))]
    warm = [({k: c.config.get(k) for k in searched}, sum(c.val_errors) / len(c.val_errors))
            for c in found.values() if c.completed and c.val_errors and spec.search in ("optuna", "hyperopt")]
    return SweepPlan(trials=todo, resume_from={c.name: c.path for c in unfinished}, samples=samples, warm=warm,
                     taken_dirs=taken, expected=expected)


def _grid_size(spec: SweepSpec) -> int:
    """Trials per sample of a random search: the grid of its lists (1 for Optuna/HyperOpt)."""
    if spec.search != "random":
        return 1
    return math.prod(len(v) for v in spec.space.values() if isinstance(v, list))


def _check_grid_change(stored: dict[str, Any], spec: SweepSpec, found: dict[str, TrialCheckpoint],
                       sweep_dir: SweepDir) -> None:
    """A changed sweep file may resume only where it changes trials that have not finished."""
    if stored.get("search") != "grid":
        raise RefusedError(f"--resume: {sweep_dir.uri(SPEC_FILE)} holds a {stored.get('search')} search, the sweep "
                           "file a grid; resume with the same file, or start a new sweep under another --name")
    old = {t["name"]: t for t in stored.get("trials", [])}
    finished = {n for n, c in found.items() if c.completed}
    refused = []
    for trial in spec.trials:
        name = trial["name"]
        if name in finished and name in old and _experiment_diff(old[name], trial):
            refused.append(f"{name} ({'; '.join(_experiment_diff(old[name], trial))})")
    removed = sorted(set(old) - {t["name"] for t in spec.trials} & finished)
    if refused or removed:
        parts = ([f"it changes finished trial(s): {', '.join(refused)}"] if refused else []) + (
            [f"it drops finished trial(s): {', '.join(removed)}"] if removed else [])
        raise RefusedError(f"--resume: the sweep file differs from {sweep_dir.uri(SPEC_FILE)} where trials already "
                           f"finished: {'; '.join(parts)}. A resume may change execution-only keys and trials "
                           "that have not finished; to change finished ones start a new sweep (--name NEW)")


def _check_search_change(stored: dict[str, Any], spec: SweepSpec, sweep_dir: SweepDir) -> None:
    skip = set(EXECUTION_KEYS)
    changes = [f"sweep.{k}: {stored.get(k)!r} -> {getattr(spec, k)!r}" for k in ("search", "num_samples")
               if stored.get(k) != getattr(spec, k)]
    old, new = stored.get("space", {}), spec.space
    changes += [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted((set(old) | set(new)) - skip)
                if old.get(k) != new.get(k)]
    if changes:
        raise RefusedError(f"--resume: the sweep file's search differs from {sweep_dir.uri(SPEC_FILE)}: "
                           f"{'; '.join(changes)}. A resume may change execution-only keys only; start a new "
                           "sweep for another search (--name NEW)")


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


def _complete_runs(out: str, spec: SweepSpec) -> list[Path] | None:
    """The exported run directories if every trial of ``spec`` finished (or a scheduler stopped
    it), else None."""
    from adaptive_weights.runs import is_final

    runs_dir = _local_results_dir(out, spec.name) / _RUNS_DIR
    experiment = _experiment_path(out, spec.name)[1]
    stopped = SweepDir(experiment).stopped() if _is_uri(experiment) or Path(experiment).is_dir() else set()
    if spec.search == "grid":
        names = [t["name"] for t in spec.trials]
    else:
        names = sorted(p.name for p in runs_dir.glob("*") if p.is_dir())
        if len(names) < spec.num_samples * _grid_size(spec):
            return None
    dirs = []
    for name in names:
        run_dir = runs_dir / name
        if not (is_final(run_dir) or (name in stopped and (run_dir / "summary.json").is_file())):
            return None
        dirs.append(run_dir)
    return dirs


def _parser() -> argparse.ArgumentParser:
    from .sweepfile import SCHEDULERS

    p = argparse.ArgumentParser(prog="adaptive-weights sweep", description=__doc__.split("\n\n")[0],
                                epilog="Any dotted config key given as a flag replaces the file's value, read as "
                                       "YAML: --data.root /data, --train.seed '[0, 1]' (a grid axis). "
                                       "Sweep file format: see README.md, section \"Sweeps with Ray Tune\".")
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
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep; finished trials are kept")
    p.add_argument("--report", action="store_true",
                   help="choose each strategy's setting and write the report to OUT/NAME/report")
    p.add_argument("--no-tensorboard", action="store_true", help="runs write no TensorBoard events")
    p.add_argument("--dry-run", action="store_true", help="validate the sweep file and list the trials only")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing per trial")
    p.add_argument("-v", "--verbose", action="store_true", help="Ray's own progress tables and every result")
    return p


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
    spec = load_sweep(args.sweep_file, name=args.name, overrides=parse_overrides(extra))
    if args.scheduler:
        spec = replace(spec, scheduler=args.scheduler)
    if args.dry_run:
        print(spec.describe())
        for t in spec.trials:
            print(f"  {t['name']}")
        return 0
    local_dir = _local_results_dir(args.out, spec.name)
    existing = _complete_runs(args.out, spec) if (args.report and not args.resume) else None
    if existing is not None:
        run_dirs = existing  # a finished sweep: only the report is asked for
    else:
        print(f"{spec.describe()} -> {_experiment_path(args.out, spec.name)[1]}"
              + (f" on the Ray cluster at {args.address}" if args.address else " (in-process Ray, loopback)"))
        outcome = run_sweep(spec, out=args.out, address=args.address, cpus_per_trial=args.cpus_per_trial,
                            gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
                            resume=args.resume, max_failures=args.max_failures,
                            tensorboard=not args.no_tensorboard, workers_per_trial=args.workers_per_trial,
                            verbose=0 if args.quiet else (2 if args.verbose else 1))
        print(f"{len(outcome.run_dirs)} run directories in {outcome.runs_dir}")
        if args.no_tensorboard is False and outcome.run_dirs:
            print(f"TensorBoard of every trial: tensorboard --logdir {outcome.runs_dir}")
        if outcome.errored:
            print(f"error: {len(outcome.errored)} trial(s) failed: {', '.join(outcome.errored)} (each trial's "
                  f"error.txt is under {outcome.experiment}); {_failure_advice(spec)}", file=sys.stderr)
            return 1
        if outcome.unfinished:
            print(f"error: {len(outcome.unfinished)} trial(s) did not finish (interrupted?): "
                  f"{', '.join(outcome.unfinished)}; continue with the same command and --resume", file=sys.stderr)
            return 1
        run_dirs = outcome.run_dirs
    if args.report:
        path = write_sweep_report(run_dirs, local_dir / "report", title=f"Sweep {spec.name}")
        print(f"report: {path}")
    return 0
