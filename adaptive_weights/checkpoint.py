"""Checkpoints: atomic writes, safe reads, clear errors.

A checkpoint is a plain dict of tensors and Python scalars/containers (model, optimiser, strategy,
RNG states, position in training, the flat config), so it is read with
``torch.load(weights_only=True)``: loading one never runs code. It is written to a temp file and
renamed, so a run killed mid-write keeps its previous checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]


class CheckpointError(RuntimeError):
    """A checkpoint that exists but cannot be trusted (corrupt, truncated, incompatible)."""


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
    except Exception as err:  # torch raises several types for truncated/corrupt archives
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and was not used: {err}") from None
    required = ("model", "optimizer", "strategy", "epoch", "batch", "step", "config")
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}; it was not written by this library")
    return state


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
