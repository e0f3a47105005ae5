"""`train.speed`: how fast a run executes, chosen once its device is known.

A c=16 anytime ResNet on a GPU is bound by the host launching its many small kernels (27 exits, each
with its own head and loss), not by arithmetic: measured on an H200 (benchmarks/bench_gpu_step.py,
n=9, batch 128), fp32 eager trains 2,595 images/s and the same step as CUDA graphs
(`torch.compile` reduce-overhead) 9,687. So a GPU run is `fast` unless asked otherwise:

    fast   compile reduce-overhead, channels_last, cudnn.benchmark, fused SGD (on CUDA; on another
           device only what it supports: compile default, the fused SGD kernel)
    exact  fp32 eager, nothing else: the reference path, bit-for-bit reproducible on the CPU
    auto   fast on a CUDA device, exact elsewhere (the CPU default is unchanged)

`train.compile` left at `auto` and `train.channels_last`, `train.cudnn_benchmark`, `train.fused_sgd`
left unset (`None`) take the speed's value; one given explicitly wins. The values used are what
`config.json` records; they are execution keys, so a resume on another device may change them.

Precision is not part of the speed: bf16 autocast (`train.amp`) changes what a run computes, so it
is an experiment key a user turns on. It is not even faster alone: in eager mode autocast adds a
cast kernel per weight per step (and its dispatch), so a launch-bound step only gets longer
(2,268 images/s against fp32's 2,595); it pays only inside a CUDA graph, where launches cost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .config import RunConfig

__all__ = ["SPEEDS", "SPEED_KEYS", "apply_backend_settings", "resolve_speed", "speed_settings"]

SPEEDS = ("auto", "fast", "exact")
#: the train keys a speed fills (each left unset: compile `auto`, the others None)
SPEED_KEYS = ("compile", "channels_last", "cudnn_benchmark", "fused_sgd")

_EXACT = {"compile": "none", "channels_last": False, "cudnn_benchmark": False, "fused_sgd": False}
_FAST = {
    "cuda": {"compile": "reduce-overhead", "channels_last": True, "cudnn_benchmark": True, "fused_sgd": True},
    # no CUDA graphs, cuDNN or channels_last gain off CUDA: the compiled step and SGD's fused kernel
    "cpu": {"compile": "default", "channels_last": False, "cudnn_benchmark": False, "fused_sgd": True},
    "mps": {"compile": "none", "channels_last": False, "cudnn_benchmark": False, "fused_sgd": False},
}


def speed_settings(speed: str, device: torch.device, *, compilable: bool = True) -> dict[str, Any]:
    """The execution settings of ``speed`` on ``device``; ``compilable=False`` (a gradient rule
    that cannot be traced) keeps the step eager whatever the speed."""
    if speed not in SPEEDS:
        raise ValueError(f"train.speed: {speed!r} is not one of {list(SPEEDS)}")
    fast = speed == "fast" or (speed == "auto" and device.type == "cuda")
    settings = dict(_FAST.get(device.type, _EXACT) if fast else _EXACT)
    if not compilable:
        settings["compile"] = "none"
    return settings


def resolve_speed(cfg: RunConfig, device: torch.device, *, compilable: bool = True) -> RunConfig:
    """``cfg`` with every speed key left unset (``auto``/``None``) filled from ``train.speed`` on ``device``."""
    settings = speed_settings(cfg.train.speed, device, compilable=compilable)
    filled = {key: value for key, value in settings.items() if getattr(cfg.train, key) in (None, "auto")}
    return cfg.with_train_execution(**filled) if filled else cfg


def apply_backend_settings(cfg: RunConfig) -> None:
    """Set the process-wide backend flags a resolved config asks for (``cudnn.benchmark``), as a
    script would at its top; every run sets them, so one run's choice does not leak into the next."""
    torch.backends.cudnn.benchmark = bool(cfg.train.cudnn_benchmark)


def sgd_kernel(cfg: RunConfig) -> dict[str, Any]:
    """``torch.optim.SGD``'s implementation keyword for ``train.fused_sgd`` (the same arithmetic as
    the default loop: one kernel for all parameters instead of several per parameter)."""
    return {"fused": True} if cfg.train.fused_sgd else {}
