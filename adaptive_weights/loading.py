"""``load_model(run_dir)``: a trained run's network, ready to be served raw images.

The loaders feed the network normalised pixels ((x - mean) / std, statistics of the training split),
so the bare network given raw images answers wrongly without any error. :class:`TrainedModel` puts
that normalisation inside the module: it takes images with values in [0, 1] (``pixels / 255``, the
layout of ``torchvision.transforms.ToTensor``) and keeps the anytime interface (``anytime``,
``exit_macs``, ``exit_units``). Checkpoints record the normalisation (``"input"``); for a run
written before they did, it is recomputed from the run's data set once.

Only ``config.json`` and ``checkpoints/last.pt`` (``torch.load(weights_only=True)``) are read.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from ._io import read_json
from .errors import RefusedError

__all__ = ["InputNormalization", "TrainedModel", "load_model"]


class InputNormalization(nn.Module):
    """``(255 x - mean) / std`` with ``mean`` and ``std`` in 0..255 pixel units (buffers, so
    ``.to(device)`` moves them): images in [0, 1] become what the training loaders fed the net."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().float().clone())
        self.register_buffer("std", std.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:
        return (x * 255.0 - self.mean) / self.std


class TrainedModel(nn.Module):
    """A trained anytime network behind its input normalisation; inputs are images in [0, 1].

    ``model(x)`` gives every exit's logits ``[exits, batch, classes]``; ``model.anytime(x,
    budget_macs=..., deadline_s=...)`` yields ``(exit, macs, logits)`` exit by exit and computes
    only those (see :meth:`AnytimeNet.anytime`). ``net`` is the bare network (normalised inputs),
    ``config`` the run's :class:`~adaptive_weights.config.RunConfig`, ``epoch`` the epochs the
    checkpoint holds. MACs follow the library's convention: the normalisation costs none.
    """

    def __init__(self, net: nn.Module, normalize: InputNormalization, *, config: Any, epoch: int,
                 run_dir: Path) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.config = config
        self.epoch = epoch
        self.run_dir = run_dir

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))

    def anytime(self, x: Tensor, budget_macs: float | None = None,
                deadline_s: float | None = None) -> Generator[tuple[int, int, Tensor], None, None]:
        """The network's anytime prediction on raw images in [0, 1] (arguments as the net's)."""
        return self.net.anytime(self.normalize(x), budget_macs=budget_macs, deadline_s=deadline_s)

    def exit_macs(self, input_size: int | Sequence[int] | None = None) -> list[int]:
        """Cumulative MACs of every exit per image (default: the training image size)."""
        return self.net.exit_macs(input_size)

    @property
    def exit_units(self) -> list[int]:
        return self.net.exit_units

    @property
    def num_exits(self) -> int:
        return self.net.num_exits

    @property
    def num_classes(self) -> int:
        return self.net.num_classes


def load_model(run_dir: str | Path, device: str | torch.device = "cpu", *,
               allow_unfinished: bool = False) -> TrainedModel:
    """The network of the run in ``run_dir`` on ``device`` (``"cpu"``, ``"cuda:1"``, ``"auto"``),
    in eval mode, with the data set's input normalisation inside: feed it images in [0, 1].

    A run that has not finished its schedule (still training, interrupted, or stopped as
    diverged, whose checkpoint is the last good epoch) is refused unless ``allow_unfinished``;
    a directory that is not a run, a run without a checkpoint yet, and a corrupt config or
    checkpoint are refused with a :class:`~adaptive_weights.errors.RefusedError` naming the file.
    """
    from .checkpoint import load_checkpoint, load_model_state
    from .runs import load_run_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RefusedError(f"load_model: run directory {run_dir} does not exist (expected a directory written by "
                           "`adaptive-weights train` or adaptive_weights.train, holding config.json)")
    if not (run_dir / "config.json").is_file():
        raise RefusedError(f"load_model: {run_dir} is not a run directory: it has no config.json")
    cfg = load_run_config(run_dir)
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if not ckpt_path.is_file():
        raise RefusedError(f"load_model: run {run_dir} has no checkpoint yet ({ckpt_path} is missing): it has not "
                           "finished its first epoch, or it failed before it did")
    if not allow_unfinished:
        _check_finished(run_dir, cfg)
    torch_device = _device(device)
    state = load_checkpoint(ckpt_path, map_location="cpu")
    inputs = state.get("input")
    if inputs is None:  # a run written before checkpoints recorded their inputs
        inputs = _recompute_inputs(cfg, run_dir)
    inputs = _check_inputs(inputs, ckpt_path)
    net = _build_net(cfg, inputs)
    load_model_state(net, state["model"], ckpt_path)
    model = TrainedModel(net, InputNormalization(inputs["mean"], inputs["std"]), config=cfg,
                         epoch=int(state["epoch"]), run_dir=run_dir)
    return model.to(torch_device).eval()


