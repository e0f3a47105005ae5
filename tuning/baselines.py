"""`sweep.opt_baselines` / `--opt-baselines`: the sweep trains its own OPT baselines, so the paper's
table (chosen settings, relative increase against OPT, seed spread) is one command.

OPT at unit i is the sweep's network, data and training with a single exit at unit i
(:func:`adaptive_weights.opt.opt_config`). For every distinct model and training of the grid (each
seed included) the OPT runs at the milestone units are added as trials of the sweep; trials with
the same config run once. In the report they take no part in the selection of settings: every
single-exit run of the sweep is a baseline (:func:`split_baselines`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from adaptive_weights.errors import RefusedError

if TYPE_CHECKING:
    from adaptive_weights.runs import Run

    from .sweepfile import SweepSpec

__all__ = ["with_opt_baselines", "split_baselines"]


def with_opt_baselines(spec: SweepSpec) -> SweepSpec:
    """``spec`` with the OPT runs of its trials' models appended as trials (grid search only)."""
    from adaptive_weights.config import RunConfig
    from adaptive_weights.opt import opt_config, opt_units
    from adaptive_weights.schemes import is_single_exit

    if spec.search != "grid":
        raise RefusedError(f"sweep.opt_baselines: the OPT runs are added to a grid's trials; a {spec.search!r} search "
                           "has none up front (train them with `adaptive-weights opt`, then give the report "
                           "--baselines DIR)")
    names = {t["name"] for t in spec.trials}
    added: list[dict[str, Any]] = []
    for trial in spec.trials:
        cfg = RunConfig.from_flat(trial).resolve()
        if is_single_exit(cfg.scheme.name):
            continue  # already an OPT run of the grid
        for unit in opt_units(cfg):
            opt = opt_config(cfg, unit).to_flat()
            if opt["name"] not in names:
                names.add(opt["name"])
                added.append(opt)
    return replace(spec, trials=[*spec.trials, *added])


def split_baselines(runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    """``(anytime runs, OPT runs)``: the settings are chosen among the first; the second are the
    baselines of the relative-increase table."""
    return [r for r in runs if not r.is_opt], [r for r in runs if r.is_opt]
