"""Running a sweep with Ray Tune: the Tuners of a plan, their trials' resources, schedulers and
callbacks, and afterwards the local copies of every trial's final run directory and the report of
the chosen settings.

What runs is decided before Ray starts (:mod:`adaptive_weights.tuning.plan`), connecting to Ray is
:mod:`adaptive_weights.tuning.cluster`, the command line is :mod:`adaptive_weights.tuning.cli`. Ray is
imported inside the functions only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from adaptive_weights.errors import RefusedError, SweepFailedError

from .cluster import ray_session, require_ray_tune
from .plan import SweepPlan, matching_checkpoints, plan_sweep, spec_record, with_compile_cache, with_threads
from .space import SELECTION_METRIC
from .sweepdir import DEFAULT_OUT, RUNS_DIR, SweepDir, experiment_path, local_results_dir
from .sweepfile import SweepSpec

__all__ = ["run_sweep", "check_options", "write_sweep_report", "SweepOutcome", "SweepFailedError", "SELECTION_METRIC"]


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
    pack: int | None = None,
) -> SweepOutcome:
    """Run (or with ``resume`` continue) ``spec`` with Ray Tune; returns where its results are.

    ``scheduler`` overrides the sweep file's ``sweep.scheduler`` (``fifo``: every trial to the end,
    as in the paper; ``asha``: early stopping on ``val/err/mean``; ``pbt``). Without ``address`` a
    loopback-only Ray is started in this process and shut down afterwards; an already initialised
    Ray is used as it is. ``verbose``: 0 silent, 1 a line per finished trial, 2 Ray's own progress
    tables and results. ``workers_per_trial > 1``: every trial is one data-parallel run on that
    many Ray Train workers (:mod:`adaptive_weights.tuning.ray_train`); the CPUs and GPUs per trial
    are then per worker. ``pack`` overrides ``sweep.pack``: with N > 1 the runs that can share a
    graph train in packs of at most N, each pack one Ray trial with the trial's resources
    (:mod:`adaptive_weights.tuning.packsweep`); every run still gets its own run directory.

    Before Ray starts, the data of every distinct data config is checked (without ``address``) and
    so are the plug-ins the workers need (:mod:`adaptive_weights.tuning.preflight`): the modules of
    ``spec.imports`` (``sweep.imports``) and those that registered the sweep's plug-ins in this
    process are imported by every worker before it resolves its trial. Trials that fail for good
    raise :class:`~adaptive_weights.errors.SweepFailedError` (their names, the first cause, the
    outcome) once the sweep has exported its runs.
    """
    require_ray_tune()
    out = str(out)
    spec = check_options(spec, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                         max_concurrent=max_concurrent, scheduler=scheduler, max_failures=max_failures,
                         workers_per_trial=workers_per_trial, pack=pack)
    from .preflight import preflight
    from .sweepdir import driver_lock

    spec = replace(spec, imports=preflight(spec, address=address))  # before the lock writes anything

    with driver_lock(local_results_dir(out, spec.name)):  # one driver per sweep, taken before Ray starts
        return _run_locked(spec, out=out, address=address, cpus_per_trial=cpus_per_trial,
                           gpus_per_trial=gpus_per_trial, max_concurrent=max_concurrent, resume=resume,
                           max_failures=max_failures, tensorboard=tensorboard, verbose=verbose,
                           workers_per_trial=workers_per_trial)


def check_options(spec: SweepSpec, *, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                  max_concurrent: int | None = None, scheduler: str | None = None, max_failures: int = 3,
                  workers_per_trial: int = 1, pack: int | None = None) -> SweepSpec:
    """Refuse what a real run would refuse once it starts (resources, a scheduler Tune cannot run
    with the search, a missing searcher package, what a packed sweep cannot do), so ``--dry-run``
    refuses it too; returns ``spec`` with ``scheduler`` and ``pack`` applied."""
    from .packsweep import check_pack_options
    from .space import check_scheduler, check_search_available
    from .sweepfile import check_pack_size

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
    if pack is not None:
        spec = replace(spec, pack=check_pack_size(pack, "--pack"))
    check_pack_options(spec, workers_per_trial=workers_per_trial)
    _check_workers(workers_per_trial, gpus_per_trial, spec.scheduler)
    check_scheduler(spec)
    check_search_available(spec.search)
    return spec


def _run_locked(spec: SweepSpec, *, out: str, address: str | None, cpus_per_trial: float, gpus_per_trial: float,
                max_concurrent: int | None, resume: bool, max_failures: int, tensorboard: bool, verbose: int,
                workers_per_trial: int) -> SweepOutcome:
    """run_sweep's body, under the sweep's driver lock."""
    root, experiment = experiment_path(out, spec.name)
    local_dir = local_results_dir(out, spec.name)
    spec = with_threads(spec, cpus_per_trial)
    spec = with_compile_cache(spec, local_dir / "compile-cache" if address is None else None)
    sweep_dir = SweepDir(experiment)
    plan = plan_sweep(sweep_dir, spec, resume=resume)
    packs = None
    if spec.pack > 1:  # sampled and packed, every pack checked, before Ray starts
        from .packsweep import plan_packs

        packs = plan_packs(spec, plan)
    errored: set[str] = set()
    frames: list[Any] = []
    failures: dict[str, str] = {}
    if plan.trials or plan.samples:  # a resume of a finished sweep only exports its runs again
        errored, failures, frames = _fit(
            spec, plan, packs=packs, root=root, sweep_dir=sweep_dir, address=address, cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial, max_concurrent=max_concurrent, max_failures=max_failures,
            tensorboard=tensorboard, verbose=verbose, workers_per_trial=workers_per_trial)
    else:
        sweep_dir.write_spec(spec_record(spec))
    found = matching_checkpoints(sweep_dir.checkpoints(), spec)
    run_dirs = [sweep_dir.download(c, local_dir / RUNS_DIR) for _, c in sorted(found.items())]
    expected = {t["name"] for t in spec.trials} if spec.search == "grid" else set(found) | errored
    done = {n for n, c in found.items() if c.completed} | sweep_dir.stopped()
    errored -= done if packs is not None else set()  # a failed pack's members that had already ended
    unfinished = sorted(expected - done - errored)
    if spec.search != "grid" and len(found) < plan.expected:  # samples that never reached a checkpoint
        unfinished.append(f"{plan.expected - len(found)} sample(s) without a checkpoint")
    outcome = SweepOutcome(experiment, local_dir / RUNS_DIR, run_dirs, sorted(errored & expected), unfinished,
                           _concat(frames))
    if outcome.errored:
        raise SweepFailedError(outcome.errored, next(iter(failures.values()), "unknown (no error.txt was read)"),
                               total=len(plan.trials) if spec.search == "grid" else None,
                               experiment=experiment, outcome=outcome)
    return outcome


def _fit(spec: SweepSpec, plan: SweepPlan, *, packs: dict[str, list[dict[str, Any]]] | None, root: str,
         sweep_dir: SweepDir, address: str | None,
         **options: Any) -> tuple[set[str], dict[str, str], list[Any]]:
    """Start (or join) Ray, run the plan's Tuners (one Tuner of ``packs`` in a packed sweep), stop
    what was started; the failed trials' names (a failed pack's member runs), each failed Ray
    trial's cause in the order they failed, and each Tuner's result dataframe. Failures are
    recorded by a callback, never read back from the ResultGrid: its results unpickle error.pkl."""
    errored: set[str] = set()
    frames = []
    with ray_session(address, verbose=options["verbose"]), _quiet_trial_errors(options["verbose"]):
        recorder = _FailureRecorder()  # a Ray callback: made only once the session has set Ray's environment
        sweep_dir.write_spec(spec_record(spec))
        sweep_dir.forget_stopped({t["name"] for t in plan.trials})  # they run again: stopped only if stopped again
        fits = [(plan.trials, 0)] if plan.trials else []
        if plan.samples:
            fits.append(([], plan.samples))
        if packs is not None:
            fits = [([], 0)]
        for trials, samples in fits:
            grid = _tuner(spec, plan, trials, samples, packs=packs, root=root, sweep_dir=sweep_dir,
                          callbacks=[recorder], **options).fit()
            frames.append(grid.get_dataframe())
    failed = set(recorder.causes)
    errored |= {t["name"] for p in failed for t in packs[p]} if packs is not None else failed
    return errored, dict(recorder.causes), frames


@contextmanager
def _quiet_trial_errors(verbose: int) -> Iterator[None]:
    """Below ``-v`` Ray prints no block per failed trial (its traceback, and the error file line of
    its output engine) nor its closing list of them: the sweep says what failed once, from the
    trials' error.txt. Ray reads both settings when a Tuner runs; they are put back afterwards."""
    import logging

    settings = {"TUNE_PRINT_ALL_TRIAL_ERRORS": "0", "RAY_AIR_NEW_OUTPUT": "0"} if verbose < 2 else {}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    tune_log, drop = logging.getLogger("ray.tune.tune"), _DropIncomplete()
    if settings:
        tune_log.addFilter(drop)
    try:
        yield
    finally:
        tune_log.removeFilter(drop)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _DropIncomplete:
    """A logging filter: Ray's closing 'Trials did not complete: [every name]' (the sweep says it)."""

    def filter(self, record: Any) -> bool:
        return not str(record.msg).startswith("Trials did not complete")


