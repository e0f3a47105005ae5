"""Capture safety: the check that keeps an unsafe plugin strategy out of a compiled step, and the
counter-based generator the built-in strategies draw from (the per-strategy fullgraph test is a
contract test in test_strategies_contract.py)."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch

from adaptive_weights.strategies import (
    RewardLearner,
    Strategy,
    capture_check,
    create_strategy,
    get_strategy_class,
    list_strategies,
)
from adaptive_weights.strategies._rng import next_uniform, seed_state

BASE = torch.tensor([0.2, 0.3, 0.5, 1.0])


class _BranchesOnItem(RewardLearner):
    """Unsafe: a Python branch on a tensor value (a host sync; a graph break)."""

    state_tensors = ("score",)

    def setup(self) -> None:
        super().setup()
        self.score = torch.zeros(self.K)

    def learn(self, rewards: torch.Tensor) -> None:
        self.score = self.score + (rewards if rewards.sum().item() > 0 else -rewards)

    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.score, 0)


class _CountsInPython(Strategy):
    """Unsafe: a Python counter that changes every step (each step is traced again)."""

    capture_safe: ClassVar[bool] = True

    def setup(self) -> None:
        self.calls = 0

    def step_weights(self) -> torch.Tensor:
        self.calls += 1
        return self.base * (1.0 + 0.1 * (self.calls % 3))


class _OwnTorchGenerator(Strategy):
    """Unsafe: draws from a torch.Generator (not traceable; a CUDA graph would replay one number)."""

    capture_safe: ClassVar[bool] = True

    def setup(self) -> None:
        self.gen = torch.Generator().manual_seed(0)

    def step_weights(self) -> torch.Tensor:
        return self.base * torch.rand(self.K, generator=self.gen)


class _Undeclared(Strategy):
    """Safe code, but its author did not declare it."""

    def step_weights(self) -> torch.Tensor:
        return self.base * 2


class _DeclaredSafe(_Undeclared):
    capture_safe: ClassVar[bool] = True


@pytest.mark.parametrize(("cls", "reason"), [
    (_BranchesOnItem, "do not compile as one graph"),
    (_CountsInPython, "times in 4 steps"),
    (_OwnTorchGenerator, "do not compile as one graph"),
    (_Undeclared, "does not declare capture_safe"),
])
def test_unsafe_strategies_are_detected(cls: type[Strategy], reason: str) -> None:
    s = cls(BASE, warmup_epochs=0) if "warmup_epochs" in cls.hparams else cls(BASE)
    before = s.state_dict()
    assert reason in (capture_check(s) or "")
    after = s.state_dict()  # the check runs on copies: the strategy itself has not moved
    assert after["steps"] == before["steps"] == 0
    assert all(torch.equal(after["tensors"][k], before["tensors"][k]) for k in before["tensors"])


def test_safe_strategies_pass_the_check() -> None:
    assert capture_check(_DeclaredSafe(BASE)) is None
    builtins = [n for n in list_strategies() if get_strategy_class(n).__module__.startswith("adaptive_weights.strategies.")]
    assert len(builtins) >= 8  # other tests may have registered strategies of their own: not these
    for name in builtins:
        assert capture_check(create_strategy(name, BASE, seed=3)) is None, name


def test_counter_generator_is_uniform_and_seeded() -> None:
    """The Weyl state s_n = s_0 + n * W (mod 2**32) lets one call hash many consecutive states: the
    first 100,000 numbers of a stream pass a 100-bin chi-square and a lag-1 pair test."""
    n, weyl = 100_000, 0x61C88647
    state = torch.tensor(seed_state(0), dtype=torch.int64)
    firsts = torch.stack([next_uniform(state) for _ in range(3)])
    states = (seed_state(0) + torch.arange(n, dtype=torch.int64) * weyl) & 0xFFFFFFFF
    u = next_uniform(states)
    assert torch.equal(u[:3], firsts)  # the vectorised stream is the 0-d stream
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    chi2 = float(((torch.histc(u, 100, 0, 1) - n / 100) ** 2 / (n / 100)).sum())
    pairs = torch.bincount((u[:-1] * 10).long() * 10 + (u[1:] * 10).long(), minlength=100).double()
    chi2_pairs = float(((pairs - (n - 1) / 100) ** 2 / ((n - 1) / 100)).sum())
    limit = 99 + 4.5 * math.sqrt(2 * 99)  # 99 degrees of freedom, 4.5 sigmas
    assert chi2 < limit and chi2_pairs < limit, (chi2, chi2_pairs)
    assert len({seed_state(s) for s in range(1000)}) == 1000  # nearby seeds start apart


def test_eager_and_compiled_steps_mix_on_one_strategy() -> None:
    """An eager strategy draws from a cached block of its stream; compiled steps in between (which
    advance the stream in the graph) and a load_state_dict must not leave it reading stale numbers."""
    from adaptive_weights.strategies import compile_step

    mixed, reference = (create_strategy("eg", BASE, seed=5, warmup_epochs=0) for _ in range(2))
    fn, _ = compile_step(mixed)
    losses = [torch.tensor([1.0, 0.8, 0.7, 0.5]) * (1 + 0.1 * t) for t in range(12)]
    for t, loss in enumerate(losses):
        w = fn(loss) if 3 <= t < 6 else (mixed.step_weights(), mixed.observe(loss))[0]
        if t == 8:  # a reload mid-stream (of the state it already has): the cache must follow the state
            mixed.load_state_dict(mixed.state_dict())
        w_ref = reference.step_weights()
        reference.observe(loss)
        assert torch.equal(w, w_ref), t
    assert torch.equal(mixed.rng_state, reference.rng_state)
    other = create_strategy("eg", BASE, seed=6, warmup_epochs=0)
    other.step_weights()  # its cache now holds seed 6's numbers
    other.load_state_dict(reference.state_dict())
    assert torch.equal(other.step_weights(), reference.step_weights())
    assert torch.equal(other.stats()["selected"], reference.stats()["selected"])


def test_compiled_steps_of_many_strategy_classes_in_one_process() -> None:
    """The built-ins share `Strategy.observe`; compiling it per strategy used one dynamo cache for
    all classes, so the ninth class in a process (a benchmark, a test session) hit the recompile
    limit and failed. Here the limit is 1 and three classes each compile their own steps."""
    from adaptive_weights.strategies import CompiledSteps

    with torch._dynamo.config.patch(recompile_limit=1):
        for name in ("static", "uniform", "eg"):
            eager, compiled = (create_strategy(name, BASE, seed=0) for _ in range(2))
            steps = CompiledSteps(compiled, backend="eager")
            assert torch.equal(steps.step_weights(), eager.step_weights())
            steps.observe(BASE)
            eager.observe(BASE)
            a, b = compiled.state_dict(), eager.state_dict()
            assert a["steps"] == b["steps"] == 1
            assert all(torch.equal(a["tensors"][k], v) for k, v in b["tensors"].items())
