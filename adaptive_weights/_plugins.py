"""What objectives and gradient rules share: a base class with declared hyper-parameters, and the
registry plumbing (decorator, listing) on top of the one generic `Registry`.

Strategies have their own richer base (`adaptive_weights.strategies.Strategy`); these two kinds are
stateless functions of the step's tensors with validated keyword arguments, so the base is small. Their
hyper-parameters are the strategies' `HParam`s: one declaration gives the default, the allowed
range or choices, the grid a sweep starts from, and the listing line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from .errors import RefusedError
from .registry import Registry
from .strategies._hparams import HParam, describe_hparams, grid_of, inherited_names, resolve_hparams

__all__ = ["Plugin", "describe_plugins", "lookup", "plugin_registry"]

class Plugin:
    """A named plug-in whose keyword arguments are declared `HParam`s (validated at construction)."""

    kind: ClassVar[str] = "plug-in"
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    hparams: ClassVar[dict[str, HParam]] = {}

    def __init__(self, **hparams: Any) -> None:
        self._hparams = self.validate_hparams(hparams)
        for key, value in self._hparams.items():
            setattr(self, key, value)

    @classmethod
    def validate_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Full resolved hyper-parameters; an unknown key or a bad value raises RefusedError naming it."""
        try:
            return resolve_hparams(f"{cls.kind} {cls.name or cls.__name__!r}", cls.hparams, hparams)
        except ValueError as err:
            raise RefusedError(str(err)) from None

    @classmethod
    def search_space(cls) -> dict[str, list]:
        """The grid a sweep starts from (hyper-parameters that declare one)."""
        return grid_of(cls.hparams)

    def spec(self) -> dict[str, Any]:
        """`{"name": ..., **hparams}`: enough to rebuild the object."""
        return {"name": self.name, **self._hparams}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hparams.items())
        return f"{type(self).__name__}({args})"


def plugin_registry(kind: str, group: str, builtin_modules: Iterable[str], base: type[Plugin]) -> Registry:
    """A registry of `base` subclasses; registering names the class."""

    def check(name: str, obj: Any) -> None:
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise ValueError(f"{kind} {name!r} must be a subclass of {base.__module__}.{base.__qualname__}, got {obj!r}")
        # a hyper-parameter named like a method or class attribute of the library's bases
        # (backward, setup, kind) would replace it
        clash = sorted(set(obj.hparams) & inherited_names(obj, "adaptive_weights."))
        if clash:
            raise ValueError(f"{kind} {name!r}: hyper-parameter name(s) {clash} shadow attributes of "
                             f"{base.__qualname__}")
        own = obj.__dict__.get("name")
        if own and own != name:
            raise ValueError(f"{kind} class {obj.__qualname__} is named {own!r}, cannot register it as {name!r}")
        obj.name = name

    return Registry(kind, group=group, builtin_modules=builtin_modules, check=check)


def describe_plugins(registry: Registry, pattern: str = "*") -> str:
    """The listing of `adaptive-weights objectives` / `gradients`: name, description, hyper-parameters."""
    lines: list[str] = []
    for entry in registry.entries(pattern):
        lines.append(f"{entry.name}  {entry.description}".rstrip())
        if entry.origin.startswith("entry point"):
            lines.append(f"    from {entry.origin}")
        lines += describe_hparams(entry.obj.hparams)
    return "\n".join(lines)


def lookup(registry: Registry, name: str) -> Any:
    """`registry.get(name)`, with an unknown name refused as a RefusedError (the message lists the names)."""
    try:
        return registry.get(name)
    except ValueError as err:
        raise RefusedError(str(err)) from None
