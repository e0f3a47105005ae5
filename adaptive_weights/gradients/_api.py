"""The gradient-rule interface and registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor, nn

from .._plugins import Plugin, describe_plugins, lookup, plugin_registry
from ..registry import Registry, class_decorator

__all__ = ["ENTRY_POINT_GROUP", "GRADIENT_RULES", "GradientRule", "create_gradient_rule",
           "describe_gradient_rules", "get_gradient_rule_class", "list_gradient_rules", "register_gradient_rule"]

ENTRY_POINT_GROUP = "adaptive_weights.gradients"


class GradientRule(Plugin):
    """Turns the step's weights and per-exit losses into parameter gradients.

    Contract: built once per run with the model (an `AnytimeNet`); ``forward_fn()`` is the callable
    the trainer runs (and may compile) to get the logits ``[K, B, C]`` (default: the model itself);
    ``backward(weights, losses)`` fills the ``.grad`` of the model's parameters (they are ``None`` or
    zero on entry) and returns the weighted loss ``sum_k w_k L_k`` (for logging only). A rule keeps
    no state that changes during training; a random one draws from torch's global generator, which
    the checkpoint restores, so resuming stays exact.
    """

    kind = "gradient rule"
    #: whether the rule works under DistributedDataParallel (one plain backward through the wrapped model)
    data_parallel: ClassVar[bool] = False
    #: whether the forward may be compiled (``train.compile``); TorchJD's vmap cannot differentiate compiled outputs
    compilable: ClassVar[bool] = True

    def __init__(self, model: nn.Module, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.model = model
        self.setup()

    def setup(self) -> None:
        """Prepare what depends on the model (called once by `__init__`)."""

    def forward_fn(self) -> Callable[[Tensor], Tensor]:
        """The forward pass the trainer runs: images -> logits ``[K, B, C]``."""
        return self.model

    def backward(self, weights: Tensor, losses: Tensor) -> Tensor:
        raise NotImplementedError


GRADIENT_RULES: Registry[type[GradientRule]] = plugin_registry(
    "gradient rule", ENTRY_POINT_GROUP, ("adaptive_weights.gradients.builtin",), GradientRule)

#: class decorator: ``@register_gradient_rule("name")`` registers a `GradientRule` subclass
register_gradient_rule = class_decorator(GRADIENT_RULES)


def get_gradient_rule_class(name: str) -> type[GradientRule]:
    """The class registered as `name`; an unknown name raises RefusedError listing the registered ones."""
    return lookup(GRADIENT_RULES, name)


def list_gradient_rules(pattern: str = "*") -> list[str]:
    """Registered gradient-rule names matching the shell-style `pattern`, naturally sorted."""
    return GRADIENT_RULES.list(pattern)


def create_gradient_rule(name: str, model: nn.Module, **hparams: Any) -> GradientRule:
    """Build gradient rule `name` for `model` with validated hyper-parameters."""
    return get_gradient_rule_class(name)(model, **hparams)


def describe_gradient_rules(pattern: str = "*") -> str:
    """The listing printed by ``adaptive-weights gradients``."""
    return describe_plugins(GRADIENT_RULES, pattern)
