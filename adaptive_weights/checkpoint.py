"""Checkpoints: atomic writes, safe reads, clear errors.

A checkpoint is a plain dict of tensors and Python scalars/containers (model, optimiser, strategy,
RNG states, position in training, the flat config), so it is read with
``torch.load(weights_only=True)``: loading one never runs code. It is written to a temp file and
renamed, so a run killed mid-write keeps its previous checkpoint.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write
from .errors import RefusedError

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_model_state", "load_state",
           "rng_state", "set_rng_state"]


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
    return state


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
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path}: its {what} state does not fit this run ({_first_sentence(err)}); "
                              "was the checkpoint edited or copied from another run?") from None


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
