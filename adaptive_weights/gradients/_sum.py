"""The default gradient rule: back-propagate the weighted sum of the exits' losses."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from ..strategies._hparams import HParam
from ._api import GradientRule, register_gradient_rule

__all__ = ["SumRule"]


@register_gradient_rule("sum", description="back-propagate sum_k w_k L_k (the default)")
class SumRule(GradientRule):
    """grad = d/dtheta sum_k w_k L_k: one backward pass (spec §5, the library's training step)."""

    hparams: ClassVar[dict[str, HParam]] = {}
    data_parallel = True

    def backward(self, weights: Tensor, losses: Tensor) -> Tensor:
        loss = (weights * losses).sum()
        loss.backward()
        return loss