def _check_finished(run_dir: Path, cfg: Any) -> None:
    summary_path = run_dir / "summary.json"
    summary = read_json(summary_path) if summary_path.is_file() else {}
    status = summary.get("status") if isinstance(summary, dict) else None
    if status == "completed" or (status is None and isinstance(summary, dict) and summary.get("completed") is True):
        return  # (summaries written before "status" existed say "completed": true)
    if status == "diverged":
        why = f"it diverged in epoch {summary.get('epoch', '?')}; its checkpoint is the last good epoch"
    else:
        why = f"it has not finished its {cfg.train.epochs} epochs (status {status or 'unknown'})"
    raise RefusedError(f"load_model: run {run_dir} is unfinished: {why}; resume it with `adaptive-weights train "
                       f"--resume {run_dir}`, or pass allow_unfinished=True to load its last checkpoint")


def _device(device: str | torch.device) -> torch.device:
    from .training import resolve_device

    try:
        return resolve_device(str(device))
    except RefusedError as err:
        raise RefusedError(str(err).replace("train.device:", "load_model device:", 1)) from None
    except RuntimeError:  # torch's own parse error for a malformed name
        raise RefusedError(f"load_model: device {device!r} is not a device (expected 'cpu', 'cuda', 'cuda:N', "
                           "'mps' or 'auto')") from None


def _recompute_inputs(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """The input record of a run whose checkpoint predates it: the data set is read again."""
    from .data import build_data

    try:
        data = build_data(cfg.data, batch_size=1, device="cpu", seed=cfg.train.seed)
    except (RefusedError, ValueError, OSError) as err:
        raise RefusedError(f"load_model: the checkpoint of {run_dir} predates the recorded input normalisation, "
                           f"so it is recomputed from the run's data set ({cfg.data.name}, data.root "
                           f"{cfg.data.root}), which failed: {err}") from None
    return data.input_record()


def _check_inputs(inputs: Any, path: Path) -> dict[str, Any]:
    ok = (isinstance(inputs, dict) and all(isinstance(inputs.get(k), Tensor) for k in ("mean", "std"))
          and all(isinstance(inputs.get(k), int) and inputs[k] > 0 for k in ("num_classes", "in_channels",
                                                                               "image_size")))
    if not ok:
        raise RefusedError(f"checkpoint {path}: its 'input' record is malformed (expected mean and std tensors and "
                           "positive num_classes, in_channels and image_size)")
    channels = inputs["in_channels"]
    for key in ("mean", "std"):
        t = inputs[key]
        if t.dim() != 3 or t.shape[0] not in (1, channels):
            raise RefusedError(f"checkpoint {path}: input {key} has shape {tuple(t.shape)}; expected [C, H, W] or "
                               f"[C, 1, 1] with C = 1 or {channels}")
    if not bool(torch.isfinite(inputs["mean"]).all()) or not bool((inputs["std"] > 0).all()):
        raise RefusedError(f"checkpoint {path}: its input normalisation is invalid (a non-finite mean or a std <= 0)")
    return inputs


def _build_net(cfg: Any, inputs: dict[str, Any]) -> nn.Module:
    from .training import build_network, scheme_exits

    shape = SimpleNamespace(num_classes=inputs["num_classes"], in_channels=inputs["in_channels"],
                            image_size=inputs["image_size"])
    exits, _ = scheme_exits(cfg)
    return build_network(cfg, shape, exits)
