"""Per-exit evaluation: error and loss of every exit on a whole split, in one pass.

Counts are accumulated on the device and read back once at the end, so evaluation costs one
host-device sync per split, not one per batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .conventions import EXIT_NUMBERING, MACS_CONVENTION
from .progress import bar, length_of

__all__ = ["ExitEvaluation", "evaluate_exits", "per_exit_losses", "autocast_for", "format_exit_table"]


@dataclass(frozen=True)
class ExitEvaluation:
    """Top-1 error (fraction), mean cross-entropy and top-5 error of every exit."""

    errors: list[float]
    losses: list[float]
    top5_errors: list[float]
    num_samples: int


def per_exit_losses(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean", *,
                    label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of every exit in one vectorised call.

    ``logits`` is ``[K, B, C]``; returns ``[K]`` (mean over the batch) or ``[K]`` sums with
    ``reduction="sum"``. Computed in float32 whatever the autocast dtype. ``label_smoothing``
    (``train.label_smoothing``) mixes the one-hot targets with the uniform distribution, as
    ``torch.nn.functional.cross_entropy`` does; evaluation keeps the plain loss (0).
    """
    k, b, c = logits.shape
    flat = F.cross_entropy(logits.reshape(k * b, c).float(), targets.repeat(k), reduction="none",
                           label_smoothing=label_smoothing)
    per_exit = flat.view(k, b)
    return per_exit.sum(1) if reduction == "sum" else per_exit.mean(1)


def autocast_for(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when asked for; a no-op elsewhere (CPU runs stay exact)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_exits(
    model: torch.nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    amp: bool = False,
    channels_last: bool = False,
    sum_over_ranks: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: str | None = None,
) -> ExitEvaluation:
    """Evaluate every exit of ``model`` on ``loader`` (eval mode, BN running statistics).

    ``sum_over_ranks``: in a data-parallel run each rank evaluates its shard of the split and this
    sums the error and loss counts (and the sample count) over the ranks before the division, so
    every rank returns the whole split's numbers.

    ``progress``: the label of a bar over the batches, with an ETA, on stderr when it is a terminal
    (the ``evaluate`` command's; training's own evaluation draws none: its line would be torn).
    Counting a batch reads nothing from the device, so the one sync per split stays one.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    wrong = loss_sum = wrong5 = None
    n = 0
    batches = bar(length_of(loader), progress or "", unit="batch", enabled=progress is not None)
    try:
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, amp):
                logits = model(x)
            logits = logits.float()
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices  # [K, B, 5]
            hit = top == y.view(1, -1, 1)
            w1 = (~hit[..., 0]).sum(1)
            w5 = (~hit.any(-1)).sum(1)
            ls = per_exit_losses(logits, y, reduction="sum")
            wrong = w1 if wrong is None else wrong + w1
            wrong5 = w5 if wrong5 is None else wrong5 + w5
            loss_sum = ls if loss_sum is None else loss_sum + ls
            n += y.shape[0]
            batches.update()
    finally:
        batches.close()
        model.train(was_training)
    if n:
        table = torch.stack([wrong.double(), loss_sum.double(), wrong5.double(), torch.full_like(wrong, n).double()])
    else:  # this rank's shard is empty: it still joins the sum, or the other ranks wait in it for ever
        table = torch.zeros(4, model.num_exits, dtype=torch.float64, device=device)
    if sum_over_ranks is not None:
        table = sum_over_ranks(table)
    table = table.cpu()  # the one host transfer of the split
    n = round(float(table[3, 0]))
    if n == 0:
        raise ValueError("evaluate_exits: the loader yielded no samples")
    errors, losses, errors5 = (table[:3] / n).tolist()
    return ExitEvaluation(errors=errors, losses=losses, top5_errors=errors5, num_samples=n)


def format_exit_table(exit_units: list[int], exit_macs: list[float], errors: dict[str, list[float] | None]) -> str:
    """A plain-text table: exit, depth (unit), MACs, fraction of full cost, error per split, with
    the MACs and numbering conventions (:mod:`adaptive_weights.conventions`) below it."""
    splits = [s for s, e in errors.items() if e is not None]
    head = f"{'exit':>4} {'unit':>5} {'MACs':>12} {'cost':>6}" + "".join(f" {s + ' err %':>11}" for s in splits)
    lines = [head, "-" * len(head)]
    full = exit_macs[-1]
    for k, (unit, macs) in enumerate(zip(exit_units, exit_macs, strict=False)):
        line = f"{k:>4} {unit:>5} {macs:>12,.0f} {macs / full:>6.3f}"
        line += "".join(f" {100 * errors[s][k]:>11.2f}" for s in splits)
        lines.append(line)
    lines += [MACS_CONVENTION, EXIT_NUMBERING]
    return "\n".join(lines)
