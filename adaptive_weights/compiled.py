"""`train.compile`: the training step through `torch.compile`, strategy included when it is safe.

`none` runs everything eagerly. `default`, `reduce-overhead` (CUDA graphs: the step's kernels are
recorded once and replayed, which removes the launch cost of the many small per-exit kernels) and
`max-autotune` compile the network's forward (its backward follows through AOTAutograd) and the
strategy's `step_weights()` and `observe()`, each as one graph. A strategy is compiled only if
`adaptive_weights.strategies.capture_check` passes (it declares `capture_safe = True`, traces as one
graph, is not traced again per step, and matches eager numbers); otherwise it runs eagerly, with a warning, so a
plugin that is not capture-safe costs speed, never correctness.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["COMPILE_MODES", "compile_forward", "compile_training", "mark_step_begin"]

COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
#: the torch.compile backend of the compiled modes (tests on machines without a C compiler use "eager")
BACKEND = "inductor"


def compile_training(forward: Callable[[torch.Tensor], torch.Tensor], strategy: Any, mode: str
                     ) -> tuple[Callable[[torch.Tensor], torch.Tensor], Any]:
    """`(forward, stepper)` for `training_step`: compiled for a mode other than `none`; `stepper` has
    the strategy's `step_weights()` and `observe()` (the strategy itself when it runs eagerly)."""
    from .strategies import CompiledSteps, capture_check

    if mode == "none":
        return forward, strategy
    compiled_forward = compile_forward(forward, mode)
    kwargs = _compile_kwargs(mode)
    reason = capture_check(strategy)
    if reason is not None:
        warnings.warn(f"train.compile={mode}: strategy {strategy.name!r} steps eagerly, since it is not "
                      f"capture-safe: {reason} (see docs/training.md, 'Compiled training step')", RuntimeWarning,
                      stacklevel=2)
        return compiled_forward, strategy
    return compiled_forward, CompiledSteps(strategy, **kwargs)


def _compile_kwargs(mode: str) -> dict[str, Any]:
    if mode not in COMPILE_MODES:
        raise ValueError(f"train.compile: {mode!r} is not one of {list(COMPILE_MODES)}")
    kwargs: dict[str, Any] = {"backend": BACKEND}
    if BACKEND == "inductor" and mode != "default":
        kwargs["mode"] = mode
    return kwargs


def compile_forward(forward: Callable[[torch.Tensor], torch.Tensor], mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network's forward through ``torch.compile`` for ``mode`` (``none``: unchanged)."""
    if mode == "none":
        return forward
    return torch.compile(forward, **_compile_kwargs(mode))


def mark_step_begin(mode: str) -> None:
    """Tell CUDA-graph trees that a new training step begins (its graphs may reuse the last step's
    output memory); a no-op in the other modes."""
    if mode == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()
