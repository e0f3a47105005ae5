"""The demo behind ``make demo``: tune, choose, compare, on digits, in a few minutes.

Five strategies (``static``, ``aann``, ``eg``, ``rwm``, ``avgl``), two values of the loss-weight
``ratio`` (every one of them but ``static`` has it), two seeds: 18 small anytime ResNets trained by
an in-process, loopback-only Ray Tune; then the OPT baselines (the same net with a single exit at
each milestone, per seed), the paper's selection rule and the report (tables and plots). About
five minutes on 2 CPU cores. Every run writes TensorBoard (scalars, the probability stack, the
error-versus-MACs curve, HParams); the demo ends with the ``tensorboard`` command that shows them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from .sweepfile import SweepSpec, parse_sweep

__all__ = ["DEMO_SWEEP", "demo_spec", "opt_spec", "run_demo_sweep"]

DEMO_SWEEP: dict[str, Any] = {
    "data.name": "digits",
    "model.n": 3,
    "model.c": 16,
    "scheme.name": "sieve",
    "train.preset": "digits",
    "train.epochs": 12,
    "train.batch_size": 64,
    "train.progress": False,
    "train.seed": [0, 1],
    "strategy.name": ["static", "aann", "eg", "rwm", "avgl"],
    "strategy.ratio": [1.0, 2.0],
    "sweep.paper_grid": False,  # other hyper-parameters at their defaults: a demo, not the paper's grid
}


def demo_spec(**overrides: Any) -> SweepSpec:
    """The demo sweep (``DEMO_SWEEP`` with ``overrides`` of its dotted keys)."""
    return parse_sweep({**DEMO_SWEEP, **overrides}, default_name="demo-digits")


def opt_spec(**overrides: Any) -> SweepSpec:
    """The OPT baselines of the demo's model: ``optimal@idx_q`` at the milestones, every seed."""
    from adaptive_weights.metrics import milestone_indices
    from adaptive_weights.models import count_units

    base = {**DEMO_SWEEP, **overrides}
    num_units = count_units("resnet", n=int(base["model.n"]))
    flat = {k: v for k, v in base.items() if not k.startswith(("strategy.", "sweep."))}
    flat.update({"strategy.name": "static", "sweep.paper_grid": False,
                 "scheme.name": [f"optimal@{u}" for u in sorted(set(milestone_indices(num_units)))]})
    return parse_sweep(flat, default_name="demo-digits-opt")


def _mean_test_errors(run_dirs: list[Path]) -> tuple[list[int], list[int], list[float]]:
    from adaptive_weights._io import read_json

    summaries = [read_json(Path(d) / "summary.json") for d in run_dirs]
    k = len(summaries[0]["exit_units"])
    mean = [sum(s["errors"]["test"][i] for s in summaries) / len(summaries) for i in range(k)]
    return summaries[0]["exit_units"], summaries[0]["exit_macs"], mean


def run_demo_sweep(out_dir: str | Path = "results/sweeps", *, cpus_per_trial: float = 1.0,
                   verbose: int = 1, **overrides: Any) -> Path:
    """Run the demo sweep and its OPT baselines into ``out_dir/demo-digits[-opt]`` (replacing an
    earlier demo), write the report and print the chosen settings' per-exit errors and costs;
    returns the path of ``report.md`` (CSV tables and PNG plots beside it)."""
    from adaptive_weights.evaluate import format_exit_table
    from adaptive_weights.runs import load_runs

    from .launcher import run_sweep, write_sweep_report
    from .selection import select_settings

    spec, opt = demo_spec(**overrides), opt_spec(**overrides)
    target = Path(out_dir).resolve() / spec.name
    for old in (target, Path(out_dir).resolve() / opt.name):
        if old.exists():  # the demo always starts fresh; real sweeps refuse to overwrite
            shutil.rmtree(old)
    t0 = time.perf_counter()
    print(f"demo sweep: {len(spec.trials)} trials ({', '.join(spec.axes['strategy.name'])}; "
          f"ratio in {DEMO_SWEEP['strategy.ratio']}; seeds {DEMO_SWEEP['train.seed']}) on digits, "
          f"then {len(opt.trials)} OPT baselines; in-process Ray on loopback", flush=True)
    outcomes = [run_sweep(s, out=out_dir, cpus_per_trial=cpus_per_trial, verbose=verbose) for s in (spec, opt)]
    for outcome in outcomes:
        if outcome.errored or outcome.unfinished:
            raise RuntimeError(f"demo trials failed or did not finish: "
                               f"{', '.join(outcome.errored + outcome.unfinished)} (logs under {outcome.experiment})")
    sweep, baselines = outcomes
    report = write_sweep_report(sweep.run_dirs, target / "report", title="Demo sweep: digits",
                                baselines=baselines.run_dirs)
    text = report.read_text()
    start = text.find("## Chosen hyper-parameters")
    end = text.find("\n## ", start + 1)
    print("\n" + text[start:end].strip() + "\n")

    errors: dict[str, list[float]] = {}
    for choice in select_settings(load_runs(sweep.run_dirs)):
        label = dict(choice.chosen.group).get("strategy.name") or choice.chosen.group_text()
        units, macs, errors[label] = _mean_test_errors(list(choice.chosen.runs))
    print("test error of every exit at each strategy's chosen setting (mean over seeds):")
    print(format_exit_table(units, macs, errors))
    print(f"\n{len(sweep.run_dirs) + len(baselines.run_dirs)} runs in {time.perf_counter() - t0:.0f} s; "
          f"report (relative increase against OPT, win rates, plots): {report}")
    print(f"TensorBoard of every trial (probability stacks, error vs MACs, HParams):\n"
          f"  tensorboard --logdir {sweep.runs_dir}", flush=True)
    return report


if __name__ == "__main__":
    run_demo_sweep()
