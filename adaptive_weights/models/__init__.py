"""Anytime ResNets with exact per-exit MACs and budgeted anytime inference (spec 4.1-4.3)."""

from ._base import AnytimeNet, exit_positions
from ._registry import MODELS, count_units, create_model, list_models, model_class, register_model
from .imagenet import IMAGENET_DEPTHS, AnytimeImageNetResNet
from .resnet import AnytimeResNet

__all__ = [
    "IMAGENET_DEPTHS",
    "MODELS",
    "AnytimeImageNetResNet",
    "AnytimeNet",
    "AnytimeResNet",
    "count_units",
    "create_model",
    "exit_positions",
    "list_models",
    "model_class",
    "register_model",
]
