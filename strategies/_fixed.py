"""Strategies with a fixed distribution: plain ANN, AANN and the two baselines of spec §2.2."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ._api import register_strategy
from ._base import SamplingStrategy, Strategy
from ._hparams import HParam

__all__ = ["AANNStrategy", "QuartileStrategy", "StaticStrategy", "UniformStrategy", "quartile_distribution"]


@register_strategy("static", description="plain ANN: the scheme's weights every step")
class StaticStrategy(Strategy):
    """Plain ANN (samloss 0): the scheme's weights every step; nothing is drawn or learnt.

    `probabilities()` reports each exit's share of the loss, w / sum(w), for plots.
    """

    feedback = "none"
    hparams: ClassVar[dict[str, HParam]] = {}
    capture_safe: ClassVar[bool] = True

    def step_weights(self) -> Tensor:
        return self.base


class _FixedDistribution(SamplingStrategy):
    """A sampling strategy whose distribution `self.p` is set once in `setup` and never learnt."""

    feedback = "none"

    def setup(self) -> None:
        super().setup()
        self.p = self.initial_distribution()

    def initial_distribution(self) -> Tensor:
        raise NotImplementedError

    def probabilities(self) -> Tensor:
        return self.p

    def probability_floor(self) -> float:
        return float(self.p.min())


@register_strategy("aann", description="AANN: draw one exit per step with p = w/sum(w), add 2*w_final/ratio to it")
class AANNStrategy(_FixedDistribution):
    """AANN (samloss 6, spec §2.1-2.2): p_k = w_k / sum(w), fixed; for SIEVE the final exit half the time."""

    def initial_distribution(self) -> Tensor:
        return self.base / self.base.sum()


@register_strategy("uniform", description="baseline: draw the bonus exit uniformly (Exp3 with gamma = 1)")
class UniformStrategy(_FixedDistribution):
    """Uniform baseline (samloss 1, spec §2.2): every exit drawn with probability 1/K."""

    def initial_distribution(self) -> Tensor:
        return torch.full((self.K,), 1.0 / self.K, device=self.device)


@register_strategy("quartile", description="baseline: 1/8 each at the quartile exits and the final, rest uniform")
class QuartileStrategy(_FixedDistribution):
    """Quartile baseline (samloss 3, spec §2.2); see `quartile_distribution`."""

    def initial_distribution(self) -> Tensor:
        return quartile_distribution(self.K).to(self.device)


def quartile_distribution(K: int) -> Tensor:
    """For K >= 8: mass 1/8 at floor(K/4), floor(K/2), floor(3K/4) and K-1, the other half spread
    uniformly over the remaining K-4 exits; uniform for K < 8 (spec §2.2)."""
    if K < 8:
        return torch.full((K,), 1.0 / K)
    p = torch.full((K,), 0.5 / (K - 4))
    p[[K // 4, K // 2, (3 * K) // 4, K - 1]] = 0.125
    return p
