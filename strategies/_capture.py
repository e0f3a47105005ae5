"""Is a strategy's step capture-safe? Checked once on a copy before a compiled run relies on it.

A compiled or graph-captured training step must never give other numbers than the eager step. A
strategy is trusted there only if it declares `capture_safe = True` *and* its `step_weights()` +
`observe()` trace as one `torch.compile(fullgraph=True)` graph that is not traced again on later
steps (a per-step retrace means Python state that changes every step) and gives exactly the eager
numbers. The check runs on deep copies with the dynamo "eager" backend: no C compiler, about a
second, and the strategy itself is not advanced.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ._base import Strategy

__all__ = ["CompiledSteps", "capture_check", "compile_step"]

#: steps the check runs: the first (forced final exit) and enough later ones to see a retrace.
CHECK_STEPS = 4


def own_code(fn: Callable) -> Callable:
    """`fn` behind a function with a code object of its own. Dynamo keeps its compiled graphs (and
    counts recompilations, 8 at most) per code object, and the built-ins share `Strategy.observe`:
    compiled directly, the ninth strategy class in one process hit the recompile limit, which
    `fullgraph=True` turns into an error."""

    def call(*args: object) -> object:
        return fn(*args)

    call.__code__ = call.__code__.replace()
    return call


def compile_step(strategy: Strategy):
    """`fn(losses) -> weights` running `step_weights()` then `observe(losses)`, traced by dynamo as
    one graph (`fullgraph=True`: a graph break raises) and run as traced (no code generation). Returns `(fn, traces)` where `traces[0]` counts
    how often dynamo traced it (1 for a capture-safe strategy, whatever the number of steps)."""
    traces = [0]

    def count_traces(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        traces[0] += 1
        return gm.forward  # dynamo's "eager" backend, counted

    def step(losses: torch.Tensor) -> torch.Tensor:
        weights = strategy.step_weights()
        strategy.observe(losses)
        return weights

    return torch.compile(own_code(step), backend=count_traces, fullgraph=True), traces


def capture_check(strategy: Strategy, steps: int = CHECK_STEPS) -> str | None:
    """None when `strategy` is capture-safe, else why not (for the warning of a compiled run).

    Runs `steps` steps with learning on, compiled and eager, on two copies of `strategy`, and
    compares the weights and the complete state tensors exactly.
    """
    name = type(strategy).__name__
    if not type(strategy).capture_safe:
        return f"{name} does not declare capture_safe = True"
    eager, traced = copy.deepcopy(strategy), copy.deepcopy(strategy)
    traced.unfuse_learnt()  # as `CompiledSteps` runs it
    for s in (eager, traced):
        s.start_epoch(max(s.epoch, int(s.warmup_epochs)))  # learning on, so that update() is traced
    fn, traces = compile_step(traced)
    trend = torch.linspace(2.0, 0.5, strategy.K, device=strategy.device)
    try:
        for t in range(steps):
            losses = trend * (1.0 + 0.1 * ((t * 7 + torch.arange(strategy.K, device=strategy.device)) % 5))
            w_eager, w_traced = eager.step_weights(), fn(losses)
            eager.observe(losses)
            if not torch.equal(w_eager, w_traced):
                return f"{name}: compiled weights differ from eager ones at step {t}"
    except Exception as err:  # noqa: BLE001 - any failure to trace means: run it eagerly
        first = (str(err).strip().splitlines() or [""])[0]
        return f"{name}.step_weights/observe do not compile as one graph ({type(err).__name__}: {first})"
    if traces[0] != 1:
        return f"{name}: traced {traces[0]} times in {steps} steps (Python state that changes per step?)"
    a, b = eager.state_dict(), traced.state_dict()
    differ = sorted(k for k in a["tensors"] if not torch.equal(a["tensors"][k], b["tensors"][k]))
    if differ or a["steps"] != b["steps"]:
        return f"{name}: compiled state differs from eager state in {differ or ['steps']}"
    return None


class CompiledSteps:
    """The two per-step calls of `strategy`, each compiled as one graph (`fullgraph=True`), for a
    compiled training step (`train.compile`); epochs, state and statistics stay on `strategy`.

    Every state tensor keeps its storage for the strategy's life (updates are in place), so each is
    marked as a static address: a CUDA graph (`mode="reduce-overhead"`) reads and writes it directly
    instead of copying it in and out on every replay.
    """

    def __init__(self, strategy: Strategy, **compile_kwargs: object) -> None:
        self.strategy = strategy
        strategy.unfuse_learnt()  # no aliased graph inputs (see `Strategy.unfuse_learnt`)
        for value in vars(strategy).values():
            if isinstance(value, torch.Tensor):
                torch._dynamo.mark_static_address(value)
        self.step_weights = torch.compile(own_code(strategy.step_weights), fullgraph=True, **compile_kwargs)
        self.observe = torch.compile(own_code(strategy.observe), fullgraph=True, **compile_kwargs)
