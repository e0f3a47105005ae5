"""StrategyGroups: members stepped as one batch compute bit for bit what each computes alone."""

from __future__ import annotations

import copy

import pytest
import torch

from adaptive_weights.strategies import StrategyGroups, create_strategy, get_strategy_class, list_strategies
from adaptive_weights.strategies._batched import BATCHED_CLASSES
from adaptive_weights.strategies._learners import floored_log_weights

K = 9
BUILTIN = [n for n in list_strategies() if get_strategy_class(n).__module__.startswith("adaptive_weights.")]


def _hparams(name: str, j: int) -> dict:
    """Different hyper-parameters per member (learning on from epoch 0 or 1: both phases in a group)."""
    choices = {"gamma": (0.1, 0.3, 0.45), "rho": (0.7, 0.8, 0.9), "ratio": (0.0, 1.0, 2.0),
               "momentum": (0.5, 0.9, 0.99), "warmup_epochs": (0, 1, 0), "period": (1, 3, 2), "train_final": (0, 1, 1),
               "final_extra": (0.5, 0.0, 1.0)}
    return {k: v[j % 3] for k, v in choices.items() if k in get_strategy_class(name).hparams}


def _members(device: str = "cpu") -> list:
    g = torch.Generator().manual_seed(1)
    members = []
    for j, name in enumerate(BUILTIN * 3):  # interleaved classes, three members each
        base = torch.rand(K, generator=g) + 0.05
        if j % 4 == 0:
            base[:2] = 0  # exits that do not exist
        members.append(create_strategy(name, base.to(device), seed=j, **_hparams(name, j)))
    return members


def _assert_same_state(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["steps"] == sb["steps"] and sa["epoch"] == sb["epoch"]
    for key, value in sa["tensors"].items():
        assert torch.equal(value, sb["tensors"][key]), (a.name, key)
        assert value.shape == sb["tensors"][key].shape and value.is_contiguous()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_batched_equals_per_member_for_every_builtin(device):
    """Weights of every step and the final states agree exactly; on CUDA no step syncs the host."""
    grouped = _members(device)
    alone = copy.deepcopy(grouped)
    groups = StrategyGroups(grouped)
    assert groups.batched == sum(type(s) in BATCHED_CLASSES for s in grouped) > len(BUILTIN)
    g = torch.Generator().manual_seed(2)
    losses = torch.rand(2, 40, len(grouped), K, generator=g) * 2
    losses[:, 5, 3, 4] = float("nan")  # one member's step is skipped, the others learn
    losses[:, 7, :, 0] = 0.0
    losses = losses.to(device)
    weights: list[tuple] = []
    sync_mode = torch.cuda.get_sync_debug_mode() if device == "cuda" else 0
    for epoch in range(2):
        for s in grouped + alone:
            s.start_epoch(epoch)
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        try:
            for step_losses in losses[epoch]:
                weights.append((groups.step_weights(), torch.cat([s.step_weights() for s in alone])))
                groups.observe(step_losses.reshape(-1))
                for s, row in zip(alone, step_losses, strict=True):
                    s.observe(row)
        finally:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode(sync_mode)
    assert all(torch.equal(a, b) for a, b in weights)
    for a, b in zip(grouped, alone, strict=True):
        _assert_same_state(a, b)


def test_members_with_and_without_a_fused_buffer_batch_exactly():
    """A member whose learnt tensors were unfused (as a compiled step does) groups with fused ones."""
    grouped = [create_strategy("avgl", torch.ones(K), seed=s, momentum=0.5 + 0.2 * s, warmup_epochs=0) for s in range(3)]
    grouped[1].unfuse_learnt()
    alone = copy.deepcopy(grouped)
    groups = StrategyGroups(grouped)
    losses = torch.linspace(2.0, 0.5, 3 * K)
    for t in range(6):
        assert torch.equal(groups.step_weights(), torch.cat([s.step_weights() for s in alone]))
        groups.observe(losses * (1 + t))
        for s, part in zip(alone, (losses * (1 + t)).split(K), strict=True):
            s.observe(part)
    for a, b in zip(grouped, alone, strict=True):
        _assert_same_state(a, b)


def test_grouped_member_resumes_alone_and_keeps_its_own_state():
    """A member's checkpoint from a group loads into a lone strategy that goes on exactly as the
    group does; a load into a grouped member lands in its row (the group follows it)."""
    grouped = [create_strategy("eg", torch.ones(K), seed=s, gamma=0.1 * (s + 1), warmup_epochs=0) for s in range(3)]
    groups = StrategyGroups(grouped)
    losses = torch.linspace(2.0, 0.5, 3 * K)
    for _ in range(5):
        groups.step_weights(), groups.observe(losses)
    state = grouped[1].state_dict()
    lone = create_strategy("eg", torch.ones(K), seed=1, gamma=0.2, warmup_epochs=0)
    lone.load_state_dict(state)
    for _ in range(5):
        w = groups.step_weights()
        assert torch.equal(w[K:2 * K], lone.step_weights())
        groups.observe(losses), lone.observe(losses[K:2 * K])
    _assert_same_state(grouped[1], lone)
    grouped[0].load_state_dict(state | {"hparams": grouped[0].state_dict()["hparams"]})
    assert torch.equal(groups.groups[0].s["log_w"][0], state["tensors"]["log_w"])


def test_batched_log_weights_match_row_by_row():
    """The floored log-weights of eg/rwm on wide-spread values, where the CPU's logaddexp gives other
    last bits for a vector's tail than for its body: each row equals the lone computation."""
    g = torch.Generator().manual_seed(3)
    for k in (9, 27, 75):
        members = [create_strategy("rwm", torch.ones(k), seed=i, gamma=0.1 + 0.1 * i) for i in range(5)]
        batch = StrategyGroups(members).groups[0]
        for _ in range(20):
            log_w = torch.randn(5, k, generator=g) * 6
            out = batch.floored(log_w)
            for i, m in enumerate(members):
                assert torch.equal(out[i], floored_log_weights(log_w[i], m.gamma, m._log_floor)), (k, i)
