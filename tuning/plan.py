"""Deciding what a (resumed) sweep runs, from plain JSON, before Ray starts.

A sweep writes ``sweep.json`` (:mod:`adaptive_weights.tuning.sweepdir`): everything a resume needs.
A resume rebuilds the sweep from that file and the trials' checkpoints (never from Ray's pickled
state), keeps the finished trials and the ones a scheduler stopped, continues the others from their
last checkpoint, and refuses a changed sweep file with a message that says what differs where trials
already finished.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from adaptive_weights.config import EXECUTION_KEYS
from adaptive_weights.errors import RefusedError

from .sweepdir import SPEC_FILE, SweepDir, TrialCheckpoint
from .sweepfile import SweepSpec

__all__ = ["plan_sweep", "SweepPlan", "expected_trials", "experiment_diff", "matching_checkpoints", "spec_record",
           "with_threads", "with_compile_cache"]

_SPEC_FORMAT = 2


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
    resume_epochs: dict[str, int] = field(default_factory=dict)  # run name -> epochs of its resume_from checkpoint
    runs: frozenset[str] = frozenset()  # every run with a checkpoint (a packed random search names new samples apart)
    finished: int = 0           # trials of ``expected`` a resume keeps as done: progress lines count on from them


def with_threads(spec: SweepSpec, cpus_per_trial: float) -> SweepSpec:
    """A trial uses the CPUs Ray gave it: ``train.num_threads`` defaults to ``--cpus-per-trial``."""
    threads = max(1, int(cpus_per_trial))
    trials = [t if t.get("train.num_threads") else {**t, "train.num_threads": threads} for t in spec.trials]
    space = dict(spec.space)
    if spec.search != "grid" and not space.get("train.num_threads"):
        space["train.num_threads"] = threads
    return replace(spec, trials=trials, space=space)


def with_compile_cache(spec: SweepSpec, directory: Path | None) -> SweepSpec:
    """The trials of a sweep compile into one cache directory (``train.compile_cache``), so trials
    of the same shapes compile once per sweep, not once each; a trial that names its own keeps it.
    ``None`` (trials on other nodes, where this machine's path means nothing) leaves them torch's
    per-user directory on each node."""
    if directory is None:
        return spec
    key, value = "train.compile_cache", str(directory)
    trials = [t if t.get(key) else {**t, key: value} for t in spec.trials]
    space = dict(spec.space)
    if spec.search != "grid" and not space.get(key):
        space[key] = value
    return replace(spec, trials=trials, space=space)


def spec_record(spec: SweepSpec) -> dict[str, Any]:
    """``sweep.json``: everything a resume needs, as plain JSON."""
    return {"format": _SPEC_FORMAT, "name": spec.name, "search": spec.search, "num_samples": spec.num_samples,
            "scheduler": spec.scheduler, "pack": spec.pack,  # execution only: a resume may pack otherwise
            "trials": spec.trials, "space": spec.space}


def experiment_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
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
    expected = expected_trials(spec)
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
        current = matching_checkpoints(found, spec)
        # kept: finished, or stopped by a scheduler, with the config they have now (a changed one starts again)
        todo = [t for t in spec.trials
                if not (t["name"] in current and (current[t["name"]].completed or t["name"] in stopped))]
        return SweepPlan(trials=todo, resume_from={t["name"]: current[t["name"]].path for t in todo
                                                   if t["name"] in current},
                         taken_dirs=taken, expected=expected, runs=frozenset(found), finished=len(spec.trials) - len(todo),
                         resume_epochs={t["name"]: current[t["name"]].epochs for t in todo if t["name"] in current})
    _check_search_change(stored, spec, sweep_dir)
    unfinished = [c for c in found.values() if not c.completed and c.name not in stopped]
    execution = {k: v for k, v in spec.space.items() if k in EXECUTION_KEYS and k not in spec.searched}
    todo = [{**{k: v for k, v in c.config.items() if k not in EXECUTION_KEYS or k == "name"}, **execution}
            for c in unfinished]
    # (PBT mutates a sample's values trial by trial: its trials no longer tell which sample they are)
    missing = _unstarted_grid_points(spec, found) if spec.search == "random" and spec.scheduler != "pbt" else []
    todo += missing
    started = len(set(found) | stopped) + len(missing)
    remaining = max(0, expected - started)
    samples = math.ceil(remaining / _grid_size(spec))  # the grid is 1 trial for Optuna/HyperOpt
    searched = spec.searched
    warm = [({k: c.config.get(k) for k in searched}, sum(c.val_errors) / len(c.val_errors))
            for c in found.values() if c.completed and c.val_errors and spec.search in ("optuna", "hyperopt")]
    return SweepPlan(trials=todo, resume_from={c.name: c.path for c in unfinished}, samples=samples, warm=warm,
                     taken_dirs=taken, expected=expected, runs=frozenset(found),
                     finished=len(set(found) | stopped) - len(unfinished),
                     resume_epochs={c.name: c.epochs for c in unfinished})


def _unstarted_grid_points(spec: SweepSpec, found: dict[str, TrialCheckpoint]) -> list[dict[str, Any]]:
    """A random search's grid points (seeds, ...) of started samples that never reached a checkpoint
    (a kill between a sample's trials), with the sample's values: each sampled setting keeps the
    whole grid its selection averages over, and no extra sample runs in their place. A point is
    named after its sample's trial number and its place in the grid (no Tune trial name can be)."""
    import itertools

    from .trainable import sampled_run_name

    axes = spec.sample_grid
    ranges = [k for k in spec.searched if k not in axes]
    samples: dict[tuple[str, ...], list[TrialCheckpoint]] = {}
    for c in found.values():
        samples.setdefault(tuple(repr(c.config.get(k)) for k in ranges), []).append(c)
    out = []
    for members in samples.values():
        have = {tuple(repr(m.config.get(k)) for k in axes) for m in members}
        first = members[0]
        for j, point in enumerate(itertools.product(*axes.values())):
            if tuple(map(repr, point)) in have:
                continue
            config = {**{k: v for k, v in spec.space.items() if k not in axes},  # as Tune would have drawn it
                      **{k: first.config.get(k) for k in ranges}, **dict(zip(axes, point, strict=True))}
            config["name"] = f"{sampled_run_name(config, first.name.rsplit('-', 1)[-1])}-{j}"
            out.append(config)
    return out


def expected_trials(spec: SweepSpec) -> int:
    """Trials the whole sweep runs: a grid's trials, a searcher's samples times the grid of each."""
    return len(spec.trials) if spec.search == "grid" else spec.num_samples * _grid_size(spec)


def _grid_size(spec: SweepSpec) -> int:
    """Trials per sample of a random search: the grid of its lists (1 for Optuna/HyperOpt)."""
    return math.prod(len(values) for values in spec.sample_grid.values())


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
        diff = experiment_diff(old[name], trial) if name in finished and name in old else []
        if diff:
            refused.append(f"{name} ({'; '.join(diff)})")
    removed = sorted(set(old) - {t["name"] for t in spec.trials} & finished)
    if refused or removed:
        parts = ([f"it changes finished trial(s): {', '.join(refused)}"] if refused else []) + (
            [f"it drops finished trial(s): {', '.join(removed)}"] if removed else [])
        raise RefusedError(f"--resume: the sweep file differs from {sweep_dir.uri(SPEC_FILE)} where trials already "
                           f"finished: {'; '.join(parts)}. A resume may change execution-only keys and trials "
                           "that have not finished; to change finished ones start a new sweep (--name NEW)")


def _check_search_change(stored: dict[str, Any], spec: SweepSpec, sweep_dir: SweepDir) -> None:
    changes = [f"sweep.{k}: {stored.get(k)!r} -> {getattr(spec, k)!r}" for k in ("search", "num_samples")
               if stored.get(k) != getattr(spec, k)]
    changes += experiment_diff(stored.get("space", {}), spec.space)
    if changes:
        raise RefusedError(f"--resume: the sweep file's search differs from {sweep_dir.uri(SPEC_FILE)}: "
                           f"{'; '.join(changes)}. A resume may change execution-only keys only; start a new "
                           "sweep for another search (--name NEW)")


def matching_checkpoints(found: dict[str, TrialCheckpoint], spec: SweepSpec) -> dict[str, TrialCheckpoint]:
    """The checkpoints that belong to this sweep: a grid's trials with their current config (a
    failed trial whose config a resume changed starts again, its old checkpoint is not its run)."""
    if spec.search != "grid":
        return found
    by_name = {t["name"]: t for t in spec.trials}
    return {n: c for n, c in found.items() if n in by_name and not experiment_diff(c.config, by_name[n])}
