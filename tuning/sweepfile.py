"""Sweep files: the same dotted config keys as a run, where a list is a grid axis.

A sweep file is a YAML (or JSON) mapping, nested or flat::

    data.name: digits                 # a scalar is a fixed value
    train.seed: [0, 1]                # a list is a grid axis (the seed is an axis like any other)
    strategy.name: [static, aann, eg]
    strategy.gamma: [0.1, 0.3]        # replaces the gamma axis of every strategy that has gamma
    strategy.rho: 0.8                 # fixes rho wherever it exists
    sweep:
      name: demo                      # results/sweeps/demo (default: the file's stem)
      paper_grid: true                # start from each strategy's search_space() (false: defaults)
      per_strategy:                   # axes or values for one strategy only
        eg: {ratio: [1.0, 2.0]}

Each strategy's hyper-parameters start from its ``search_space()`` (the paper's grid), so plugin
strategies get sweeps for free; ``strategy.<hparam>`` keys override an axis for every strategy of
the sweep that declares it, ``sweep.per_strategy`` for one strategy. A key of a tuple type
(``train.lr_milestones: [100, 150]``) is a fixed value; a list of lists is its grid axis.

:func:`expand_sweep` turns the file into the list of concrete trial configs, and validates every
one of them with :meth:`RunConfig.resolve` before Ray starts, so a typo, an empty grid or a value
of the wrong type fails in a second with the key's name rather than in a trial an hour later.
"""

from __future__ import annotations

import itertools
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptive_weights.config import NAMING_PREFIXES

__all__ = ["SweepSpec", "load_sweep", "parse_sweep", "expand_sweep"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Keys the default run name already shows: the config's NAMING role (``strategy.``: every hyper-parameter).
_NAMED_PREFIXES = NAMING_PREFIXES


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: its name, the resolved flat config of every trial (in grid order) and
    the shared axes with more than one value (plus ``strategy.name``)."""

    name: str
    trials: list[dict[str, Any]]
    axes: dict[str, list[Any]] = field(default_factory=dict)



def load_sweep(path: str | Path, *, name: str | None = None) -> SweepSpec:
    """Read and validate a sweep file (see the module docstring); ``name`` overrides ``sweep.name``."""
    import json

    import yaml

    from adaptive_weights.config import load_config_file

    try:
        data = load_config_file(path)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ValueError(f"sweep file {str(path)!r} is not valid YAML/JSON: {err}") from None
    return parse_sweep(data, name=name, default_name=Path(path).stem)


def parse_sweep(data: Mapping[str, Any], *, name: str | None = None, default_name: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping (nested or dotted keys) and expand it into trials."""
    from adaptive_weights.config import flatten

    flat = {}
    for key, value in flatten(data).items():
        flat[str(key).replace("-", "_")] = value
    options = {k[len("sweep."):]: v for k, v in flat.items() if k.startswith("sweep.")}
    keys = {k: v for k, v in flat.items() if not k.startswith("sweep.")}
    sweep_name = name or options.pop("name", None) or default_name
    options.pop("name", None)
    if not isinstance(sweep_name, str) or not _NAME_RE.match(sweep_name):
        raise ValueError(f"sweep.name: {sweep_name!r} must be letters, digits, '.', '_' or '-' (it names a directory)")
    paper_grid = options.pop("paper_grid", True)
    if not isinstance(paper_grid, bool):
        raise ValueError(f"sweep.paper_grid: expected true or false, got {paper_grid!r}")
    per_strategy: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        head, _, rest = key.partition(".")
        if head != "per_strategy" or "." not in rest:
            raise ValueError(f"unknown sweep option 'sweep.{key}'; allowed: sweep.name, sweep.paper_grid, "
                             "sweep.per_strategy.<strategy>.<hyper-parameter>")
        strategy, _, hparam = rest.partition(".")
        per_strategy.setdefault(strategy, {})[hparam] = value
    return expand_sweep(keys, name=sweep_name, paper_grid=paper_grid, per_strategy=per_strategy)


def expand_sweep(
    keys: Mapping[str, Any],
    *,
    name: str,
    paper_grid: bool = True,
    per_strategy: Mapping[str, Mapping[str, Any]] | None = None,
) -> SweepSpec:
    """Expand dotted ``keys`` (lists are axes) into resolved trial configs; raises ``ValueError``
    naming the key on an unknown key, an empty grid or a value of the wrong type."""
    from adaptive_weights.config import RunConfig
    from strategies import get_strategy_class, list_strategies

    per_strategy = {k: dict(v) for k, v in (per_strategy or {}).items()}
    shared: dict[str, list[Any]] = {}
    hparam_keys: dict[str, Any] = {}
    for key, value in keys.items():
        if key == "name":
            raise ValueError("name: a sweep names its runs itself; use sweep.name to name the sweep")
        if key.startswith("strategy.") and key != "strategy.name":
            hparam_keys[key.split(".", 1)[1]] = value
            continue
        shared[key] = _axis(key, value, _annotation(key))
    strategy_names = shared.pop("strategy.name", [RunConfig().strategy.name])
    known = list_strategies()
    for strategy in list(strategy_names) + list(per_strategy):
        if strategy not in known:
            raise ValueError(f"strategy.name: unknown strategy {strategy!r}; registered: {', '.join(known)}")
    unused = sorted(set(per_strategy) - set(strategy_names))
    if unused:
        raise ValueError(f"sweep.per_strategy.{unused[0]}: {unused[0]!r} is not in strategy.name {strategy_names}")

    # each strategy's own grid: paper grid (or defaults), then the shared overrides, then its own
    grids: dict[str, dict[str, list[Any]]] = {}
    claimed: set[str] = set()
    for strategy in dict.fromkeys(strategy_names):
        cls = get_strategy_class(strategy)
        grid = {k: list(v) for k, v in cls.search_space().items()} if paper_grid else {}
        for hparam, value in hparam_keys.items():
            if hparam in cls.hparams:
                grid[hparam] = _axis(f"strategy.{hparam}", value, None)
                claimed.add(hparam)
        for hparam, value in per_strategy.get(strategy, {}).items():
            if hparam not in cls.hparams:
                allowed = ", ".join(cls.hparams) or "none"
                raise ValueError(f"sweep.per_strategy.{strategy}.{hparam}: strategy {strategy!r} has no "
                                 f"hyper-parameter {hparam!r}; allowed: {allowed}")
            grid[hparam] = _axis(f"sweep.per_strategy.{strategy}.{hparam}", value, None)
        grids[strategy] = grid
    stray = sorted(set(hparam_keys) - claimed)
    if stray:
        raise ValueError(f"strategy.{stray[0]}: no strategy of this sweep ({', '.join(dict.fromkeys(strategy_names))}) "
                         f"has a hyper-parameter {stray[0]!r}")

    trials: list[dict[str, Any]] = []
    shared_items = list(shared.items())
    # axes that the default run name does not show get a suffix, so every trial has its own name
    suffix_keys = [k for k, v in shared_items if len(v) > 1 and not k.startswith(_NAMED_PREFIXES)]
    for strategy in dict.fromkeys(strategy_names):
        grid = grids[strategy]
        axes = shared_items + [(f"strategy.{k}", v) for k, v in grid.items()]
        for values in itertools.product(*(v for _, v in axes)):
            flat = {"strategy.name": strategy}
            flat.update({k: v for (k, _), v in zip(axes, values, strict=True)})
            trial = _resolve_trial(flat)
            if suffix_keys:
                suffix = "".join(f"-{k.split('.')[-1]}{_name_part(flat[k])}" for k in suffix_keys)
                trial = _resolve_trial({**flat, "name": trial["name"] + suffix})
            trials.append(trial)
    names = [t["name"] for t in trials]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"two trials of the sweep would both be the run {dup!r}; remove the duplicate values")
    axes_out = {k: v for k, v in shared.items() if len(v) > 1}
    axes_out["strategy.name"] = list(dict.fromkeys(strategy_names))
    return SweepSpec(name=name, trials=trials, axes=axes_out)


