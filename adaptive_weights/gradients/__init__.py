"""Gradient rules: how the exits' weighted losses become the parameters' gradients.

A rule sees the model, this step's strategy weights ``[K]`` and the objective's losses ``[K]``; it
fills the parameters' ``.grad`` and returns the weighted loss for logging. It may also supply the
forward pass (gradient equilibrium rescales gradients at the trunk's stage boundaries).

Public API: `create_gradient_rule(name, model, **hparams)`, `register_gradient_rule(name)`,
`list_gradient_rules()`, `get_gradient_rule_class(name)`, `describe_gradient_rules()` and the base
`GradientRule`. Built-ins: ``sum`` (the default: back-propagate the weighted sum), ``ge`` (gradient
equilibrium) and the TorchJD aggregators ``pcgrad``, ``cagrad``, ``upgrad``, ``mgda``. Third-party
rules are found through the entry-point group `adaptive_weights.gradients`.
"""

from ._api import (
    ENTRY_POINT_GROUP,
    GRADIENT_RULES,
    GradientRule,
    create_gradient_rule,
    describe_gradient_rules,
    get_gradient_rule_class,
    list_gradient_rules,
    register_gradient_rule,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "GRADIENT_RULES",
    "GradientRule",
    "create_gradient_rule",
    "describe_gradient_rules",
    "get_gradient_rule_class",
    "list_gradient_rules",
    "register_gradient_rule",
]
