"""Checkpoints: atomic writes, safe reads, clear errors.

A checkpoint is a plain dict of tensors and Python scalars/containers (model, optimiser, strategy,
RNG states, position in training, the flat config), so it is read with
``torch.load(weights_only=True)``: loading one never runs code. It is written to a temp file and
renamed, so a run killed mid-write keeps its previous checkpoint.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write
from .errors import RefusedError

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "validate_checkpoint", "load_model_state",
           "load_state", "load_optimizer_state", "rng_state", "set_rng_state"]


class CheckpointError(RefusedError):
    """A checkpoint that exists but cannot be trusted (corrupt, truncated, crafted, incompatible)."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a corrupt file raises :class:`CheckpointError`
    naming it (never a silent fresh start)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # the weights-only unpickler refused something
        raise CheckpointError(f"checkpoint {path} was refused and not used: {_refusal_reason(err)}; a checkpoint "
                              "of this library holds only tensors and plain values (the file is corrupt or "
                              "crafted)") from None
    except Exception as err:  # torch raises several types for truncated/corrupt archives
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and was not used "
                              f"({_first_sentence(err)})") from None
    required = ("model", "optimizer", "strategy", "rng", "epoch", "batch", "step", "accumulators", "config")
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}; it was not written by this library")
    _check_format(state, path)
    return state


def validate_checkpoint(state: Mapping[str, Any], path: str | Path, *, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, accumulators: Mapping[str, torch.Tensor],
                        steps_per_epoch: int) -> None:
    """Refuse a checkpoint that does not fit the run about to continue from it, before anything is
    loaded or written: its position (epoch, batch and step: non-negative integers, the epoch within
    the run, the batch within an epoch of ``steps_per_epoch`` steps), the types of every state, the
    shapes and dtypes of the epoch's ``accumulators`` (as the trainer makes them), the optimiser's
    groups and per-parameter buffers (torch loads a wrongly shaped momentum buffer and fails only
    at the next step), the RNG states (a CPU generator state torch accepts; a CUDA one of the
    device's size) and the model's tensors' types. ``torch.load`` keeps a crafted file from running
    code; this keeps it from rewriting a run's records before failing. Any resumer calls it
    (``train``, a packed trainer for each member) with the objects it built, then loads the states
    (:func:`load_model_state`, :func:`load_state`: the strategy checks its own state's shapes).
    Raises :class:`CheckpointError` naming ``path`` and the bad entry."""
    _check_format(state, path)
    _check_model(state["model"], model, path)
    if state["batch"] > steps_per_epoch:
        _refuse(path, f"batch {state['batch']} is out of range: an epoch of this run has {steps_per_epoch} "
                      f"steps (expected 0 .. {steps_per_epoch})")
    _check_accumulators(state["accumulators"], accumulators, path)
    _check_optimizer(state["optimizer"], optimizer, path)
    device = next(iter(accumulators.values())).device if accumulators else torch.device("cpu")
    _check_rng(state["rng"], device, path)


