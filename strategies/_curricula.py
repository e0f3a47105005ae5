"""Schedules that need no feedback: a rotation over the exits and a warm-up of the early exits.

Both are capture-safe: their state is device tensors allocated once in `setup` and updated in
place (the rotation's position by tensor ops every step, the warm-up's weights only in `start_epoch`,
a trainer call, never from a tensor value), so a compiled or graph-captured step sees fixed addresses.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from ._api import register_strategy
from ._base import Strategy
from ._hparams import HParam

__all__ = ["RoundRobinStrategy", "WarmupStrategy", "WARMUP_SHAPES", "warmup_factor"]

WARMUP_SHAPES = ("linear", "cosine")


@register_strategy("round-robin", description="one exit per step in turn (torchtune's rotational early-exit curriculum)")
class RoundRobinStrategy(Strategy):
    """Rotational curriculum: at step t exit a_t = t mod K trains with its scheme weight, the others
    get weight 0; with ``train_final`` = 1 the final exit also trains every step.

        weights_t = w * (onehot(t mod K) | [train_final] e_{K-1})

    Source: torchtune's ``RotationalEarlyExitCurriculum`` (LayerSkip recipe, Elhoushi et al. 2024,
    "LayerSkip: Enabling Early Exit Inference and Self-Speculative Decoding"), which rolls the
    enabled-layer mask by one every step and keeps the last layer trained (``train_last_layer``).
    `probabilities()` is the share of steps in which each exit is the rotation's pick, 1/K (with
    ``train_final`` = 1 the final exit trains in every step besides).
    """

    feedback = "none"
    capture_safe = True
    hparams: ClassVar[dict[str, HParam]] = {
        "train_final": HParam(1, int, 0, 1, (), "1: the final exit also trains every step (torchtune's default)"),
    }

    def setup(self) -> None:
        super().setup()
        self.position = torch.zeros((), dtype=torch.int64, device=self.device)
        self._arange = torch.arange(self.K, device=self.device)
        self._always = (self._arange == self.K - 1) & bool(self.train_final)
        self._zeros = torch.zeros_like(self.base)

    def step_weights(self) -> Tensor:
        active = (self._arange == self.position) | self._always
        torch.remainder(self.position + 1, self.K, out=self.position)
        return torch.where(active, self.base, self._zeros)

    def probabilities(self) -> Tensor:
        return torch.full((self.K,), 1.0 / self.K, device=self.device)

    def _stat_tensors(self) -> tuple[str, ...]:
        return (*super()._stat_tensors(), "position")


def warmup_factor(epoch: int, warmup_epochs: int, shape: str) -> float:
    """The early exits' weight multiplier in `epoch`: grows to 1 over W epochs, from 1/(W+1) (linear)
    or (1 - cos(pi / (W+1))) / 2 (cosine)."""
    if epoch >= warmup_epochs:
        return 1.0
    progress = (epoch + 1) / (warmup_epochs + 1)
    return progress if shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * progress))


@register_strategy("warmup", description="early exits' weights grow over the first epochs (EE-LLM's warm-up)")
class WarmupStrategy(Strategy):
    """The scheme's weights with the early exits warmed up: in epoch e (from 0)

        w_k(e) = f(e) * w_k  for k < K-1,   w_{K-1}(e) = w_{K-1},
        f(e) = p (linear) or (1 - cos(pi p)) / 2 (cosine),  p = (e + 1) / (W + 1),  f = 1 for e >= W

    with W = ``warmup_epochs``, so no exit is ever switched off entirely. Source: EE-LLM (Chen et
    al. 2024, "EE-LLM: Large-Scale Training and Inference of Early-Exit Large Language Models with
    3D Parallelism", §3: early-exit loss weights that increase during a warm-up phase); here per
    epoch, the unit the trainer reports.
    """

    feedback = "none"
    capture_safe = True
    hparams: ClassVar[dict[str, HParam]] = {
        "warmup_epochs": HParam(5, int, 0, None, (2, 5, 10), "epochs over which the early exits' weights grow"),
        "shape": HParam("linear", str, choices=WARMUP_SHAPES, doc="growth curve of the multiplier"),
    }

    def setup(self) -> None:
        super().setup()
        self._is_final = torch.arange(self.K, device=self.device) == self.K - 1
        self.weights = self.base.clone()
        self._set_weights()

    def _set_weights(self) -> None:
        factor = warmup_factor(self.epoch, self.warmup_epochs, self.shape)
        self.weights.copy_(torch.where(self._is_final, self.base, self.base * factor))

    def step_weights(self) -> Tensor:
        return self.weights

    def probabilities(self) -> Tensor:
        """Each exit's share of this epoch's weights (as AdaLoss reports its own), not the scheme's."""
        return self.weights / self.weights.sum()

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        self._set_weights()

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        super()._load_extra_state(extra)
        self._set_weights()
