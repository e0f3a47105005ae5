"""`train.compile`: a compiled run gives the eager run's numbers, and a strategy that is not
capture-safe steps eagerly with a warning. On the CPU the compiled modes use dynamo's "eager"
backend (no C compiler, seconds); the CUDA-graph numbers are checked by tests/test_gpu.py."""

from __future__ import annotations

import json
import warnings
from typing import ClassVar

import pytest
import torch

from adaptive_weights import compiled
from adaptive_weights.config import RunConfig
from adaptive_weights.strategies import CompiledSteps, RewardLearner, register_strategy
from adaptive_weights.training import train


class ItemBranching(RewardLearner):
    """Capture-unsafe on purpose: declares safety but branches on `.item()` (a graph break)."""

    capture_safe: ClassVar[bool] = True
    state_tensors = ("score",)

    def setup(self) -> None:
        super().setup()
        self.score = torch.zeros(self.K, device=self.device)

    def learn(self, rewards: torch.Tensor) -> None:
        self.score = self.score + (rewards if rewards.max().item() > 0 else -rewards)

    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.score, 0) * 0.7 + 0.3 / self.K


@pytest.fixture(scope="module", autouse=True)
def _unsafe_registered():
    from adaptive_weights.strategies import STRATEGIES

    register_strategy("test-item-branching")(ItemBranching)
    yield
    STRATEGIES.unregister("test-item-branching")


@pytest.fixture
def eager_backend(monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", "eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _rows(run_dir) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in rows]


@pytest.mark.parametrize("strategy", ["eg", "test-item-branching"])
def test_compiled_run_matches_eager_run(tmp_path, tiny_flat, eager_backend, strategy) -> None:
    flat = {**tiny_flat, "strategy.name": strategy}  # learning frozen in epoch 0, on in epoch 1
    eager = train(RunConfig.from_flat(flat), out_dir=tmp_path / "eager", tensorboard=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = train(RunConfig.from_flat({**flat, "train.compile": "reduce-overhead"}), out_dir=tmp_path / "fast",
                     tensorboard=False)
    fallbacks = [str(w.message) for w in caught if "steps eagerly" in str(w.message)]
    if strategy == "eg":
        assert not fallbacks
    else:  # detected, run eagerly, said so once
        assert len(fallbacks) == 1 and "test-item-branching" in fallbacks[0] and "one graph" in fallbacks[0]
    assert fast["errors"] == eager["errors"]
    assert _rows(tmp_path / "fast") == _rows(tmp_path / "eager")
    sa = torch.load(tmp_path / "eager" / "checkpoints" / "last.pt", weights_only=True)["strategy"]
    sb = torch.load(tmp_path / "fast" / "checkpoints" / "last.pt", weights_only=True)["strategy"]
    assert sa["steps"] == sb["steps"] > 0
    assert all(torch.equal(sa["tensors"][k], sb["tensors"][k]) for k in sa["tensors"])


def test_a_resumed_compiled_run_compiles_the_loaded_state(tmp_path, tiny_flat, eager_backend, monkeypatch) -> None:
    """A CUDA graph (reduce-overhead) reads the strategy's and the network's tensors at the addresses
    it captured: a resume compiles only after the checkpoint's states are loaded, and a compiled run
    interrupted after epoch 1 and resumed equals the straight compiled run."""
    from conftest import train_interrupted_then_resumed

    import adaptive_weights.training as train_module

    compiled_at: list[int] = []

    def spy(forward, strategy, mode):
        compiled_at.append(int(strategy.steps))  # how far the strategy's state is when compiled
        return compiled.compile_training(forward, strategy, mode)

    monkeypatch.setattr(train_module, "compile_training", spy)
    cfg = RunConfig.from_flat({**tiny_flat, "strategy.name": "eg", "train.compile": "reduce-overhead"})
    train(cfg, out_dir=tmp_path / "straight", tensorboard=False)
    train_interrupted_then_resumed(cfg, tmp_path / "resumed")
    steps_per_epoch = tiny_flat["data.synthetic_size"] // tiny_flat["train.batch_size"]
    assert compiled_at == [0, 0, steps_per_epoch]  # straight, interrupted, resumed from epoch 1's state
    assert _rows(tmp_path / "resumed") == _rows(tmp_path / "straight")
    sa, sb = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True)["strategy"]
              for d in ("straight", "resumed"))
    assert sa["steps"] == sb["steps"] == 2 * steps_per_epoch
    assert all(torch.equal(sa["tensors"][k], sb["tensors"][k]) for k in sa["tensors"])


def test_safe_strategy_is_compiled_and_unsafe_is_not(eager_backend) -> None:
    from adaptive_weights.strategies import create_strategy

    model = torch.nn.Linear(2, 2)
    _, stepper = compiled.compile_training(model, create_strategy("rwm", torch.ones(3)), "default")
    assert isinstance(stepper, CompiledSteps)
    unsafe = ItemBranching(torch.ones(3), warmup_epochs=0)
    with pytest.warns(RuntimeWarning, match="steps eagerly"):
        _, stepper = compiled.compile_training(model, unsafe, "default")
    assert stepper is unsafe
    forward, stepper = compiled.compile_training(model, unsafe, "none")
    assert forward is model and stepper is unsafe


def test_compile_mode_is_validated(tiny_flat) -> None:
    with pytest.raises(ValueError, match=r"train.compile: got 'fast'; allowed: auto, none, default, reduce-overhead"):
        RunConfig.from_flat({**tiny_flat, "train.compile": "fast"}).resolve()
