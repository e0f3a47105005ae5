"""Objectives: what each exit's loss is. One vectorised call turns all exits' logits ``[K, B, C]``
and the labels ``[B]`` into the ``[K]`` per-exit loss vector the strategy weights.

Public API: `create_objective(name, **hparams)`, `register_objective(name)`, `list_objectives()`,
`get_objective_class(name)`, `describe_objectives()` and the base `Objective`. Built-ins: ``ce``
(the default, today's cross-entropy) and ``distill`` (self-distillation). Third-party objectives
are found through the entry-point group `adaptive_weights.objectives`.
"""

from ._api import (
    ENTRY_POINT_GROUP,
    OBJECTIVES,
    Objective,
    create_objective,
    describe_objectives,
    get_objective_class,
    list_objectives,
    register_objective,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "OBJECTIVES",
    "Objective",
    "create_objective",
    "describe_objectives",
    "get_objective_class",
    "list_objectives",
    "register_objective",
]
