"""Seeds derived from (seed, epoch, ...) so that every epoch's randomness is a pure function of them."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["derive_seed", "make_generator"]


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from a tuple of non-negative integers (numpy's SeedSequence hash).

    Unlike ``seed + epoch``, neighbouring keys give unrelated streams, and (seed=1, epoch=0) never
    collides with (seed=0, epoch=1).
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def make_generator(*keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``keys``; CPU so that draws do not depend on the device."""
    return torch.Generator().manual_seed(derive_seed(*keys))
