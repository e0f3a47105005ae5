"""Objectives: plain cross-entropy and self-distillation checked against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from adaptive_weights.errors import RefusedError
from adaptive_weights.evaluate import per_exit_losses
from adaptive_weights.objectives import create_objective, describe_objectives, list_objectives


def _toy(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 4, 5, generator=g) * 2  # K=3 exits, B=4, C=5 (losses are float32)
    targets = torch.randint(0, 5, (4,), generator=g)
    return logits, targets


def _softmax(row: list[float], t: float) -> list[float]:
    m = max(row)
    e = [math.exp((v - m) / t) for v in row]
    return [v / sum(e) for v in e]


def _hand_distill(logits: torch.Tensor, targets: torch.Tensor, teacher: str, alpha: float, t: float) -> list[float]:
    """The docstring's formula with explicit loops over exits, samples and classes."""
    z = logits.tolist()
    k_total, batch = len(z), len(z[0])
    out = []
    for k in range(k_total):
        ce = sum(-math.log(_softmax(z[k][b], 1.0)[int(targets[b])]) for b in range(batch)) / batch
        if k == k_total - 1:
            out.append(ce)
            continue
        kl = 0.0
        for b in range(batch):
            if teacher == "final":
                q = _softmax(z[-1][b], t)
            elif teacher == "next-deeper":
                q = _softmax(z[k + 1][b], t)
            else:
                deeper = [_softmax(z[j][b], t) for j in range(k + 1, k_total)]
                q = [sum(col) / len(deeper) for col in zip(*deeper, strict=True)]
            p = _softmax(z[k][b], t)
            kl += sum(qi * (math.log(qi) - math.log(pi)) for qi, pi in zip(q, p, strict=True))
        out.append((1 - alpha) * ce + alpha * t * t * kl / batch)
    return out


def test_ce_is_the_per_exit_cross_entropy():
    logits, targets = _toy()
    assert torch.equal(create_objective("ce")(logits, targets), per_exit_losses(logits, targets))


@pytest.mark.parametrize("teacher", ["final", "next-deeper", "ensemble-of-deeper"])
def test_distill_matches_a_hand_computation(teacher):
    logits, targets = _toy(1)
    got = create_objective("distill", teacher=teacher, alpha=0.3, temperature=2.5)(logits, targets)
    assert got.shape == (3,)
    assert got.tolist() == pytest.approx(_hand_distill(logits, targets, teacher, 0.3, 2.5), rel=1e-6)  # float32


def test_distill_teacher_is_detached_and_the_final_exit_is_plain_ce():
    logits, targets = _toy(2)
    logits.requires_grad_(True)
    losses = create_objective("distill", teacher="ensemble-of-deeper", alpha=0.7)(logits, targets)
    assert losses[-1].item() == pytest.approx(per_exit_losses(logits, targets)[-1].item(), rel=1e-7)
    # the loss of exit 0 reaches only exit 0's logits: the deeper exits are teachers, not students
    (grad,) = torch.autograd.grad(losses[0], logits)
    assert grad[0].abs().sum() > 0 and torch.equal(grad[1:], torch.zeros_like(grad[1:]))
    # alpha = 0 is plain cross-entropy
    plain = create_objective("distill", alpha=0.0)(logits, targets)
    assert torch.allclose(plain, per_exit_losses(logits, targets), rtol=1e-6, atol=0)


def test_label_smoothing_smooths_the_cross_entropy_terms_only():
    # train.label_smoothing enters (1 - alpha) CE of the early exits and the final exit's CE; the
    # distillation term matches the teacher's softened prediction, not smoothed labels
    logits, targets = _toy(3)
    smooth, plain = (create_objective("distill", label_smoothing=ls, alpha=0.3)(logits, targets) for ls in (0.2, 0.0))
    ce_shift = per_exit_losses(logits, targets, label_smoothing=0.2) - per_exit_losses(logits, targets)
    assert torch.allclose(smooth - plain, ce_shift * torch.tensor([0.7, 0.7, 1.0]), rtol=1e-5, atol=1e-6)
    assert ce_shift.abs().min() > 1e-3


def test_distill_with_one_exit_is_ce():
    logits, targets = _toy()
    one = logits[-1:]
    assert torch.equal(create_objective("distill")(one, targets), per_exit_losses(one, targets))


@pytest.mark.parametrize("hparams,match", [
    ({"alpha": 1.5}, r"alpha=1\.5 is out of range; allowed: \[0, 1\]"),
    ({"temperature": 0}, r"temperature=0 is out of range; allowed: \(0, inf\)"),
    ({"teacher": "deepest"}, r"teacher='deepest' is not allowed; choose one of final, next-deeper, ensemble-of-deeper"),
    ({"beta": 1.0}, r"unknown hyper-parameter\(s\) beta; allowed: alpha, teacher, temperature"),
])
def test_bad_hyper_parameters_are_refused_by_name(hparams, match):
    with pytest.raises(RefusedError, match=match):
        create_objective("distill", **hparams)


def test_unknown_objective_is_refused_with_close_names():
    with pytest.raises(RefusedError, match="unknown objective 'distil'; did you mean distill"):
        create_objective("distil")


def test_listing_shows_hyper_parameters_and_grids():
    assert list_objectives() == ["ce", "distill"]
    text = describe_objectives()
    assert "alpha          float default 0.5    range [0, 1]  grid [0.3, 0.5, 0.7]" in text
    assert "choices {final|next-deeper|ensemble-of-deeper}" in text
