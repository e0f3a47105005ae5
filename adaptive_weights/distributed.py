"""Data-parallel plumbing for one run on several processes (``torch.distributed``, DDP).

A run joins a process group in one of three ways: the one already initialised by its launcher
(Ray Train's ``TorchTrainer`` sets it up before calling the training function), one described by
torchrun's ``env://`` variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``; NCCL on CUDA devices, gloo on CPUs), or none: a single process, where every
helper below is a no-op. The training loop asks :class:`Distributed` only four things: which
device this rank uses, the model wrapped for gradient averaging, the per-exit loss vector averaged
over ranks (so every rank's strategy sees the same numbers and stays bit-identical), and sums of
evaluation and epoch counts. Only rank 0 (``is_main``) writes files.

The collectives here run on the training device and return tensors; nothing reads a value back to
the host, so a step costs DDP's gradient all-reduce plus one ``[K]`` all-reduce (on CUDA both are
queued on the stream, asynchronous to the host).
"""

from __future__ import annotations

import atexit
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Distributed", "setup_distributed", "SINGLE"]


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: rank, world size, local rank (its device on the node) and
    the backend (``None`` for a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory, TensorBoard and checkpoints."""
        return self.rank == 0

    def describe(self) -> dict[str, int | str | None]:
        """What ``config.json`` and ``summary.json`` record about the processes that trained the run."""
        return {"world_size": self.world_size, "backend": self.backend}

    def wrap_model(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model as the training step calls it: DDP-wrapped (gradients averaged over ranks,
        rank 0's parameters and buffers broadcast at the start) or, alone, the model itself.
        Checkpoints always save the unwrapped model, so they carry no ``module.`` prefixes."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of ``tensor`` (a new tensor; bit-identical on every rank)."""
        if not self.enabled:
            return tensor
        out = tensor.detach().clone()
        dist.all_reduce(out)  # SUM: gloo has no AVG
        return out.div_(self.world_size)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of ``tensor`` (a new tensor)."""
        if not self.enabled:
            return tensor
        out = tensor.detach().clone()
        dist.all_reduce(out)
        return out

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics): after the last step each
        rank updated them from its own slice, and evaluation and the checkpoint must agree."""
        if self.enabled:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


SINGLE = Distributed()


def setup_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the run's process group (see the module docstring) and pick this rank's device.

    On CUDA each rank takes ``cuda:LOCAL_RANK`` of the GPUs it sees (unless the config names an
    index). A group this function creates is destroyed when the process exits; a launcher's group
    (Ray Train) is left to the launcher.
    """
    if not dist.is_available():
        return SINGLE, device
    if not dist.is_initialized():
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return SINGLE, device
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            device = _rank_device(device)
        dist.init_process_group(backend=backend, init_method="env://",
                                device_id=device if device.type == "cuda" else None)
        atexit.register(_destroy)
    elif device.type == "cuda":
        device = _rank_device(device)
    if dist.get_world_size() <= 1:
        return SINGLE, device
    ctx = Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(),
                      local_rank=int(os.environ.get("LOCAL_RANK", "0")), backend=str(dist.get_backend()))
    return ctx, device


def _rank_device(device: torch.device) -> torch.device:
    if device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(device)
    return device


def _destroy() -> None:
    """Destroy the group while the interpreter is whole. A DDP wrapper left in a reference cycle
    holds the gloo group until the interpreter's final collection, where freeing gloo's pending
    work can abort the process (SIGABRT) after the run has succeeded; collect it here first."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
