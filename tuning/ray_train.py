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

On a Ray bound to loopback (a sweep without ``--address``) the workers' process group stays there
too (:class:`LoopbackTorchConfig`): Ray Train points the workers at 127.0.0.1, but the TCPStore
that rank 0 starts for ``torch.distributed`` listens on every interface whatever address it is
given, and gloo and NCCL open their sockets on the interface the host name resolves to. This module
is imported only inside a sweep's Ray session, after the loopback setting is in place.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import ray
import torch.distributed as dist
from ray.train._internal.worker_group import WorkerGroup as V1WorkerGroup
from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _TorchBackend

__all__ = ["fit_on_workers", "DRIVER_RESOURCES", "LoopbackTorchConfig", "LOOPBACK_INTERFACE"]

LOOPBACK = "127.0.0.1"
#: the loopback interface gloo and NCCL are told to use (GLOO_SOCKET_IFNAME, NCCL_SOCKET_IFNAME)
LOOPBACK_INTERFACE = "lo0" if sys.platform == "darwin" else "lo"

# The Tune trial of a multi-worker run only waits for Ray Train: it reserves nothing a worker needs
# (Ray refuses an all-zero request, hence one byte of memory).
DRIVER_RESOURCES = {"cpu": 0, "memory": 1}


def fit_on_workers(cfg, *, start: Any, workers: int, cpus_per_worker: float, gpus_per_worker: float,
                   tensorboard: bool, hparam_keys: Sequence[str], imports: Sequence[str] = ()) -> None:
    """Train ``cfg`` (a resolved RunConfig) on ``workers`` Ray Train workers from the Tune trial that
    calls it; ``start``: the checkpoint (a run directory) to continue from, if any; ``imports``: the
    plug-in modules each worker imports before it resolves the run's config."""
    from ray import train, tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    ctx = tune.get_context()
    storage = ctx.get_storage()
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    loopback = ipaddress.ip_address(ray.util.get_node_ip_address()).is_loopback
    trainer = TorchTrainer(
        _train_worker,
        torch_config=LoopbackTorchConfig(backend="nccl" if gpus_per_worker > 0 else "gloo") if loopback else None,
        train_loop_config={"run": cfg.to_flat(), "start": start, "tensorboard": tensorboard,
                           "hparam_keys": list(hparam_keys), "imports": list(imports),
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

    from .plugins import import_plugins
    from .trainable import train_in_scratch, with_device

    import_plugins(loop.get("imports", ()))
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


class LoopbackTorchConfig(TorchConfig):
    """Ray Train's ``TorchConfig`` whose process group opens no port beyond the machine: rank 0's
    store listens on a socket bound to 127.0.0.1, and gloo and NCCL use the loopback interface.
    ``backend`` must be given (``gloo`` or ``nccl``)."""

    @property
    def backend_cls(self) -> type:
        return _LoopbackTorchBackend


class _LoopbackTorchBackend(_TorchBackend):
    """``_TorchBackend.on_start`` with the store started by us on loopback (its shutdown is Ray's)."""

    def on_start(self, worker_group: Any, backend_config: TorchConfig) -> None:
        n, timeout_s = len(worker_group), backend_config.timeout_s
        if not isinstance(worker_group, V1WorkerGroup):  # as Ray Train (v1 sets them when training starts)
            worker_group.execute(_set_torch_distributed_env_vars)  # RANK, LOCAL_RANK, WORLD_SIZE, ...
        worker_group.execute(_use_loopback_interface)
        port = worker_group.execute_single(0, _start_loopback_store, world_size=n, timeout_s=timeout_s)
        ray.get([worker_group.execute_single_async(i, _join_process_group, backend=backend_config.backend,
                                                   world_rank=i, world_size=n, port=port, timeout_s=timeout_s)
                 for i in range(n)])


_SERVER: list[dist.TCPStore] = []  # rank 0's store from its start until it joins the group


def _use_loopback_interface() -> None:
    os.environ.update(GLOO_SOCKET_IFNAME=LOOPBACK_INTERFACE, NCCL_SOCKET_IFNAME=LOOPBACK_INTERFACE)


def _start_loopback_store(world_size: int, timeout_s: float) -> int:
    """On rank 0: a TCPStore server on a free port of 127.0.0.1 (given the bound socket: left to
    itself it would bind the port on every interface); returns the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    _SERVER[:] = [dist.TCPStore(LOOPBACK, port, world_size, True, timedelta(seconds=timeout_s),
                                wait_for_workers=False, master_listen_fd=sock.detach())]
    return port


def _join_process_group(backend: str, world_rank: int, world_size: int, port: int, timeout_s: float) -> None:
    if backend == "nccl":  # as Ray Train: a timed-out collective fails the run instead of hanging it
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    timeout = timedelta(seconds=timeout_s)
    store = _SERVER.pop() if world_rank == 0 else dist.TCPStore(LOOPBACK, port, world_size, False, timeout)
    dist.init_process_group(backend=backend, store=store, rank=world_rank, world_size=world_size, timeout=timeout)
