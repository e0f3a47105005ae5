"""A strategy written the way a user would: a 20-line class, found through its entry point."""

from typing import ClassVar

import torch

from adaptive_weights.strategies import HParam, RewardLearner, mix_uniform

__all__ = ["GreedyStrategy"]


class GreedyStrategy(RewardLearner):
    """Softmax of a decayed reward sum, mixed with uniform (full information)."""

    feedback = "full"
    hparams: ClassVar[dict[str, HParam]] = {
        **RewardLearner.hparams,
        "decay": HParam(0.9, float, 0.0, 1.0, (0.5, 0.9), "decay of the reward sum"),
    }
    state_tensors = ("score",)

    def setup(self) -> None:
        super().setup()
        self.score = torch.zeros(self.K, device=self.device)

    def learn(self, rewards: torch.Tensor) -> None:
        self.score = self.decay * self.score + rewards

    def probabilities(self) -> torch.Tensor:
        return mix_uniform(torch.softmax(self.score, 0), self.gamma)
