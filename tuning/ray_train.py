"""A sweep trial on several workers: Ray Train's ``TorchTrainer`` inside the Tune trial.

``adaptive-weights sweep ... --workers-per-trial N`` runs every trial as one data-parallel run:
the Tune trial (a light driver that holds no CPU or GPU) starts a ``TorchTrainer`` with
``ScalingConfig(num_workers=N, use_gpu=...)``; Ray Train starts the workers, sets up their
process group (gloo on CPUs, NCCL on GPUs) and each worker calls the same
:func:`adaptive_weights.training.train`, which joins that group (``adaptive_weights.distributed``).

Checkpoints go where the sweep looks for them: the Train run is named after the Tune trial's
directory under the experiment path, so its ``checkpoint_*`` folders (each a complete run
directory reported by rank 0) sit in the trial directory, as a one-process trial's do. A trial that
Tune retries starts a Train run of the same name, which Ray Train restores from its latest
checkpoint; a resumed sweep hands the trial its last run directory (from a run of any world size).
``TuneReportCallback`` forwards rank 0's metrics of every epoch to Tune (progress, schedulers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["fit_on_workers", "DRIVER_RESOURCES"]

# The Tune trial of a multi-worker run only waits for Ray Train: it reserves nothing a worker needs
# (Ray refuses an all-zero request, hence one byte of memory).
DRIVER_RESOURCES = {"cpu": 0, "memory": 1}


def fit_on_workers(cfg, *, start: Any, workers: int, cpus_per_worker: float, gpus_per_worker: float,
                   tensorboard: bool, hparam_keys: Sequence[str]) -> None:
    """Train ``cfg`` (a resolved RunConfig) on ``workers`` Ray Train workers from the Tune trial that
    calls it; ``start``: the checkpoint (a run directory) to continue from, if any."""
    from ray import train, tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    ctx = tune.get_context()
    storage = ctx.get_storage()
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"run": cfg.to_flat(), "start": start, "tensorboard": tensorboard,
                           "hparam_keys": list(hparam_keys),
                           "scratch": f"{ctx.get_experiment_name()}-{ctx.get_trial_id()}"},
        scaling_config=train.ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                           resources_per_worker=resources),
        run_config=train.RunConfig(
            name=storage.trial_dir_name, storage_path=storage.experiment_fs_path,
            storage_filesystem=storage.storage_filesystem, callbacks=[TuneReportCallback()],
            checkpoint_config=train.CheckpointConfig(num_to_keep=2)),
    )
    trainer.fit()


def _train_worker(loop: dict[str, Any]) -> None:
    """One Ray Train worker: the run on this rank's device, its slice of every batch."""
    from ray import train
    from ray.train.torch import get_device

    from adaptive_weights.config import RunConfig

    from .trainable import train_in_scratch, with_device

    ctx = train.get_context()
    rank = ctx.get_world_rank()
    cfg = RunConfig.from_flat(loop["run"]).resolve()
    if cfg.train.device == "auto":
        cfg = with_device(cfg, str(get_device()))
    checkpoint = train.get_checkpoint()  # Ray Train's own, when it restarts this run
    if checkpoint is None:
        checkpoint = loop["start"]

    def report(metrics: dict[str, float], run_dir) -> None:
        # every rank reports (Ray Train waits for all); rank 0's run directory is the checkpoint
        train.report(metrics, checkpoint=train.Checkpoint.from_directory(str(run_dir)) if rank == 0 else None)

    train_in_scratch(cfg, f"{loop['scratch']}-rank{rank}", checkpoint=checkpoint, report=report,
                     tensorboard=loop["tensorboard"], hparam_keys=loop["hparam_keys"] if rank == 0 else ())
