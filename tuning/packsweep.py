"""A packed Ray sweep (``sweep --pack N`` / ``sweep.pack: N``), decided before Ray starts.

Why a pack is one Ray trial: N runs that share a graph train as one grouped network
(:func:`adaptive_weights.packing.train_packed`) in one process on one device, so Tune schedules,
resources (``--gpus-per-trial 1``: one pack per GPU), retries and checkpoints the pack as a whole;
each member still writes its own ordinary run directory, found and exported by
:class:`~adaptive_weights.tuning.sweepdir.SweepDir` under its own name, so ``--report``,
``--resume`` and the paper's selection rule see the runs an unpacked sweep would have written.

What follows from that: the whole set of configs must be known up front. A grid is; a random
search's samples are drawn here (:func:`sample_trials`, the same distributions as Tune's) and then
packed. Optuna and HyperOpt propose one configuration at a time from the results before it, ASHA
stops single trials early by their own metric and PBT swaps a trial's weights for another trial's
checkpoint: none of them can act on one member of a pack, so with ``--pack`` > 1 they are refused
(:func:`check_pack_options`). On a resume the unfinished runs are packed again among those that
continue from the same epoch (a pack's members move in step), so a resume may use another ``--pack``.

The trials are grouped by :func:`adaptive_weights.tuning.packed.group_packs`, the rule the Ray-free
``adaptive-weights pack`` uses, and every pack is checked with
:func:`adaptive_weights.packing.check_pack` before anything is written.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from adaptive_weights.errors import RefusedError

from .plan import SweepPlan
from .sweepdir import pack_trial_name
from .sweepfile import SweepSpec, check_pack_size, is_range

__all__ = ["check_pack_options", "plan_packs", "sample_trials", "pack_param_space", "MEMBERS_KEY"]

MEMBERS_KEY = "members"  # a pack trial's Ray config: {"name": "pack-<id>", "members": [run names]}

_ONE_AT_A_TIME = {
    "optuna": "Optuna proposes one configuration at a time from the results of the trials before it",
    "hyperopt": "HyperOpt proposes one configuration at a time from the results of the trials before it",
}
_PER_TRIAL_SCHEDULERS = {
    "asha": "ASHA stops a trial early by its own val/err/mean, and a pack is one Ray trial of several runs "
            "(stopping it would stop every member)",
    "pbt": "PBT continues a trial from another trial's checkpoint with mutated hyper-parameters, and a pack's "
           "checkpoint holds several runs with their own hyper-parameters",
}


def check_pack_options(spec: SweepSpec, *, workers_per_trial: int = 1) -> None:
    """Refuse, before Ray starts, what a packed sweep cannot do (see the module docstring)."""
    check_pack_size(spec.pack, "sweep.pack (--pack)")
    if spec.pack == 1:
        return
    what = f"sweep.pack (--pack) {spec.pack}"
    if spec.search in _ONE_AT_A_TIME:
        raise RefusedError(f"{what} with sweep.search: {spec.search!r}: {_ONE_AT_A_TIME[spec.search]}, and a pack "
                           "needs its members' configurations up front; use sweep.search: grid or random (sampled "
                           "up front, then packed), or --pack 1")
    if spec.scheduler in _PER_TRIAL_SCHEDULERS:
        raise RefusedError(f"{what} with sweep.scheduler: {spec.scheduler!r}: {_PER_TRIAL_SCHEDULERS[spec.scheduler]}; "
                           "use sweep.scheduler: fifo, or --pack 1")
    if workers_per_trial > 1:
        raise RefusedError(f"{what} with --workers-per-trial {workers_per_trial}: a pack trains in one process on "
                           "one device, not data-parallel; use --pack 1 for data-parallel trials")


def plan_packs(spec: SweepSpec, plan: SweepPlan, *, rng: random.Random | None = None) -> dict[str, list[dict[str, Any]]]:
    """Pack trial name -> its members' resolved flat configs: ``plan``'s trials and its new samples
    (a random search's, drawn now), grouped by the epoch they continue from, then packed by
    :func:`~adaptive_weights.tuning.packed.group_packs`; every pack checked by ``check_pack``."""
    from adaptive_weights.config import RunConfig
    from adaptive_weights.packing import PackRefusedError, check_pack

    from .packed import group_packs
    from .trainable import run_config

    trials = [run_config(t, t["name"]).to_flat() for t in plan.trials]
    if plan.samples:
        trials += sample_trials(spec, plan.samples, taken=set(plan.runs) | {t["name"] for t in trials}, rng=rng)
    by_start: dict[int, list[dict[str, Any]]] = {}
    for trial in trials:
        by_start.setdefault(plan.resume_epochs.get(trial["name"], 0), []).append(trial)
    packs: dict[str, list[dict[str, Any]]] = {}
    for members in by_start.values():
        for pack in group_packs(members, spec.pack):
            try:
                check_pack([RunConfig.from_flat(t) for t in pack])
            except PackRefusedError as err:
                raise PackRefusedError(f"sweep.pack (--pack) {spec.pack}: every trial of a packed sweep trains in a "
                                       f"pack, and {err}; sweep those trials with --pack 1 (another sweep file "
                                       "or --name)") from None
            packs[pack_trial_name([t["name"] for t in pack])] = pack
    return packs


def sample_trials(spec: SweepSpec, samples: int, *, taken: Collection[str] = frozenset(),
                  rng: random.Random | None = None) -> list[dict[str, Any]]:
    """``samples`` settings of a random search drawn up front, each over the grid of the file's
    lists, as resolved flat configs named as Tune names its sampled trials
    (:func:`~adaptive_weights.tuning.trainable.sampled_run_name`, numbered past the names in ``taken``)."""
    from .trainable import run_config, sampled_run_name

    if spec.search != "random":
        raise RefusedError(f"sweep.search: {spec.search!r}: only a random search is sampled up front")
    rng = rng or random.Random()
    grid = spec.sample_grid
    ranges = [k for k in spec.searched if k not in grid]
    fixed = {k: v for k, v in spec.space.items() if k not in spec.searched}
    numbers = (f"{k:05d}" for k in itertools.count())
    out = []
    for _ in range(samples):
        drawn = {k: _draw(spec.space[k], rng) for k in ranges}
        for point in itertools.product(*grid.values()):
            config = {**fixed, **drawn, **dict(zip(grid, point, strict=True))}
            name = next(n for n in (sampled_run_name(config, f"trial_{k}") for k in numbers) if n not in taken)
            taken = {*taken, name}
            out.append(run_config(config, name).to_flat())
    return out


def _draw(value: Mapping[str, Any], rng: random.Random) -> Any:
    """One value of a range, as Tune's domain of the same name draws it."""
    if not is_range(value):
        raise RefusedError(f"expected a range {{kind: [low, high]}}, got {value!r}")
    kind, args = next(iter(value.items()))
    if kind == "choice":
        return rng.choice(list(args))
    if kind == "randint":
        return rng.randrange(int(args[0]), int(args[1]))
    if kind == "loguniform":
        return math.exp(rng.uniform(math.log(args[0]), math.log(args[1])))
    return rng.uniform(float(args[0]), float(args[1]))


def pack_param_space(packs: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The packs as a param_space (:func:`~adaptive_weights.tuning.space.grid_param_space` of one
    "trial" per pack): the pack names as the grid, each pack's member run names beside its name, so
    Ray's tables and dataframe show which runs a pack trial trains."""
    from .space import grid_param_space

    return grid_param_space([{"name": name, MEMBERS_KEY: [t["name"] for t in pack]} for name, pack in packs.items()])
