"""Every member's per-exit evaluation from one packed pass over the shared evaluation split."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from ..evaluate import ExitEvaluation, autocast_for

__all__ = ["evaluate_packed"]


@torch.no_grad()
def evaluate_packed(packed: torch.nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    slots: Sequence[Sequence[int]], *, amp: bool = False,
                    channels_last: bool = False) -> list[ExitEvaluation]:
    """What :func:`~adaptive_weights.evaluate.evaluate_exits` gives for each member alone (member m's
    exits are the packed heads ``slots[m]``): every member sees the same images, so each batch is
    fed once, repeated along the channels. One host transfer for the whole split."""
    was_training = packed.training
    packed.eval()
    device = next(packed.parameters()).device
    members = packed.members
    table = None
    n = 0
    try:
        for x, y in loader:
            x = x.repeat(1, members, 1, 1)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, amp):
                logits = packed(x)
            logits = logits.float()                                   # [S, B, N, C]
            s, b, _, c = logits.shape
            top = logits.topk(min(5, c), dim=-1).indices              # [S, B, N, 5]
            hit = top == y.view(1, -1, 1, 1)
            losses = F.cross_entropy(logits.reshape(-1, c), y.view(1, b, 1).expand(s, b, members).reshape(-1),
                                     reduction="none").view(s, b, members)
            batch = torch.stack([(~hit[..., 0]).sum(1).double(), losses.sum(1).double(),
                                 (~hit.any(-1)).sum(1).double()])     # [3, S, N]
            table = batch if table is None else table + batch
            n += b
    finally:
        packed.train(was_training)
    if table is None:
        raise ValueError("evaluate_packed: the loader yielded no samples")
    table = (table / n).cpu()
    out = []
    for m, member_slots in enumerate(slots):
        errors, losses, errors5 = table[:, list(member_slots), m]
        out.append(ExitEvaluation(errors=errors.tolist(), losses=losses.tolist(), top5_errors=errors5.tolist(),
                                  num_samples=n))
    return out
