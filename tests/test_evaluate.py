"""Per-exit evaluation against hand-computed errors and losses (two uneven batches)."""

import math

import pytest
import torch

from adaptive_weights.evaluate import evaluate_exits


class TwoExits(torch.nn.Module):
    """Exit 0 always ranks the classes 0 > 1 > ... > 5; exit 1 puts 3 on the class in x's column."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # evaluate_exits reads the device from it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ranked = torch.tensor([2.0, 1.0, 0.0, -1.0, -2.0, -3.0]).repeat(x.shape[0], 1)
        return torch.stack([ranked, 3.0 * torch.nn.functional.one_hot(x[:, 0].long(), 6).float()])


def test_errors_losses_and_top5_by_hand():
    x = torch.tensor([[0], [1], [5], [2], [4]])
    y = torch.tensor([0, 1, 5, 2, 3])
    model = TwoExits().train()
    ev = evaluate_exits(model, [(x[:2], y[:2]), (x[2:], y[2:])])
    assert model.training  # mode restored
    assert ev.num_samples == 5
    # exit 0 predicts class 0: right once; class 5 is its 6th choice, the only top-5 miss
    # exit 1 predicts x: wrong only on the last sample (4 vs 3), whose label is a tie among the zeros
    assert ev.errors == pytest.approx([4 / 5, 1 / 5])
    assert ev.top5_errors[0] == pytest.approx(1 / 5)
    log_z0 = math.log(sum(math.exp(v) for v in (2, 1, 0, -1, -2, -3)))
    ce0 = [log_z0 - v for v in (2, 1, -3, 0, -1)]  # labels 0, 1, 5, 2, 3
    log_z1 = math.log(math.exp(3) + 5)
    ce1 = [log_z1 - 3] * 4 + [log_z1]
    assert ev.losses == pytest.approx([sum(ce0) / 5, sum(ce1) / 5], rel=1e-6)


def test_a_rank_with_an_empty_shard_still_joins_the_sum():
    """A split smaller than the world size leaves some rank no images: it once raised before the
    collective, so the other ranks waited in it for ever. It now adds zeros and returns the split's
    numbers; a split that is empty on every rank is still refused."""
    x, y = torch.tensor([[0], [1], [5], [2], [4]]), torch.tensor([0, 1, 5, 2, 3])
    model = TwoExits()
    model.num_exits = 2
    other_rank = []
    full = evaluate_exits(model, [(x, y)], sum_over_ranks=lambda t: other_rank.append(t.clone()) or t)
    ev = evaluate_exits(model, [], sum_over_ranks=lambda t: t + other_rank[0])
    assert (ev.errors, ev.losses, ev.num_samples) == (full.errors, full.losses, 5)
    with pytest.raises(ValueError, match="no samples"):
        evaluate_exits(model, [], sum_over_ranks=lambda t: t)
