"""Learning-rate schedules (pure functions of epoch and step), presets that follow the data set,
label smoothing in the one vectorised per-exit loss, Nesterov momentum."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adaptive_weights.config import DATASET_PRESETS, PRESETS, RunConfig
from adaptive_weights.data import DATASET_NAMES
from adaptive_weights.evaluate import per_exit_losses
from adaptive_weights.schedules import describe_schedule, learning_rate


def _train(**flat):
    return RunConfig.from_flat({f"train.{k}": v for k, v in flat.items()}).resolve().train


def test_step_schedule_is_the_papers():
    t = _train(preset="cifar")
    assert [learning_rate(t, e) for e in (0, 139, 140, 209, 210, 250, 299)] == \
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.0002, 0.0002]
    # constant within an epoch
    assert learning_rate(t, 139, 0, 100) == learning_rate(t, 139, 99, 100) == 0.1


def test_cosine_from_the_peak_to_zero():
    t = _train(preset="cifar", lr_schedule="cosine", epochs=10)
    assert t.lr_values == (0.1,) and t.lr_milestones == ()
    assert learning_rate(t, 4, 9, 10) == pytest.approx(0.05)          # half-way: half the peak
    assert learning_rate(t, 9, 9, 10) == pytest.approx(0.0, abs=1e-12)  # the last step
    rates = [learning_rate(t, e, s, 10) for e in range(10) for s in range(10)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_warmup_ramps_linearly_then_follows_the_schedule():
    t = _train(preset="cifar", lr_schedule="cosine", epochs=10, warmup_epochs=2)
    assert learning_rate(t, 0, 0, 4) == pytest.approx(0.1 * 0.25 / 2)
    assert learning_rate(t, 0, 3, 4) == pytest.approx(0.05)
    assert learning_rate(t, 1, 3, 4) == pytest.approx(0.1)              # the ramp's end is the peak
    assert learning_rate(t, 5, 3, 4) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    step = _train(preset="cifar", warmup_epochs=1)
    assert learning_rate(step, 0, 1, 4) == pytest.approx(0.05) and learning_rate(step, 1, 0, 4) == 0.1


def test_onecycle_rises_then_anneals():
    t = _train(preset="cifar", lr_schedule="onecycle", epochs=10, lr_values="0.4")
    rates = [learning_rate(t, e, s, 10) for e in range(10) for s in range(10)]
    peak = rates.index(max(rates))
    assert max(rates) == pytest.approx(0.4) and 25 <= peak <= 35      # the first 30% of the run
    assert rates[0] == pytest.approx(0.4 / 25, rel=0.1) and rates[-1] == pytest.approx(0.4 / 25e4)
    assert all(a <= b for a, b in zip(rates[:peak], rates[1:peak + 1], strict=True))


def test_the_preset_follows_the_data_set():
    assert set(DATASET_PRESETS) == set(DATASET_NAMES) and set(DATASET_PRESETS.values()) <= set(PRESETS)
    for name, preset in {"cifar10": "cifar", "cifar100": "cifar", "svhn": "svhn", "imagenet": "imagenet",
                         "digits": "digits", "synthetic": "smoke"}.items():
        t = RunConfig.from_flat({"data.name": name}).resolve().train
        assert t.preset == preset and t.epochs == PRESETS[preset][0], name
    assert "schedule: preset cifar, 300 epochs, step lr 0.1, 0.01 after epoch 140" in describe_schedule(
        RunConfig.from_flat({"data.name": "cifar10"}).resolve().train)


def test_label_smoothing_keeps_one_vectorised_call():
    logits, y = torch.randn(3, 5, 4), torch.randint(0, 4, (5,))
    got = per_exit_losses(logits, y, label_smoothing=0.1)
    want = torch.stack([F.cross_entropy(logits[k], y, label_smoothing=0.1) for k in range(3)])
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, per_exit_losses(logits, y))


def test_a_run_uses_the_schedule_smoothing_and_nesterov(tmp_path, tiny_flat):
    """The rates are recorded; label smoothing and Nesterov show in the trained weights: leaving
    either out of the same run changes them (each acts from the first step)."""
    from adaptive_weights.logging import read_metrics
    from adaptive_weights.training import train

    flat = {**tiny_flat, "train.lr_schedule": "cosine", "train.lr_values": "0.2", "train.epochs": 2,
            "train.label_smoothing": 0.1, "train.nesterov": True, "train.max_steps_per_epoch": 1}

    def trained(name: str, **over) -> dict[str, torch.Tensor]:
        train(RunConfig.from_flat({**flat, **over}), out_dir=tmp_path / name, tensorboard=False)
        return torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)["model"]

    both = trained("both")
    rows = read_metrics(tmp_path / "both" / "metrics.jsonl")
    # the row records the rate of the epoch's last (here: only) step: half-way, then zero
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.0], abs=1e-9)
    for name, off in (("no-smoothing", {"train.label_smoothing": 0.0}), ("no-nesterov", {"train.nesterov": False})):
        other = trained(name, **off)
        assert any(not torch.equal(both[k], other[k]) for k in both if both[k].is_floating_point()), name
