"""The demo sweep behind ``make demo``: tune, choose, compare, on digits, in a few minutes.

Five strategies (``static``, ``aann``, ``eg``, ``rwm``, ``avgl``), two values of the loss-weight
``ratio`` (every one of them but ``static`` has it), two seeds: 18 small anytime ResNets trained by
an in-process, loopback-only Ray Tune, then the paper's selection rule and the report (tables and
plots). About five minutes on 2 CPU cores.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from .sweepfile import SweepSpec, parse_sweep

__all__ = ["DEMO_SWEEP", "demo_spec", "run_demo_sweep"]

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


def run_demo_sweep(out_dir: str | Path = "results/sweeps", *, cpus_per_trial: float = 1.0,
                   verbose: int = 1, **overrides: Any) -> Path:
    """Run the demo sweep into ``out_dir/demo-digits`` (replacing an earlier demo) and write its
    report; returns the path of ``report.md`` (CSV tables and PNG plots beside it)."""
    from .launcher import run_sweep, write_sweep_report

    spec = demo_spec(**overrides)
    target = Path(out_dir).resolve() / spec.name
    if target.exists():  # the demo always starts fresh; real sweeps refuse to overwrite
        shutil.rmtree(target)
    t0 = time.perf_counter()
    print(f"demo sweep: {len(spec.trials)} trials ({', '.join(spec.axes['strategy.name'])}; "
          f"ratio in {DEMO_SWEEP['strategy.ratio']}; seeds {DEMO_SWEEP['train.seed']}) on digits, "
          "in-process Ray on loopback", flush=True)
    outcome = run_sweep(spec, out=out_dir, cpus_per_trial=cpus_per_trial, tensorboard=False, verbose=verbose)
    if outcome.errored or outcome.unfinished:
        raise RuntimeError(f"demo trials failed or did not finish: {', '.join(outcome.errored + outcome.unfinished)} "
                           f"(logs under {outcome.experiment})")
    report = write_sweep_report(outcome.run_dirs, target / "report", title="Demo sweep: digits")
    text = report.read_text()
    start = text.find("## Chosen hyper-parameters")
    after = text.find("## (a)") + 1
    end = min(i for i in (text.find("\n### OPT", after), text.find("\n## ", after), len(text)) if i > 0)
    print("\n" + text[start:end].strip() + "\n")  # the choice and every exit's test error
    print(f"{len(outcome.run_dirs)} runs in {time.perf_counter() - t0:.0f} s; report (tables, win rates "
          f"against aann, plots): {report}", flush=True)
    return report


if __name__ == "__main__":
    run_demo_sweep()
