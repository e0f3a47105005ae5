"""Rewards of the no-regret learners (spec §3.0), a pure function with its own tests."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["relative_rewards"]


def relative_rewards(losses: Tensor, rho: float) -> Tensor:
    """Per-exit rewards from one step's per-exit mean losses `[K]`.

    r_k = 1 - l_{k+1}/l_k for k < K-1 (the relative improvement of the next exit over exit k; the
    denominator is the earlier loss), and r_{K-1} = rho * max(0, r_0, ..., r_{K-2}). An exit whose
    loss is exactly 0 carries no information and gets reward 0 (instead of the spec's 0/0).
    K = 1 gives the reward 0.
    """
    if losses.shape[0] == 1:
        return torch.zeros_like(losses)
    prev, nxt = losses[:-1], losses[1:]
    inner = torch.where(prev > 0, 1.0 - nxt / prev, 0.0)  # the unselected 0/0 never propagates
    final = rho * inner.amax(0, keepdim=True).clamp_min(0.0)  # [1]: no reshape before the cat
    return torch.cat([inner, final])