def _refuse(path: str | Path, what: str) -> None:
    raise CheckpointError(f"checkpoint {path}: {what}; it was not used and the run was left as it was (was the "
                          "checkpoint edited, or copied from another run?)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _tensors(value: Any, what: str, path: str | Path) -> None:
    if not isinstance(value, Mapping):
        _refuse(path, f"{what} is a {type(value).__name__}, expected a mapping of names to tensors")
    for key, tensor in value.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            _refuse(path, f"{what}[{key!r}] is a {type(tensor).__name__}, expected a tensor")


def _check_format(state: Mapping[str, Any], path: str | Path) -> None:
    """What a checkpoint of this library holds whatever the run: position, types of the states."""
    config = state["config"]
    if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
        _refuse(path, f"config is a {type(config).__name__}, expected a mapping of config keys to values")
    for key in ("epoch", "batch", "step"):
        if not _is_int(state[key]) or state[key] < 0:
            _refuse(path, f"{key} {state[key]!r} is out of range (expected an integer >= 0)")
    epochs = config.get("train.epochs")
    if _is_int(epochs) and (state["epoch"] > epochs or (state["epoch"] == epochs and state["batch"])):
        _refuse(path, f"epoch {state['epoch']} (batch {state['batch']}) is past the end of its run of "
                      f"{epochs} epochs (train.epochs)")
    _tensors(state["model"], "model", path)
    _tensors(state["accumulators"], "accumulators", path)
    optimizer = state["optimizer"]
    if not (isinstance(optimizer, Mapping) and isinstance(optimizer.get("state"), Mapping)
            and isinstance(optimizer.get("param_groups"), list)
            and all(isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in optimizer["param_groups"])):
        _refuse(path, "optimizer is not an optimiser state (a mapping with a 'state' mapping and a list of "
                      "'param_groups', each with its 'params')")
    strategy = state["strategy"]
    if not isinstance(strategy, Mapping):
        _refuse(path, f"strategy is a {type(strategy).__name__}, expected a strategy state (a mapping)")
    _tensors(strategy.get("tensors"), "strategy['tensors']", path)
    for key in ("K", "seed", "epoch", "steps"):
        if key in strategy and (not _is_int(strategy[key]) or strategy[key] < 0):
            _refuse(path, f"strategy[{key!r}] {strategy[key]!r} is out of range (expected an integer >= 0)")
    rng = state["rng"]
    if not isinstance(rng, Mapping) or "torch" not in rng:
        _refuse(path, f"rng is a {type(rng).__name__}, expected a mapping with the 'torch' generator state")
    for key, value in rng.items():
        if not (isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1):
            _refuse(path, f"rng[{key!r}] is not a generator state (expected a 1-d uint8 tensor)")


def _check_model(saved: Mapping[str, torch.Tensor], model: torch.nn.Module, path: str | Path) -> None:
    mine = model.state_dict()
    problems = [f"missing {k}" for k in mine if k not in saved] + [f"unexpected {k}" for k in saved if k not in mine]
    problems += [f"size mismatch for {k}: {tuple(t.shape)} in the checkpoint, {tuple(mine[k].shape)} in the model"
                 for k, t in saved.items() if k in mine and t.shape != mine[k].shape]
    problems += [f"{k} is {t.dtype}, the model's {mine[k].dtype}" for k, t in saved.items()
                 if k in mine and t.shape == mine[k].shape and t.is_floating_point() != mine[k].is_floating_point()]
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        _refuse(path, f"its model state does not fit the model of this run's config ({'; '.join(problems[:3])}{more})")


def _check_accumulators(saved: Mapping[str, torch.Tensor], mine: Mapping[str, torch.Tensor], path: str | Path) -> None:
    if set(saved) != set(mine):
        _refuse(path, f"accumulators holds {sorted(saved)}, expected {sorted(mine)}")
    for key, tensor in saved.items():
        if tensor.shape != mine[key].shape or tensor.dtype != mine[key].dtype:
            _refuse(path, f"accumulators[{key!r}] is {tensor.dtype} of shape {tuple(tensor.shape)}, expected "
                          f"{mine[key].dtype} of shape {tuple(mine[key].shape)}")


def _check_optimizer(saved: Mapping[str, Any], optimizer: torch.optim.Optimizer, path: str | Path) -> None:
    """Groups of the same sizes, hyper-parameters of the same kinds, and per-parameter buffers of
    their parameter's shape (or scalars)."""
    groups, saved_groups = optimizer.param_groups, saved["param_groups"]
    sizes, saved_sizes = [len(g["params"]) for g in groups], [len(g["params"]) for g in saved_groups]
    if sizes != saved_sizes:
        _refuse(path, f"optimizer has parameter groups of sizes {saved_sizes}, this run's {sizes}")
    params: dict[Any, torch.Tensor] = {}
    for group, saved_group in zip(groups, saved_groups, strict=True):
        params.update(zip(saved_group["params"], group["params"], strict=True))
        for key, value in saved_group.items():
            mine = group.get(key)
            if key == "params" or key in _KERNEL_KEYS or mine is None:  # the kernel is this run's choice
                continue
            if (isinstance(mine, bool) and not isinstance(value, bool)) or (
                    _is_real(mine) and not _is_real(value)):
                _refuse(path, f"optimizer param_groups {key} {value!r}, expected a finite number like {mine!r}")
    for index, entry in saved["state"].items():
        if index not in params:
            _refuse(path, f"optimizer holds a state for parameter {index!r}, which none of its groups lists")
        if not isinstance(entry, Mapping):
            _refuse(path, f"optimizer state of parameter {index!r} is a {type(entry).__name__}, expected a mapping")
        shape = params[index].shape
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                if value.dim() and value.shape != shape:
                    _refuse(path, f"optimizer {key} of parameter {index!r} has shape {tuple(value.shape)}, "
                                  f"expected {tuple(shape)} (its parameter's)")
            elif not (value is None or _is_real(value)):
                _refuse(path, f"optimizer {key} of parameter {index!r} is a {type(value).__name__}, "
                              "expected a tensor of its parameter's shape")


def _check_rng(rng: Mapping[str, torch.Tensor], device: torch.device, path: str | Path) -> None:
    try:  # a spare generator: the global one is set later; a CUDA run's checkpoint is read onto the GPU
        torch.Generator().set_state(rng["torch"].cpu())
    except (RuntimeError, TypeError):
        _refuse(path, f"rng['torch'] ({rng['torch'].numel()} bytes) is not a CPU generator state "
                      f"(expected {torch.get_rng_state().numel()} bytes)")
    if device.type == "cuda" and "cuda" in rng:
        size = torch.cuda.get_rng_state(device).numel()
        if rng["cuda"].numel() != size:
            _refuse(path, f"rng['cuda'] ({rng['cuda'].numel()} bytes) is not a CUDA generator state "
                          f"(expected {size} bytes)")


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """``model.load_state_dict(state)``, refusing a checkpoint that does not fit ``model`` (another
    architecture or class count) with an error naming the file and the first mismatches."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        details = [ln.strip() for ln in str(err).splitlines()[1:4] if ln.strip()]
        raise CheckpointError(f"checkpoint {path} does not fit the model of this run's config "
                              f"({'; '.join(details) or _first_sentence(err)}); was config.json edited, or the "
                              "checkpoint copied from another run?") from None


def load_state(target: Any, state: dict[str, Any], path: str | Path, what: str) -> None:
    """``target.load_state_dict(state)`` (the optimiser, the strategy), refusing a state that does
    not fit this run with an error naming the file and the part."""
    try:
        target.load_state_dict(state)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path}: its {what} state does not fit this run ({_first_sentence(err)}); "
                              "was the checkpoint edited or copied from another run?") from None


#: optimiser group keys that choose a kernel, not arithmetic: this run's execution settings
#: (``train.fused_sgd``) keep them when a checkpoint written with other settings is loaded
_KERNEL_KEYS = ("fused", "foreach", "capturable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any], path: str | Path) -> None:
    """:func:`load_state` for the optimiser, keeping this run's kernel choice: a run resumed on
    another device (or with another ``train.speed``) steps with its own implementation."""
    kernels = [{k: group[k] for k in _KERNEL_KEYS if k in group} for group in optimizer.param_groups]
    load_state(optimizer, state, path, "optimizer")
    for group, kernel in zip(optimizer.param_groups, kernels, strict=True):
        group.update(kernel)


def _refusal_reason(err: Exception) -> str:
    """What the weights-only unpickler refused, without torch's advice to load with
    ``weights_only=False`` (which would run the file's code)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    if found:
        return f"it references the Python global {found.group(1)}"
    return "it holds objects outside the weights-only allow-list"


def _first_sentence(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.split(". ")[0].rstrip(".")
    if not text or "weights_only" in text:
        return type(err).__name__
    return text if len(text) > 12 else f"{type(err).__name__}: {text}"


def rng_state(device: torch.device) -> dict[str, Any]:
    """Global RNG states (the loop draws from its own generators; these keep user code exact)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
