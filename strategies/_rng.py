"""A counter-based uniform generator in plain tensor ops, so that a strategy's draws can be captured.

A `torch.Generator` cannot be traced by `torch.compile` (its draw is a graph break), and a CUDA graph
replays a custom generator's draw with the same numbers unless the generator is registered with the
graph. Here the whole generator state is one int64 0-d tensor on the device: every draw advances it
in place by an odd constant (a Weyl sequence of period 2**32) and hashes it with `lowbias32` (Chris
Wellons' 32-bit integer hash). So a captured graph advances the state itself on every replay, a
compiled and an eager step draw the same numbers, and `state_dict()` saves the stream as a tensor.

All intermediate products stay below 2**63 (a value under 2**32 times a constant under 2**31), so
int64 arithmetic never overflows on any backend.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["advance", "next_uniform", "seed_state", "uniform_block"]

_MASK32 = 0xFFFFFFFF
_WEYL = 0x61C88647  # odd, below 2**31: 2**32 minus the golden-ratio constant 0x9E3779B9
_MUL1, _MUL2 = 0x21F0AAAD, 0x735A2D97  # lowbias32's multipliers, both below 2**31
_TO_UNIT = 2.0**-24


def seed_state(seed: int) -> int:
    """The 32-bit starting state for `seed` (splitmix64's finaliser: nearby seeds start far apart)."""
    z = (int(seed) + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & _MASK32


def advance(state: Tensor) -> Tensor:
    """Step the Weyl state in place (two kernels); returns it."""
    return state.add_(_WEYL).bitwise_and_(_MASK32)


def next_uniform(state: Tensor) -> Tensor:
    """One 0-d float32 number uniform in [0, 1) (24 bits); advances the 0-d int64 `state` in place."""
    return _hash_to_unit(advance(state))


def uniform_block(state: Tensor, n: int) -> Tensor:
    """The next `n` numbers `next_uniform` would give from `state`, at once (`state` is not advanced):
    an eager caller draws from the block and only advances the state, about a dozen kernels saved
    per number. The Weyl state after i steps is s + i W (mod 2**32)."""
    steps = torch.arange(1, n + 1, dtype=torch.int64, device=state.device)
    return _hash_to_unit((state + steps * _WEYL) & _MASK32)


def _hash_to_unit(state: Tensor) -> Tensor:
    """lowbias32 of a 32-bit state, to a float32 number in [0, 1) from its top 24 bits."""
    x = state ^ (state >> 16)
    x = (x * _MUL1) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & _MASK32
    x = x ^ (x >> 15)
    return (x >> 8).to(torch.float32) * _TO_UNIT