def _first_cause(error_file: str | None) -> str | None:
    """The cause of a trial's failure: the last line of its ``error.txt`` (Ray writes the
    exception's text there; plain text, never the pickled ``error.pkl``), or None when not there."""
    if not error_file:
        return None
    try:
        lines = [line.strip() for line in Path(error_file).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


class _FailureRecorder:
    """Tune callback: the trials that fail for good, in order, each with its cause (see
    :func:`_first_cause`). Built lazily: Ray is imported when a sweep starts."""

    def __new__(cls):
        from ray import tune

        class _Recorder(tune.Callback):
            def __init__(self) -> None:
                self.causes: dict[str, str] = {}

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                cause = _first_cause(trial.error_file) or f"see {trial.path}/error.txt"
                self.causes.setdefault(_trial_name(trial), cause)

        return _Recorder()


def _concat(frames: list[Any]) -> Any:
    if not frames:
        return None
    import pandas

    return pandas.concat(frames, ignore_index=True)


def _tuner(spec: SweepSpec, plan: SweepPlan, trials: list[dict[str, Any]], samples: int, *, root: str,
           sweep_dir: SweepDir, cpus_per_trial: float, gpus_per_trial: float, max_concurrent: int | None,
           max_failures: int, tensorboard: bool, verbose: int, workers_per_trial: int = 1,
           packs: dict[str, list[dict[str, Any]]] | None = None, callbacks: Sequence[Any] = ()) -> Any:
    """One Tuner: explicit ``trials`` (a grid, or the trials a resume continues), ``samples``
    new samples of the searcher, or ``packs`` (pack trial name -> its members' configs), one trial each."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from .space import grid_param_space, make_scheduler, pbt_mutations, search_algorithm, search_param_space
    from .trainable import train_trial

    hparam_keys = (spec.searched if spec.search != "grid"
                   else _varying(spec.trials))
    if packs is None:
        trainable = tune.with_parameters(train_trial, tensorboard=tensorboard, resume_from=plan.resume_from,
                                         hparam_keys=hparam_keys, imports=spec.imports, workers=workers_per_trial,
                                         cpus_per_worker=cpus_per_trial, gpus_per_worker=gpus_per_trial,
                                         adopt_hparams=spec.scheduler == "pbt")
    if packs is not None:  # one trial per pack, with the trial's resources; fifo (check_pack_options)
        from .pack_trial import train_pack_trial
        from .packsweep import pack_param_space

        trainable = tune.with_resources(
            tune.with_parameters(train_pack_trial, packs=packs, resume_from=plan.resume_from,
                                 tensorboard=tensorboard, hparam_keys=hparam_keys, imports=spec.imports),
            {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
        trials = [t for pack in packs.values() for t in pack]
    elif workers_per_trial > 1:  # the trial is a driver; Ray Train's workers hold the resources
        from .ray_train import DRIVER_RESOURCES

        trainable = tune.with_resources(trainable, DRIVER_RESOURCES)
        max_concurrent = max_concurrent or _trials_that_fit(workers_per_trial, cpus_per_trial, gpus_per_trial)
    else:
        trainable = tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    if packs is not None:
        param_space, search_alg, num_samples = pack_param_space(packs), None, 1
    elif trials:
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
    total, finished = (len(packs), 0) if packs is not None else (plan.expected, plan.finished)
    callbacks = [JsonLoggerCallback(), CSVLoggerCallback(), _StoppedRecorder(sweep_dir), *callbacks] + (
        [_progress_callback(total, finished)] if verbose == 1 else [])
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


class _StoppedRecorder:
    """Records in ``stopped.json`` the trials a scheduler stopped early (not errored, not all
    epochs), so that a resume does not run them on. Built lazily as a Tune callback."""

    def __new__(cls, sweep_dir: SweepDir):
        from ray import tune

        class _Recorder(tune.Callback):
            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                from .packsweep import MEMBERS_KEY
                from .trainable import run_config

                if MEMBERS_KEY in trial.config:  # a pack: no scheduler may stop it (fifo only)
                    return
                epochs = run_config(trial.config).train.epochs
                result = trial.last_result or {}
                if not result.get("diverged") and int(result.get("epoch", 0)) < epochs:  # diverged: final
                    sweep_dir.record_stopped(_trial_name(trial))

        return _Recorder()


def _progress_callback(total: int, finished: int = 0):
    """One line per finished or failed trial with the time left for the sweep, counted on from
    ``finished`` (the trials a resumed sweep had finished before); on a terminal also a bar on
    stderr with the ETA and the epoch each running trial has reached (Ray's own tables,
    ``verbose=2``, print every metric). A log gets the lines alone."""
    from ray import tune

    from adaptive_weights.progress import EtaClock, writing_above_bars
    from adaptive_weights.progress import bar as progress_bar

    class _TrialLines(tune.Callback):
        def __init__(self) -> None:
            self.done = finished
            self.clock = EtaClock(total, finished)
            self.epochs: dict[str, tuple[int, int]] = {}  # running trial -> (epoch reached, of epochs)
            self._bar: Any = None  # drawn at the first event: Tune pickles its callbacks before the sweep

        def __getstate__(self) -> dict[str, Any]:
            return {**self.__dict__, "_bar": None}  # a bar holds the terminal's stream

        @property
        def bar(self) -> Any:
            if self._bar is None:
                self._bar = progress_bar(total, "sweep", unit="trials", initial=self.done, own_eta=True)
            return self._bar

        def _progress(self) -> float:
            """Trials done, a running trial counting the fraction of its epochs it has reached."""
            return self.done + sum(e / n for e, n in self.epochs.values() if n > 0)

        def _line(self, text: str) -> None:
            with writing_above_bars():
                print(text, flush=True)
            self._redraw()

        def _redraw(self) -> None:
            running = ", ".join(f"{name} epoch {e}" + (f"/{n}" if n else "") for name, (e, n) in sorted(self.epochs.items()))
            self.bar.set_postfix_str(f"{self.clock.text(self._progress())}" + (f"; {running}" if running else ""))

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if "epoch" in result:
                epochs = int((trial.config or {}).get("train.epochs") or 0)
                self.epochs[_trial_name(trial)] = (int(result["epoch"]), epochs)
                self._redraw()

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finished(trial)
            r = trial.last_result or {}
            if "pack/size" in r:
                what = _pack_line(r)
            elif r.get("diverged"):
                what = f"diverged in epoch {int(r.get('diverged_epoch', 0))} (scored as 100% error)"
            elif "val/err/final" in r:
                what = (f"val err final {100 * r['val/err/final']:.2f}% mean {100 * r['val/err/mean']:.2f}% "
                        f"after {int(r.get('epoch', 0))} epochs")
            else:
                what = "no result"
            self._line(f"[{self.done}/{total}] {_trial_name(trial)}: {what} ({r.get('time_total_s', 0.0):.0f} s); "
                       f"{self.clock.text(self._progress())}")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finished(trial)
            self._line(f"[failed] {_trial_name(trial)}: see {trial.path}/error.txt")

        def _finished(self, trial: Any) -> None:
            self.done += 1
            self.epochs.pop(_trial_name(trial), None)
            self.bar.update()

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            if self._bar is not None:
                self._bar.close()

    return _TrialLines()


def _pack_line(r: Mapping[str, Any]) -> str:
    """A finished pack's progress line: its members' mean validation errors (pack_trial's metrics)."""
    text = f"{int(r['pack/size'])} runs"
    if "val/err/final" in r:
        text += (f", mean over them val err final {100 * r['val/err/final']:.2f}% mean {100 * r['val/err/mean']:.2f}% "
                 f"after {int(r.get('epoch', 0))} epochs")
    return text + (f"; {int(r['pack/diverged'])} diverged" if r.get("pack/diverged") else "")


def write_sweep_report(run_dirs: Sequence[Path], out_dir: str | Path, *, title: str = "Sweep report",
                       baselines: Sequence[Path] = ()) -> Path:
    """Choose each group's setting (validation split) and write the report of the chosen
    settings (test split): ``out_dir/report.md`` with the selection table first, CSVs, plots.

    ``baselines`` are OPT run directories (single-exit schemes) for the relative-increase table;
    they take no part in the selection, and neither do the sweep's own OPT runs
    (``sweep.opt_baselines``), which join them."""
    from adaptive_weights._io import atomic_write_text
    from adaptive_weights.rendering import write_report
    from adaptive_weights.report import build_report
    from adaptive_weights.runs import load_runs

    from .baselines import split_baselines
    from .selection import select_settings, selection_csv, selection_markdown

    out_dir = Path(out_dir)
    runs, own_baselines = split_baselines(load_runs(run_dirs))
    choices = select_settings(runs)
    chosen = {p for c in choices for p in c.chosen.runs}
    report = build_report([r for r in runs if r.path in chosen] + own_baselines + load_runs(baselines),
                          group_by=("strategy.name",), split="test", title=title)
    write_report(report, out_dir)
    atomic_write_text(out_dir / "selection.csv", selection_csv(choices))
    md = report.markdown.split("\n", 2)
    text = "\n".join(md[:2]) + "\n" + selection_markdown(choices) + "\n" + (md[2] if len(md) > 2 else "")
    return atomic_write_text(out_dir / "report.md", text)
