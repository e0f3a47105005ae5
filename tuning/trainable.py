"""The Ray Tune trainable: ``adaptive_weights.train.train`` with a report hook, nothing more.

Every epoch the training loop writes its atomic checkpoint (``checkpoints/last.pt``), its metrics
and summary into the run directory and then calls ``report``; the hook hands Ray the epoch's
metrics and the *whole run directory* as the trial's checkpoint. Ray persists it to the storage
path (a shared file system or a bucket on a cluster), so a trial restarted on another node copies
it back and continues with ``train(..., resume=True)`` exactly where the checkpoint left off, and
the last checkpoint of a finished trial is a complete run directory that reports read directly.

Ray is imported inside the function only: importing this module starts nothing.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["train_trial", "trial_metrics", "RUN_DIRNAME"]

RUN_DIRNAME = "run"


def trial_metrics(row: dict[str, Any], *, resumed_from_epoch: int) -> dict[str, float]:
    """The numeric entries of an epoch row (per-exit errors ``val/err/exit_03``, their mean
    ``val/err/mean``, the final exit's ``val/err/final``, losses, probabilities, lr, timings) plus
    ``resumed_from_epoch`` (0 for a trial that never restarted)."""
    first = ("epoch", "val/err/final", "val/err/mean")  # progress tables show the first columns
    ordered = [k for k in first if k in row] + [k for k in row if k not in first]
    out = {k: float(row[k]) for k in ordered
           if isinstance(row[k], (int, float)) and not isinstance(row[k], bool) and math.isfinite(row[k])}
    out["resumed_from_epoch"] = float(resumed_from_epoch)
    return out


def train_trial(config: dict[str, Any], runs: Mapping[str, dict[str, Any]] | None = None) -> None:
    """Ray Tune function trainable. ``config["run"]``: a run name looked up in ``runs`` (bound with
    ``tune.with_parameters``, so progress tables show names, not whole configs) or a resolved flat
    run config itself; ``config["tensorboard"]``: whether the run writes TensorBoard events too.

    The run directory is always rebuilt from Ray's checkpoint (or started empty), never reused
    from the local disk: a worker killed between writing ``last.pt`` and reporting it would
    otherwise resume from an epoch that Ray never recorded, and the trial's results would differ
    from an undisturbed run's.
    """
    from ray import tune

    from adaptive_weights.config import RunConfig
    from adaptive_weights.train import train

    run = config["run"]
    if isinstance(run, str):
        if runs is None or run not in runs:
            raise ValueError(f"trial {run!r} is not in this sweep's grid (was the sweep file changed?)")
        run = runs[run]
    if run.get("train.device", "auto") == "auto":
        # the GPUs Ray gave this trial (CUDA_VISIBLE_DEVICES is set to them), else the CPU: a trial
        # asked for 0 GPUs must not crowd onto a GPU that Ray lends to others
        import ray

        run = {**run, "train.device": "cuda" if ray.get_gpu_ids() else "cpu"}
    cfg = RunConfig.from_flat(run)
    # The run trains in a scratch folder outside the trial directory: Ray copies trial directories
    # to the storage path while trials write, and would trip over the atomic writes' temp files.
    # Every epoch's checkpoint (the whole run directory) is what Ray keeps.
    ctx = tune.get_context()
    run_dir = (Path(tempfile.gettempdir()) / "adaptive-weights-trials"
               / f"{ctx.get_experiment_name()}-{ctx.get_trial_id()}" / RUN_DIRNAME).resolve()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    checkpoint = tune.get_checkpoint()
    resumed_from = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as saved:
            shutil.copytree(saved, run_dir)
        resumed_from = _checkpoint_epoch(run_dir)

    def report(row: dict[str, Any], checkpoint_path: Path) -> None:
        tune.report(trial_metrics(row, resumed_from_epoch=resumed_from),
                    checkpoint=tune.Checkpoint.from_directory(str(run_dir)))

    try:
        train(cfg, out_dir=run_dir, resume=checkpoint is not None, report=report,
              tensorboard=bool(config.get("tensorboard", True)))
    finally:
        shutil.rmtree(run_dir.parent, ignore_errors=True)


def _checkpoint_epoch(run_dir: Path) -> int:
    from adaptive_weights._io import read_json

    summary = run_dir / "summary.json"
    return int(read_json(summary).get("epochs", 0)) if summary.exists() else 0
