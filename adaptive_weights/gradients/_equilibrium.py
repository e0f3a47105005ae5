"""Gradient equilibrium (IMTA): each trunk stage sees the mean, not the sum, of its exits' gradients."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ..strategies._hparams import HParam
from ._api import register_gradient_rule
from ._sum import SumRule

__all__ = ["GradientEquilibriumRule", "scale_gradient"]


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by a constant on the way back."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """`x` unchanged, with the gradient flowing back through it multiplied by `scale`."""
    return _ScaleGradient.apply(x, scale)


@register_gradient_rule("ge", description="gradient equilibrium: trunk stage s gets the mean of its exits' gradients")
class GradientEquilibriumRule(SumRule):
    """Gradient equilibrium (Li et al. 2019, "Improved Techniques for Training Adaptive Deep
    Networks", IMTA, §3.2; used with MSDNet and RANet).

    Trunk stage s (the units between exit s-1 and exit s; the stem belongs to stage 0) feeds the
    exits s..K-1. With h_s the stage's output, the forward inserts two gradient scalings, as IMTA's
    code does at every classifier:

        b_s = scale(h_s, 1/(K-s));  logits_s = head_s(b_s);  stage s+1 reads scale(b_s, K-s-1)

    so that, backwards, dL/dh_s = (g_s + (K-s-1) dL/dh_{s+1} J) / (K-s). By induction from the last
    stage, stage s and every parameter in it receive the mean over j = s..K-1 of the gradients of
    the weighted losses w_j L_j, instead of their sum; every head's gradient is unchanged (its input
    gradient is scaled, not its own). The loss itself is the weighted sum, back-propagated once.
    """

    hparams: ClassVar[dict[str, HParam]] = {}
    data_parallel = False  # its forward runs the stages itself, past DDP's wrapper

    def forward_fn(self):
        return self._forward

    def _forward(self, x: Tensor) -> Tensor:
        model = self.model
        k_total = model.num_exits
        h = model.stem_forward(x)
        logits = []
        for s in range(k_total):
            h = scale_gradient(model.trunk_stage(h, s), 1.0 / (k_total - s))
            logits.append(model.heads[s](h))
            if s + 1 < k_total:
                h = scale_gradient(h, float(k_total - s - 1))
        return torch.stack(logits)
