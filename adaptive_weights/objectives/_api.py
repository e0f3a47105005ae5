"""The objective interface and registry."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .._plugins import Plugin, describe_plugins, lookup, plugin_registry
from ..registry import Registry, class_decorator

__all__ = ["ENTRY_POINT_GROUP", "OBJECTIVES", "Objective", "create_objective", "describe_objectives",
           "get_objective_class", "list_objectives", "register_objective"]

ENTRY_POINT_GROUP = "adaptive_weights.objectives"


class Objective(Plugin):
    """Per-exit losses from all exits' logits and the labels, in one vectorised call.

    Contract: ``objective(logits [K, B, C], targets [B]) -> [K]`` float32 mean losses, differentiable
    in the logits, computed on the device without reading anything back to the host. An objective
    holds no state that changes during training (so resuming needs nothing from it).
    """

    kind = "objective"

    def __init__(self, *, label_smoothing: float = 0.0, **hparams: Any) -> None:
        super().__init__(**hparams)
        #: the run's ``train.label_smoothing`` for every cross-entropy the objective computes
        self.label_smoothing = float(label_smoothing)

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def packed(self, logits: Tensor, targets: Tensor) -> Tensor | None:
        """The losses of every head of a pack of N members at once: ``logits [S, B, N, C]``,
        ``targets [B, N]`` -> ``[S, N]`` (``adaptive_weights.packing``). Only for an objective whose
        loss at an exit depends on that exit's logits alone, so a member's losses are the entries of
        its own exits; the default None makes the pack call the objective once per member, on that
        member's exits."""
        return None


OBJECTIVES: Registry[type[Objective]] = plugin_registry(
    "objective", ENTRY_POINT_GROUP, ("adaptive_weights.objectives.builtin",), Objective)

#: class decorator: ``@register_objective("name")`` registers an `Objective` subclass
register_objective = class_decorator(OBJECTIVES)


def get_objective_class(name: str) -> type[Objective]:
    """The class registered as `name`; an unknown name raises RefusedError listing the registered ones."""
    return lookup(OBJECTIVES, name)


def list_objectives(pattern: str = "*") -> list[str]:
    """Registered objective names matching the shell-style `pattern`, naturally sorted."""
    return OBJECTIVES.list(pattern)


def create_objective(name: str, *, label_smoothing: float = 0.0, **hparams: Any) -> Objective:
    """Build objective `name` with validated hyper-parameters (``label_smoothing``: the run's)."""
    return get_objective_class(name)(label_smoothing=label_smoothing, **hparams)


def describe_objectives(pattern: str = "*") -> str:
    """The listing printed by ``adaptive-weights objectives``."""
    return describe_plugins(OBJECTIVES, pattern)
