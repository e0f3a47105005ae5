"""Model names -> classes: `create_model("resnet", n=9)`, `list_models()` and `register_model`.

The library's one `Registry` (duplicate names refused, close-name hints, natural sort): built-in
architectures register themselves when their module is imported, plugins through the entry-point
group ``adaptive_weights.models`` (an `AnytimeNet` subclass per entry point).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..registry import Registry
from ._base import AnytimeNet

__all__ = ["MODELS", "ENTRY_POINT_GROUP", "register_model", "create_model", "list_models", "count_units",
           "model_class"]

ENTRY_POINT_GROUP = "adaptive_weights.models"
M = TypeVar("M", bound=type[AnytimeNet])


def _check_model_class(name: str, obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, AnytimeNet)):
        raise ValueError(f"model {name!r} must be a subclass of adaptive_weights.models.AnytimeNet, got {obj!r}")


MODELS: Registry[type[AnytimeNet]] = Registry(
    "model", group=ENTRY_POINT_GROUP, check=_check_model_class,
    builtin_modules=("adaptive_weights.models.resnet", "adaptive_weights.models.imagenet"),
)


def register_model(name: str, *, description: str = "") -> Callable[[M], M]:
    """Class decorator: register an `AnytimeNet` subclass as `name` (a duplicate name raises ValueError)."""

    def deco(cls: M) -> M:
        MODELS.register(name, cls, description or ((cls.__doc__ or "").strip().splitlines() or [""])[0])
        return cls

    return deco


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style `pattern`, naturally sorted."""
    return MODELS.list(pattern)


def model_class(arch: str) -> type[AnytimeNet]:
    """The class registered as `arch`; an unknown name raises ValueError with close names."""
    return MODELS.get(arch)


def create_model(arch: str, **kwargs) -> AnytimeNet:
    """Build the model registered as `arch` with its constructor's keyword arguments."""
    return model_class(arch)(**kwargs)


def count_units(arch: str, **kwargs) -> int:
    """L, the residual units of the full `arch` built with `kwargs`, without building it (arguments
    that do not shape the trunk are ignored)."""
    return model_class(arch).count_units(**kwargs)
