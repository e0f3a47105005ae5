"""Declarative hyper-parameters: one `HParam` per keyword argument of a strategy.

Config, CLI and tuning introspect `cls.hparams` instead of parsing signatures, so the default, the
allowed range and the paper's grid live next to each other and are validated in one place. Every
plug-in kind (strategies, objectives, gradient rules) declares its hyper-parameters this way.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HParam", "describe_hparams", "grid_of", "inherited_names", "resolve_hparams"]


@dataclass(frozen=True)
class HParam:
    """One hyper-parameter: default, Python type, inclusive bounds, the paper's grid and a doc line.

    `low_open=True` excludes `low` itself (e.g. a learning rate that must be strictly positive).
    A `str` hyper-parameter is a choice: `choices` lists the allowed values (bounds do not apply).
    """

    default: Any
    type: type = float
    low: float | None = None
    high: float | None = None
    grid: tuple = ()
    doc: str = ""
    low_open: bool = False
    choices: tuple[str, ...] = ()

    def range_text(self) -> str:
        """The allowed range as `[0, 1]`, `(0, 1]` or `[0, inf)`; a choice as `{a|b}`."""
        if self.type is str:
            return "{" + "|".join(self.choices) + "}"
        lo = "-inf" if self.low is None else _fmt(self.low)
        hi = "inf" if self.high is None else _fmt(self.high)
        left = "(" if self.low is None or self.low_open else "["
        right = ")" if self.high is None else "]"
        return f"{left}{lo}, {hi}{right}"

    def check(self, key: str, value: Any, owner: str) -> Any:
        """Return `value` converted to `self.type`, or raise ValueError naming key, value and range.

        Text (a CLI flag, a YAML string) is read as a number first, so this is the one place that
        converts and checks a strategy's hyper-parameter. A `str` hyper-parameter must be one of
        its `choices`."""
        if self.type is str:
            if value not in self.choices:
                raise ValueError(f"{owner}: hyper-parameter {key}={value!r} is not allowed; choose one of "
                                 f"{', '.join(self.choices)}")
            return value
        if isinstance(value, str):
            try:
                value = float(value.strip()) if self.type is float else _int_text(value)
            except ValueError:
                raise ValueError(
                    f"{owner}: hyper-parameter {key}={value!r} must be a {self.type.__name__} in {self.range_text()}"
                ) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(
                f"{owner}: hyper-parameter {key}={value!r} must be a {self.type.__name__} in {self.range_text()}"
            )
        given = value
        if self.type is int:
            if not math.isfinite(value) or float(value) != int(value):
                raise ValueError(f"{owner}: hyper-parameter {key}={value!r} must be an integer in {self.range_text()}")
            value = int(value)
        else:
            value = float(value)
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and value > self.high
        if not math.isfinite(value) or too_low or too_high:
            raise ValueError(f"{owner}: hyper-parameter {key}={given!r} is out of range; allowed: {self.range_text()}")
        return value


def _int_text(text: str) -> int | float:
    """``"3"`` -> 3, ``"3.0"`` -> 3.0 (the integer check then accepts it), ``"3.5"`` -> 3.5 (refused)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def _fmt(x: float) -> str:
    return f"{x:g}"


def resolve_hparams(owner: str, declared: Mapping[str, HParam], given: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `given` over the declared defaults; unknown keys and bad values raise ValueError."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        allowed = ", ".join(sorted(declared)) or "none"
        close = [m for u in unknown for m in difflib.get_close_matches(u, list(declared), n=1, cutoff=0.7)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"{owner}: unknown hyper-parameter(s) {', '.join(unknown)}{hint}; allowed: {allowed}")
    return {key: hp.check(key, given.get(key, hp.default), owner) for key, hp in declared.items()}


def inherited_names(cls: type, package: str) -> set[str]:
    """The methods and class attributes `cls` inherits from the classes of `package` (dunders
    aside): a hyper-parameter becomes an instance attribute, so one named like these would replace
    them. Every plug-in kind refuses such names at registration."""
    return {k for c in cls.__mro__[1:] if c.__module__.startswith(package) for k in vars(c) if not k.startswith("__")}


def grid_of(declared: Mapping[str, HParam]) -> dict[str, list]:
    """The paper's search grid: every hyper-parameter that has one."""
    return {key: list(hp.grid) for key, hp in declared.items() if hp.grid}



def describe_hparams(declared: Mapping[str, HParam], indent: str = "    ") -> list[str]:
    """One listing line per hyper-parameter (type, default, range, grid, doc), as the listing commands print."""
    if not declared:
        return [f"{indent}(no hyper-parameters)"]
    lines = []
    for key, hp in declared.items():
        grid = f"  grid {list(hp.grid)}" if hp.grid else ""
        lines.append(
            f"{indent}{key:<14} {hp.type.__name__:<5} default {hp.default!s:<6} "
            f"{'choices' if hp.type is str else 'range'} {hp.range_text()}{grid}"
            + (f"  - {hp.doc}" if hp.doc else "")
        )
    return lines
