"""The no-regret learners of spec §3.1-3.3: Exp3 (`eg`), RWM (`rwm`) and proportional sampling (`avgl`).

Rewards are the relative-improvement rewards of spec §3.0 (`RewardLearner`). Multiplicative weights
are kept in log space and renormalised with logsumexp; after each update the weights are mixed with
a floor, w <- (1 - 0.001 gamma) w + 0.001 gamma / K, and sampling uses p = (1 - gamma) w + gamma / K,
so no probability falls below gamma / K.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ._api import register_strategy
from ._base import RewardLearner, mix_uniform
from ._hparams import HParam

__all__ = ["AVGLStrategy", "EGStrategy", "RWMStrategy", "floored_log_weights"]

FLOOR_FACTOR = 1e-3


def floored_log_weights(log_w: Tensor, gamma: float, log_floor: Tensor | None = None) -> Tensor:
    """Normalise log-weights and mix in the floor: log((1-a) w/sum(w) + a/K) with a = 0.001 gamma.

    `log_floor` may pass the constant log(a/K) as a tensor to save an allocation per step.
    """
    a = FLOOR_FACTOR * gamma
    if log_floor is None:
        log_floor = torch.full_like(log_w, math.log(a / log_w.shape[0]))
    return torch.logaddexp(log_w - (torch.logsumexp(log_w, 0) - math.log1p(-a)), log_floor)


class _LogWeights(RewardLearner):
    """Shared state of the multiplicative-weights learners: log w, initialised uniform."""

    state_tensors = ("log_w",)

    def setup(self) -> None:
        super().setup()
        self.log_w = torch.full((self.K,), -math.log(self.K), device=self.device)
        self._log_floor = torch.full((self.K,), math.log(FLOOR_FACTOR * self.gamma / self.K), device=self.device)

    def probabilities(self) -> Tensor:
        return mix_uniform(self.log_w.exp(), self.gamma)

    def probabilities_into(self, out: Tensor) -> Tensor:
        # `mix_uniform(exp(log_w))` computed in `out`: the same three kernels, no copy
        return torch.exp(self.log_w, out=out).mul_(1.0 - self.gamma).add_(self.gamma / self.K)


@register_strategy("eg", description="exponentiated gradient with bandit feedback (Exp3): only the drawn exit's reward")
class EGStrategy(_LogWeights):
    """Exp3 (samloss 2, spec §3.1; the paper's appendix): importance-weighted bandit update.

    With sel the exit drawn for the step and p the distribution it was drawn from:
        w_sel *= exp(gamma * r_sel / (K * p_sel));  w /= sum(w);  w = (1-0.001g) w + 0.001g/K
        p = (1 - gamma) w + gamma / K
    Only r_sel is read. Guarantee (Auer et al. 2002, Thm 3.1, rewards in [0, 1]): expected regret
    against the best fixed exit <= (e-1) gamma T + K ln K / gamma, plus T K ln(1/(1-0.001g)) / g for
    the floor.
    """

    feedback = "bandit"

    def learn(self, rewards: Tensor) -> None:
        # importance weighted, 0 off the drawn exit: gamma * r_sel / (K * p_sel), p the draw's distribution
        step = torch.where(self.onehot, rewards, 0.0) / self.drawn_p * (self.gamma / self.K)
        self.log_w = floored_log_weights(self.log_w + step, self.gamma, self._log_floor)


@register_strategy("rwm", description="randomized weighted majority (Hedge), full information: w *= exp(gamma/2 r)")
class RWMStrategy(_LogWeights):
    """Randomized weighted majority / Hedge (samloss 4, spec §3.2; the paper's appendix).

        w *= exp(gamma/2 * r) for every exit;  w /= sum(w);  w = (1-0.001g) w + 0.001g/K
        p = (1 - gamma) w + gamma / K
    Guarantee (Hedge with eta = gamma/2, rewards in [0, 1]; Cesa-Bianchi & Lugosi 2006, Thm 2.2):
    regret <= ln K / eta + eta T / 8 + gamma T (uniform mixing) + T ln(1/(1-0.001g)) / eta (floor).
    """

    feedback = "full"

    def learn(self, rewards: Tensor) -> None:
        self.log_w = floored_log_weights(self.log_w + 0.5 * self.gamma * rewards, self.gamma, self._log_floor)


@register_strategy("avgl", description="sample in proportion to a decayed running sum of rewards, mixed with uniform")
class AVGLStrategy(RewardLearner):
    """"Thompson-like" proportional sampling (samloss 5, spec §3.3; the paper's appendix).

        w = max(0, momentum * w + r);  p = (1 - gamma) w / sum(w) + gamma / K   (uniform if sum(w) = 0)
    A heuristic: it carries no regret guarantee (a decayed sum forgets, so it can trail a fixed exit).
    """

    feedback = "full"
    hparams: ClassVar[dict[str, HParam]] = {
        **RewardLearner.hparams,
        "momentum": HParam(0.9, float, 0.0, 1.0, (0.9,), "decay of the running reward sum"),
    }
    state_tensors = ("w",)

    def setup(self) -> None:
        super().setup()
        self.w = torch.full((self.K,), 1.0 / self.K, device=self.device)
        self._uniform = torch.full((self.K,), 1.0 / self.K, device=self.device)  # where(out=) takes no scalar

    def learn(self, rewards: Tensor) -> None:
        self.w = (self.momentum * self.w + rewards).clamp_min(0.0)

    def probabilities(self) -> Tensor:
        return self.probabilities_into(torch.empty_like(self.w))

    def probabilities_into(self, out: Tensor) -> Tensor:
        total = self.w.sum()
        positive = total > 0
        torch.where(positive, self.w / torch.where(positive, total, 1.0), self._uniform, out=out)
        return out.mul_(1.0 - self.gamma).add_(self.gamma / self.K)  # mix_uniform, in place
