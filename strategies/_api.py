"""The strategy registry and the functions the rest of the library calls by name."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

from adaptive_weights.registry import Registry, class_decorator

from ._base import FEEDBACK, Strategy
from ._hparams import describe_hparams, inherited_names

__all__ = [
    "ENTRY_POINT_GROUP",
    "STRATEGIES",
    "create_strategy",
    "describe_strategies",
    "get_strategy_class",
    "list_strategies",
    "register_strategy",
    "validate_hparams",
]

ENTRY_POINT_GROUP = "adaptive_weights.strategies"
# the modules of the library's own strategies (their classes are the bases a plug-in derives from)
_OWN = "adaptive_weights.strategies."

S = TypeVar("S", bound=type[Strategy])


@functools.cache
def _assigned_by(cls: type[Strategy]) -> frozenset[str]:
    """The attribute names that building `cls` assigns besides its own hyper-parameters (`base`,
    `K`, `epoch`, `steps`, `sel`, `draws`, `drawn_p`, `reward_sum`, `log_w`, ...), recorded while one
    instance is built on a tiny base, so the list cannot fall behind the code."""
    assigned: list[str] = []

    def record(self: Strategy, key: str, value: Any) -> None:
        assigned.append(key)
        super(recorder, self).__setattr__(key, value)

    recorder = type(f"_Recording{cls.__name__}", (cls,), {"__setattr__": record})
    try:
        recorder(torch.ones(4))
    except NotImplementedError:  # an abstract base: its concrete subclasses are built instead
        return frozenset()
    counts = Counter(assigned)
    return frozenset(key for key, n in counts.items() if key not in cls.hparams or n > 1)


def _reserved_names(cls: type[Strategy]) -> frozenset[str]:
    """Names a hyper-parameter of `cls` must not take: those that building any of the library's
    classes it derives from assigns, and their methods and class attributes (`draw`, `learn`; `cls`
    itself is not built: its module may still be loading; a name its own `setup` uses is its
    author's to keep apart). `warmup_epochs` is the one class attribute a hyper-parameter may set."""
    ancestors = [c for c in cls.__mro__[1:] if issubclass(c, Strategy) and c.__module__.startswith(_OWN)]
    declared = inherited_names(cls, _OWN) - {"warmup_epochs"}
    return frozenset(declared).union(*(_assigned_by(c) for c in ancestors))


def _check_strategy_class(name: str, obj: Any) -> None:
    """Reject what would break later: not a Strategy subclass, bad feedback, shadowing hparams."""
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise ValueError(f"strategy {name!r} must be a subclass of adaptive_weights.strategies.Strategy, got {obj!r}")
    if obj.feedback not in FEEDBACK:
        raise ValueError(f"strategy {name!r}: feedback {obj.feedback!r} is not one of {FEEDBACK}")
    reserved = _reserved_names(obj)
    clash = sorted(k for k in obj.hparams if k in reserved)
    if clash:
        raise ValueError(f"strategy {name!r}: hyper-parameter name(s) {clash} shadow Strategy attributes")
    own = obj.__dict__.get("name")  # a subclass of a registered strategy may take a new name
    if own and own != name:
        raise ValueError(f"strategy class {obj.__qualname__} is named {own!r}, cannot register it as {name!r}")
    obj.name = name


STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy", group=ENTRY_POINT_GROUP, builtin_modules=("adaptive_weights.strategies.builtin",),
    check=_check_strategy_class,
)


#: class decorator: ``@register_strategy(name)`` registers a `Strategy` subclass (a duplicate name raises ValueError)
register_strategy: Callable[..., Callable[[S], S]] = class_decorator(STRATEGIES)


def get_strategy_class(name: str) -> type[Strategy]:
    """The class registered as `name` (built-in or plugin); unknown names raise ValueError listing them."""
    return STRATEGIES.get(name)


def list_strategies(pattern: str = "*") -> list[str]:
    """Registered strategy names matching the shell-style `pattern`, naturally sorted."""
    return STRATEGIES.list(pattern)


def validate_hparams(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """The full resolved hyper-parameters of strategy `name`; bad keys or values raise ValueError."""
    return get_strategy_class(name).validate_hparams(dict(hparams))


def create_strategy(name: str, base_weights: Tensor, *, seed: int = 0, **hparams: Any) -> Strategy:
    """Build strategy `name` over the scheme's `base_weights` [K]; its state lives on their device."""
    return get_strategy_class(name)(base_weights, seed=seed, **hparams)


def describe_strategies(pattern: str = "*") -> str:
    """Human-readable listing for `adaptive-weights strategies`: name, feedback, description, hparams."""
    lines: list[str] = []
    for entry in STRATEGIES.entries(pattern):
        cls = entry.obj
        lines.append(f"{entry.name}  [feedback: {cls.feedback}]  {entry.description}".rstrip())
        if entry.origin.startswith("entry point") and not cls.__module__.startswith(_OWN):
            lines.append(f"    from {entry.origin}")
        lines += describe_hparams(cls.hparams)
    return "\n".join(lines)
