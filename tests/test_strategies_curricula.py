"""The feedback-free schedules: round-robin rotation and the early-exit warm-up."""

from __future__ import annotations

import math

import pytest
import torch

from adaptive_weights.errors import RefusedError
from adaptive_weights.strategies import create_strategy, describe_strategies

BASE = torch.tensor([0.5, 1.0, 2.0, 4.0])


def test_round_robin_rotates_one_exit_per_step_and_keeps_the_final():
    s = create_strategy("round-robin", BASE)
    got = [s.step_weights().tolist() for _ in range(5)]
    assert got == [[0.5, 0, 0, 4], [0, 1, 0, 4], [0, 0, 2, 4], [0, 0, 0, 4], [0.5, 0, 0, 4]]
    alone = create_strategy("round-robin", BASE, train_final=0)
    got = [alone.step_weights().tolist() for _ in range(5)]
    assert got == [[0.5, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 4], [0.5, 0, 0, 0]]
    assert alone.probabilities().tolist() == [0.25] * 4


def test_round_robin_resumes_mid_rotation():
    s = create_strategy("round-robin", BASE)
    for _ in range(2):
        s.step_weights()
        s.observe(torch.ones(4))
    t = create_strategy("round-robin", BASE)
    t.load_state_dict(s.state_dict())
    assert [t.step_weights().tolist() for _ in range(3)] == [s.step_weights().tolist() for _ in range(3)]


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_warmup_grows_the_early_exits_to_the_scheme(shape):
    s = create_strategy("warmup", BASE, warmup_epochs=3, shape=shape)
    rows = []
    for epoch in range(5):
        s.start_epoch(epoch)
        rows.append(s.step_weights().tolist())
    for epoch, row in enumerate(rows):
        p = (epoch + 1) / 4
        f = 1.0 if epoch >= 3 else (p if shape == "linear" else 0.5 * (1 - math.cos(math.pi * p)))
        assert row == pytest.approx([0.5 * f, 1.0 * f, 2.0 * f, 4.0])  # the final exit keeps its weight
    # train/prob (the probability stack) shows this epoch's shares, not the scheme's
    assert s.probabilities().tolist() == pytest.approx([0.5 / 7.5, 1 / 7.5, 2 / 7.5, 4 / 7.5])
    s.start_epoch(0)
    assert s.probabilities().tolist() == pytest.approx([r / sum(rows[0]) for r in rows[0]])
    resumed = create_strategy("warmup", BASE, warmup_epochs=3, shape=shape)
    s.start_epoch(1)
    resumed.load_state_dict(s.state_dict())
    assert resumed.step_weights().tolist() == rows[1]
    assert create_strategy("warmup", BASE, warmup_epochs=0).step_weights().tolist() == BASE.tolist()


@pytest.mark.parametrize("name,hparams,match", [
    ("warmup", {"shape": "exp"}, r"shape='exp' is not allowed; choose one of linear, cosine"),
    ("warmup", {"warmup_epochs": -1}, r"warmup_epochs=-1 is out of range"),
    ("round-robin", {"train_final": 2}, r"train_final=2 is out of range; allowed: \[0, 1\]"),
])
def test_bad_hyper_parameters_are_refused_by_name(name, hparams, match):
    from adaptive_weights.config import RunConfig

    with pytest.raises(ValueError, match=match):
        create_strategy(name, BASE, **hparams)
    flat = {"strategy.name": name, **{f"strategy.{k}": v for k, v in hparams.items()}}
    with pytest.raises(RefusedError, match=match):
        RunConfig.from_flat(flat).resolve()


def test_listing_shows_the_schedules():
    text = describe_strategies()
    assert "round-robin  [feedback: none]" in text and "warmup  [feedback: none]" in text
    assert "shape          str   default linear choices {linear|cosine}" in text