def _name_part(value: Any) -> str:
    text = "_".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return re.sub(r"[^A-Za-z0-9._]+", "_", text)


def _resolve_trial(flat: dict[str, Any]) -> dict[str, Any]:
    from adaptive_weights.config import RunConfig

    cfg = RunConfig.from_flat(flat).resolve()
    _require_validation_split(cfg)
    return cfg.to_flat()


def _require_validation_split(cfg: Any) -> None:
    """Selection ranks validation errors: a sweep without a validation split cannot choose."""
    if "val" not in cfg.train.eval_splits:
        raise ValueError(f"train.eval_splits: a sweep selects on the validation split; got "
                         f"{list(cfg.train.eval_splits)}, add 'val'")
    if cfg.data.val_split == 0:
        raise ValueError("data.val_split: a sweep selects on the validation split; 0 removes it")


def _annotation(key: str) -> Any:
    """The annotation of a dotted key (``None`` for ``strategy.*``); unknown keys raise."""
    from adaptive_weights.config import _SECTIONS, RunConfig

    section, _, sub = key.partition(".")
    tp = _SECTIONS.get(section)
    hints = typing.get_type_hints(tp) if tp is not None else {}
    if not sub or sub not in hints or (section == "strategy" and sub == "params"):
        raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(RunConfig.valid_keys())}")
    return hints[sub]


def _axis(key: str, value: Any, annotation: Any) -> list[Any]:
    """A list is an axis (a list of lists for tuple-typed keys); a scalar is a one-point axis.
    Values are type-checked here so the message names the sweep key."""
    from adaptive_weights.config import coerce_value

    is_tuple = annotation is not None and _is_tuple_type(annotation)
    if isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a value or a list of values, got a mapping {dict(value)!r}")
    if isinstance(value, (list, tuple)) and (not is_tuple or all(isinstance(v, (list, tuple)) for v in value)):
        values = list(value)
        if not values:
            raise ValueError(f"{key}: empty grid; give at least one value")
    else:
        values = [value]
    for v in values:
        if annotation is not None:
            coerce_value(key, v, annotation)
        elif isinstance(v, (list, tuple, Mapping)) or v is None:
            raise ValueError(f"{key}: expected a number or a string, got {v!r}")
    return values


def _is_tuple_type(tp: Any) -> bool:
    if typing.get_origin(tp) is tuple:
        return True
    return any(typing.get_origin(a) is tuple for a in typing.get_args(tp))

