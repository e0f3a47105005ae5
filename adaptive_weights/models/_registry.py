"""Model names -> classes: `create_model("resnet", n=9)` and `list_models()`."""

from __future__ import annotations

import difflib
import fnmatch

from ._base import AnytimeNet
from .imagenet import AnytimeImageNetResNet
from .resnet import AnytimeResNet

__all__ = ["create_model", "list_models", "count_units"]

_MODELS: dict[str, type[AnytimeNet]] = {
    "resnet": AnytimeResNet,
    "imagenet-resnet": AnytimeImageNetResNet,
}


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style `pattern`, sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


def _model_class(arch: str) -> type[AnytimeNet]:
    cls = _MODELS.get(arch)
    if cls is None:
        close = difflib.get_close_matches(str(arch), list(_MODELS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"model {arch!r} is not known{hint}: choose one of {list_models()}")
    return cls


def create_model(arch: str, **kwargs) -> AnytimeNet:
    """Build the model registered as `arch` with its constructor's keyword arguments."""
    return _model_class(arch)(**kwargs)


def count_units(arch: str, **kwargs) -> int:
    """L, the residual units of the full `arch` built with `kwargs`, without building it (arguments
    that do not shape the trunk are ignored)."""
    return _model_class(arch).count_units(**kwargs)
