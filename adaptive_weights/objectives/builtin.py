"""The built-in objectives: plain cross-entropy and self-distillation.

Importing this module registers them, so they are found even when entry-point metadata is stale.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..evaluate import per_exit_losses
from ..strategies._hparams import HParam
from ._api import Objective, register_objective

__all__ = ["CrossEntropyObjective", "DistillObjective", "TEACHERS"]

TEACHERS = ("final", "next-deeper", "ensemble-of-deeper")


@register_objective("ce", description="cross-entropy of every exit (the default)")
class CrossEntropyObjective(Objective):
    """L_k = CE(z_k, y), mean over the batch, every exit in one call (spec §5; `per_exit_losses`;
    label-smoothed by ``train.label_smoothing``)."""

    hparams: ClassVar[dict[str, HParam]] = {}

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        return per_exit_losses(logits, targets, label_smoothing=self.label_smoothing)

    def packed(self, logits: Tensor, targets: Tensor) -> Tensor:
        s, b, n, c = logits.shape
        flat = F.cross_entropy(logits.reshape(-1, c).float(), targets.expand(s, b, n).reshape(-1), reduction="none",
                               label_smoothing=self.label_smoothing)
        return flat.view(s, b, n).mean(1)


@register_objective("distill", description="self-distillation: early exits also match a deeper exit's softened prediction")
class DistillObjective(Objective):
    """Self-distillation from deeper exits, teacher detached.

    For every exit k < K-1 with teacher distribution q_k:

        L_k = (1 - alpha) CE(z_k, y) + alpha T^2 KL(q_k || softmax(z_k / T))

    and the final exit keeps its plain loss L_{K-1} = CE(z_{K-1}, y) (it has no deeper teacher; we
    do not distil it towards itself or a shallower exit). The teacher q_k is computed under
    ``no_grad`` (gradients reach only the student) and is, by ``teacher``:

    - ``final``: softmax(z_{K-1} / T) for every early exit ("Be Your Own Teacher", Zhang et al. 2019;
      IMTA's one-for-all knowledge transfer, Li et al. 2019; Dynamic Perceiver);
    - ``next-deeper``: softmax(z_{k+1} / T), a chain of teachers;
    - ``ensemble-of-deeper``: the mean of softmax(z_j / T) over all deeper exits j > k.

    T^2 keeps the soft term's gradient scale independent of T (Hinton et al. 2015). KL is summed
    over classes and averaged over the batch, like the cross-entropy.
    """

    hparams: ClassVar[dict[str, HParam]] = {
        "teacher": HParam("final", str, choices=TEACHERS, doc="whose softened prediction an early exit matches"),
        "alpha": HParam(0.5, float, 0.0, 1.0, (0.3, 0.5, 0.7), "weight of the distillation term"),
        "temperature": HParam(3.0, float, 0.0, None, (1.0, 3.0, 5.0), "softmax temperature T", low_open=True),
    }

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        ce = per_exit_losses(logits, targets, label_smoothing=self.label_smoothing)                   # [K]
        k = logits.shape[0]
        if k == 1:
            return ce
        t = self.temperature
        z = logits.float()
        log_student = F.log_softmax(z[:-1] / t, dim=-1)       # [K-1, B, C]
        with torch.no_grad():
            teacher = self._teacher(z.detach() / t)           # [K-1 or 1, B, C]
        kl = (torch.xlogy(teacher, teacher) - teacher * log_student).sum(-1).mean(-1)  # [K-1]
        early = (1.0 - self.alpha) * ce[:-1] + (self.alpha * t * t) * kl
        return torch.cat([early, ce[-1:]])

    def _teacher(self, scaled: Tensor) -> Tensor:
        """q_k for k = 0..K-2 from the scaled logits z / T of all K exits."""
        if self.teacher == "final":
            return torch.softmax(scaled[-1:], dim=-1)          # broadcasts over the early exits
        probs = torch.softmax(scaled[1:], dim=-1)              # exits 1..K-1
        if self.teacher == "next-deeper":
            return probs
        deeper_sums = probs.flip(0).cumsum(0).flip(0)         # row k: sum over exits j > k
        counts = torch.arange(probs.shape[0], 0, -1, device=probs.device, dtype=probs.dtype)
        return deeper_sums / counts.view(-1, 1, 1)
