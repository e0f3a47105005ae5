"""AdaLoss (spec §3.4): loss weights inverse to each exit's running mean loss."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ._api import register_strategy
from ._base import Strategy
from ._hparams import HParam

__all__ = ["AdaLossStrategy"]


@register_strategy("adaloss", description="weights inverse to each exit's running mean loss (AdaLoss)")
class AdaLossStrategy(Strategy):
    """AdaLoss / AdaptiveLossWeight (samloss 100, spec §3.4; the later, AAAI-2019 version of the paper).

    Every step: m-EMA of each exit's loss, l_bar <- m l_bar + (1-m) l (l_bar starts at the first loss).
    Every `period` steps: a = 1/l_bar + 1e-8; a /= max(a); a_final += final_extra; a /= max(a);
    a = (1 - gamma) a + gamma.  The step's weights are a (initially all ones) on the exits that exist
    (w > 0); nothing is drawn and there is no AANN bonus (sum_rand_ratio = 0).
    The rule balances the exits' losses to equal scale (each a_k l_bar_k is about constant); it makes
    no regret claim. Learning starts at step 1 (`warmup_epochs` 0), as in the spec.
    """

    feedback = "full"
    hparams: ClassVar[dict[str, HParam]] = {
        "gamma": HParam(0.07, float, 0.0, 1.0, (0.0, 0.07, 0.14), "mix of a with 1: a = (1-gamma) a + gamma"),
        "momentum": HParam(0.9, float, 0.0, 1.0, (0.9, 0.99), "EMA factor of the per-exit losses"),
        "period": HParam(100, int, 1, None, (1, 100), "steps between recomputations of a"),
        "final_extra": HParam(0.0, float, 0.0, None, (0.0, 0.5, 1.0), "extra weight added to the final exit's a"),
        "warmup_epochs": HParam(0, int, 0, None, (), "epochs with learning frozen"),
    }
    state_tensors = ("ema", "seen", "a")
    capture_safe: ClassVar[bool] = True

    def setup(self) -> None:
        self.ema = torch.zeros(self.K, device=self.device)
        self.seen = torch.zeros((), device=self.device)
        self.a = torch.ones(self.K, device=self.device)
        self._exists = (self.base > 0).float()
        # final_extra on the final exit, 0 elsewhere (exactly final_extra * onehot(K-1), computed once)
        self._extra = self.final_extra * (torch.arange(self.K, device=self.device) == self.K - 1)

    def step_weights(self) -> Tensor:
        return self.a * self._exists

    def update(self, losses: Tensor) -> None:
        self.ema = torch.where(self.seen > 0, self.momentum * self.ema + (1.0 - self.momentum) * losses, losses)
        self.seen = torch.ones_like(self.seen)
        # every step computes the new a and keeps it on the period's steps: one graph for every step
        a = self.ema.clamp_min(1e-12).reciprocal() + 1e-8  # = 1/ema exactly, without `1.0 /`'s extra multiply
        a = a / a.max()
        a = a + self._extra
        a = a / a.max()
        self.a = torch.where(self.steps % self.period == 0, (1.0 - self.gamma) * a + self.gamma, self.a)

    def probabilities(self) -> Tensor:
        w = self.step_weights()
        return w / w.sum()

    def stats(self) -> dict[str, Tensor]:
        return {**super().stats(), "adaptive_weight": self.a, "loss_ema": self.ema}
