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
      search: grid                    # grid | random | optuna | hyperopt
      num_samples: 1                  # searchers: how many settings to sample
      scheduler: fifo                 # fifo | asha | pbt
      pack: 1                         # runs per Ray trial, trained as one packed network (--pack)
      imports: [my_strategies]        # modules registering plug-ins, imported here and in every worker (--plugin)
      cases:                          # a union of grids: each case's keys replace the file's
        - {scheme.name: const}
        - {scheme.name: sieve, strategy.name: [aann, eg]}

With ``sweep.search: random | optuna | hyperopt`` a key may also be a range, e.g.
``strategy.gamma: {loguniform: [0.01, 0.5]}`` (``uniform``, ``loguniform``, ``randint`` [low, high),
``choice``); random search samples ``num_samples`` settings and runs each over the grid of the
file's lists (seeds, data sets), Optuna and HyperOpt suggest ``num_samples`` trials and read a list
as a categorical choice. A searcher sweeps one strategy.

Each strategy's hyper-parameters start from its ``search_space()`` (the paper's grid), so plugin
strategies get sweeps for free; ``strategy.<hparam>`` keys override an axis for every strategy of
the sweep that declares it, ``sweep.per_strategy`` for one strategy. A key of a tuple type
(``train.lr_milestones: [100, 150]``) is a fixed value; a list of lists is its grid axis.

:func:`expand_sweep` turns the file into the list of concrete trial configs, and validates every
one of them with :meth:`RunConfig.resolve` before Ray starts, so a typo, an empty grid or a value
of the wrong type fails in a second with the key's name rather than in a trial an hour later; a
searcher sweep's ranges are validated at both ends.
"""

from __future__ import annotations

import collections
import itertools
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from adaptive_weights.config import NAMING_PREFIXES
from adaptive_weights.errors import RefusedError

from .baselines import with_opt_baselines

__all__ = ["SweepSpec", "load_sweep", "parse_overrides", "parse_sweep", "expand_sweep", "SEARCHES", "SCHEDULERS", "RANGE_KINDS",
           "is_range", "DEFAULT_MAX_TRIALS", "check_pack_size"]

SEARCHES = ("grid", "random", "optuna", "hyperopt")
SCHEDULERS = ("fifo", "asha", "pbt")
# A range is a one-entry mapping {kind: arguments}; ``randint``'s high end is excluded, as in Ray.
RANGE_KINDS = ("uniform", "loguniform", "randint", "choice")

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# a grid above this many trials is refused before any is expanded (--max-trials raises it): each trial
# is resolved before Ray starts (about a millisecond each) and each is a run
DEFAULT_MAX_TRIALS = 10_000


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: its name, the resolved flat config of every trial (a grid, in grid
    order; empty for a searcher), the axes with more than one value (plus ``strategy.name``), and
    for a searcher its ``space``: dotted key -> a fixed value, a list (grid axis for ``random``, a
    choice for ``optuna``/``hyperopt``) or a range ``{kind: [low, high]}``, all plain JSON."""

    name: str
    trials: list[dict[str, Any]]
    axes: dict[str, list[Any]] = field(default_factory=dict)
    search: str = "grid"
    num_samples: int = 1
    scheduler: str = "fifo"
    space: dict[str, Any] = field(default_factory=dict)
    pack: int = 1               # sweep.pack / --pack: at most this many runs per Ray trial, as one packed network
    imports: tuple[str, ...] = ()  # sweep.imports / --plugin: modules every worker imports before resolving its trial

    @property
    def searched(self) -> list[str]:
        """A searcher's varied keys, in ``space`` order: its ranges and lists of values. Read from
        ``axes``, not from the values' types: a tuple-typed key's fixed value
        (``train.lr_milestones: [1, 2]``) is a list in ``space`` too."""
        return [k for k in self.space if k in self.axes and k != "strategy.name"]

    @property
    def sample_grid(self) -> dict[str, list[Any]]:
        """A random search's searched lists: the grid every sample runs (Optuna and HyperOpt pick
        one value of a list instead, so theirs is empty)."""
        if self.search != "random":
            return {}
        return {k: self.space[k] for k in self.searched if not is_range(self.space[k])}

    def describe(self) -> str:
        """One line: what the sweep runs (``--dry-run`` and the sweep command print it)."""
        if self.search == "grid":
            return f"sweep {self.name}: {len(self.trials)} trials"
        searched = ", ".join(f"{k} ~ {_range_text(self.space[k])}" for k in self.searched)
        per = "x the grid of its lists " if self.sample_grid else ""
        return f"sweep {self.name}: {self.search} search, {self.num_samples} samples {per}over {searched}"



def load_sweep(path: str | Path, *, name: str | None = None,
               overrides: Mapping[str, Any] | None = None, max_trials: int = DEFAULT_MAX_TRIALS) -> SweepSpec:
    """Read and validate a sweep file (see the module docstring); ``name`` overrides ``sweep.name``
    and ``overrides`` (dotted keys, e.g. from ``--data.root /data``) replace the file's values; a
    grid of more than ``max_trials`` trials is refused before any is expanded."""
    from adaptive_weights.config import load_config_file

    data = load_config_file(path)
    for key, value in (overrides or {}).items():
        data = {k: v for k, v in data.items() if k != key and not k.startswith(key + ".")}
        data[key] = value
    return parse_sweep(data, name=name, default_name=Path(path).stem, max_trials=max_trials)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """The train command's ``--key value`` / ``--key=value`` flags (:func:`adaptive_weights.cli.parse_overrides`),
    each value read as YAML, since here a list is a grid axis and ``{uniform: [0.1, 0.3]}`` a range."""
    import yaml

    from adaptive_weights.cli import parse_overrides as flag_texts

    out: dict[str, Any] = {}
    for key, text in flag_texts(args).items():
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise RefusedError(f"--{key}: {text!r} is not a YAML value: {err}") from None
    return out


def parse_sweep(data: Mapping[str, Any], *, name: str | None = None, default_name: str = "sweep",
                max_trials: int = DEFAULT_MAX_TRIALS) -> SweepSpec:
    """Validate a sweep mapping (nested or dotted keys) and expand it into trials (at most
    ``max_trials`` in a grid, all cases together)."""
    from adaptive_weights.config import config_key, flatten

    flat: dict[str, Any] = {}
    for key, value in flatten(data).items():
        key = config_key(key)
        head, _, kind = key.rpartition(".")
        if key.count(".") >= 2 and not key.startswith("sweep.") and kind not in RANGE_KINDS:
            raise RefusedError(f"{head}: {{{kind}: ...}} is not a range; a range is one of "
                             f"{', '.join(RANGE_KINDS)}, e.g. {{loguniform: [0.01, 0.5]}}")
        if kind in RANGE_KINDS and head:  # a range, flattened by the nested form: key.kind -> {kind: ...}
            if head in flat:
                raise RefusedError(f"{head}: give one range ({', '.join(RANGE_KINDS)}), got several")
            key, value = head, {kind: value}
        flat[key] = value
    options = {k[len("sweep."):]: v for k, v in flat.items() if k.startswith("sweep.")}
    keys = {k: v for k, v in flat.items() if not k.startswith("sweep.")}
    sweep_name = name or options.pop("name", None) or default_name
    options.pop("name", None)
    imports = _imports(options.pop("imports", ()))  # before any trial is resolved: they may name its plug-ins
    if not isinstance(sweep_name, str) or not _NAME_RE.fullmatch(sweep_name):  # `$` would pass a final newline
        raise RefusedError(f"sweep.name: {sweep_name!r} must be letters, digits, '.', '_' or '-' (it names a directory)")
    paper_grid = options.pop("paper_grid", True)
    if not isinstance(paper_grid, bool):
        raise RefusedError(f"sweep.paper_grid: expected true or false, got {paper_grid!r}")
    search = _option("search", options.pop("search", "grid"), SEARCHES)
    scheduler = _option("scheduler", options.pop("scheduler", "fifo"), SCHEDULERS)
    pack = check_pack_size(options.pop("pack", 1), "sweep.pack")
    opt_baselines = options.pop("opt_baselines", False)
    if not isinstance(opt_baselines, bool):
        raise RefusedError(f"sweep.opt_baselines: expected true or false (train the OPT baselines of the grid's "
                           f"models as trials of the sweep), got {opt_baselines!r}")
    num_samples = options.pop("num_samples", 1)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise RefusedError(f"sweep.num_samples: expected a positive integer, got {num_samples!r}")
    cases = options.pop("cases", None)
    per_strategy: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        head, _, rest = key.partition(".")
        if head != "per_strategy" or "." not in rest:
            raise RefusedError(f"unknown sweep option 'sweep.{key}'; allowed: sweep.name, sweep.paper_grid, "
                             "sweep.search, sweep.num_samples, sweep.scheduler, sweep.pack, sweep.opt_baselines, sweep.imports, "
                             "sweep.cases, sweep.per_strategy.<strategy>.<hyper-parameter>")
        strategy, _, hparam = rest.partition(".")
        per_strategy.setdefault(strategy, {})[hparam] = value
    if cases is None:
        spec = replace(expand_sweep(keys, name=sweep_name, paper_grid=paper_grid, per_strategy=per_strategy,
                                    search=search, num_samples=num_samples, scheduler=scheduler,
                                    max_trials=max_trials), pack=pack, imports=imports)
        return with_opt_baselines(spec) if opt_baselines else spec
    if search != "grid":
        raise RefusedError(f"sweep.cases: a union of grids needs sweep.search: grid, got {search!r}; "
                           "write one sweep file per searched space")
    specs: list[SweepSpec] = []
    for case in _cases(cases):  # the cases together are limited to max_trials
        specs.append(expand_sweep({**keys, **case}, name=sweep_name, paper_grid=paper_grid,
                                  per_strategy=per_strategy, scheduler=scheduler,
                                  max_trials=max_trials, counted=sum(len(spec.trials) for spec in specs)))
    spec = replace(_union(sweep_name, specs, scheduler), pack=pack, imports=imports)
    return with_opt_baselines(spec) if opt_baselines else spec


def _imports(value: Any) -> tuple[str, ...]:
    """``sweep.imports``: checked, then imported, so the sweep's trials may name their plug-ins."""
    from .plugins import check_module_names, import_plugins

    modules = check_module_names(value)
    import_plugins(modules)
    return modules


def check_pack_size(value: Any, key: str) -> int:
    """``sweep.pack`` / ``--pack``: how many runs one Ray trial trains at most, as one packed network
    (1: every run is its own trial)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RefusedError(f"{key}: expected an integer >= 1 (runs per Ray trial, trained as one packed network; "
                           f"1 trains every run alone), got {value!r}")
    return value


def _cases(cases: Any) -> list[dict[str, Any]]:
    """``sweep.cases``: a non-empty list of mappings of config keys (nested or dotted), each a grid
    of its own over the file's other keys (its keys replace the file's; ``{}`` is the file's grid)."""
    from adaptive_weights.config import flatten

    if not isinstance(cases, list) or not cases or not all(isinstance(c, Mapping) for c in cases):
        raise RefusedError(f"sweep.cases: expected a non-empty list of mappings of config keys, "
                           f"e.g. [{{scheme.name: const}}, {{scheme.name: sieve, strategy.name: [aann, eg]}}]; "
                           f"got {cases!r}")
    out = []
    for i, case in enumerate(cases):
        flat = {str(k).replace("-", "_"): v for k, v in flatten(case).items()}
        bad = next((k for k in flat if k.startswith("sweep.") or k == "name"), None)
        if bad is not None:
            raise RefusedError(f"sweep.cases[{i}]: {bad!r} is a sweep option; a case holds config keys only")
        out.append(flat)
    return out


def _union(name: str, specs: list[SweepSpec], scheduler: str) -> SweepSpec:
    """The trials of several grids in case order; a trial two cases share runs once, and two
    different trials that would share a run name are refused (a case's axis the names do not show)."""
    trials: list[dict[str, Any]] = []
    configs: set[str] = set()  # the trials without their names: a case's name suffixes differ
    axes: dict[str, list[Any]] = {}
    for spec in specs:
        for trial in spec.trials:
            config = _trial_key({k: v for k, v in trial.items() if k != "name"})
            if config not in configs:
                configs.add(config)
                trials.append(trial)
        for key, values in spec.axes.items():
            axes.setdefault(key, [])
            axes[key].extend(v for v in values if v not in axes[key])
    _refuse_shared_names(trials, "sweep.cases: two different trials would both be the run {!r}; give the key "
                                 "that tells them apart as an axis of the file rather than of the cases")
    return SweepSpec(name=name, trials=trials, axes=axes, scheduler=scheduler)


def _refuse_shared_names(trials: list[dict[str, Any]], message: str) -> None:
    """Two different trials must not write the same run directory: ``message.format(name)`` if they would."""
    counts = collections.Counter(t["name"] for t in trials)
    dup = next((n for n, count in counts.items() if count > 1), None)
    if dup is not None:
        raise RefusedError(message.format(dup))


def _trial_key(trial: Mapping[str, Any]) -> str:
    """A trial config as a hashable key (its values are plain JSON), so duplicates are found in
    linear time rather than by comparing every pair of trials."""
    import json

    return json.dumps(trial, sort_keys=True, default=repr)


def _option(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise RefusedError(f"sweep.{key}: got {value!r}; allowed: {', '.join(allowed)}")
    return str(value)


def expand_sweep(
    keys: Mapping[str, Any],
    *,
    name: str,
    paper_grid: bool = True,
    per_strategy: Mapping[str, Mapping[str, Any]] | None = None,
    search: str = "grid",
    num_samples: int = 1,
    scheduler: str = "fifo",
    max_trials: int = DEFAULT_MAX_TRIALS,
    counted: int = 0,
) -> SweepSpec:
    """Expand dotted ``keys`` (lists are axes, ranges are sampled) into resolved trial configs (a
    grid) or a validated search space (a searcher); raises ``RefusedError`` naming the key on an
    unknown key, an empty grid, a range a grid cannot sample or a value of the wrong type, and
    naming the size of a grid of more than ``max_trials`` trials before expanding any (``counted``:
    the trials of the cases before this one, which share the limit)."""
    from adaptive_weights.config import RunConfig
    from adaptive_weights.strategies import get_strategy_class, list_strategies

    per_strategy = {k: dict(v) for k, v in (per_strategy or {}).items()}
    shared: dict[str, Any] = {}
    hparam_keys: dict[str, Any] = {}
    for key, value in keys.items():
        if key == "name":
            raise RefusedError("name: a sweep names its runs itself; use sweep.name to name the sweep")
        if key.startswith("strategy.") and key != "strategy.name":
            hparam_keys[key.split(".", 1)[1]] = value
            continue
        shared[key] = _axis(key, value, _annotation(key), search)
    if is_range(shared.get("strategy.name")):
        raise RefusedError("strategy.name: a list of strategies, not a range")
    _check_plugin_hparams(shared)
    strategy_names = shared.pop("strategy.name", [RunConfig().strategy.name])
    known = list_strategies()
    for key, strategy in [("strategy.name", s) for s in strategy_names] + [(f"sweep.per_strategy.{s}", s)
                                                                           for s in per_strategy]:
        if strategy not in known:
            raise RefusedError(f"{key}: unknown strategy {strategy!r}; registered: {', '.join(known)}")
    unused = sorted(set(per_strategy) - set(strategy_names))
    if unused:
        raise RefusedError(f"sweep.per_strategy.{unused[0]}: {unused[0]!r} is not in strategy.name {strategy_names}")
    if search != "grid" and len(set(strategy_names)) > 1:
        raise RefusedError(f"strategy.name: sweep.search {search!r} samples the hyper-parameters of one strategy, got "
                         f"{list(dict.fromkeys(strategy_names))}; write one sweep file per strategy, or use "
                         "sweep.search: grid")
    if search == "grid" and num_samples != 1:
        raise RefusedError(f"sweep.num_samples: {num_samples} with sweep.search: grid would repeat every trial; "
                         "repeat runs with train.seed values, or sample with sweep.search: random")
    shared["data.root"] = _absolute_roots(shared.get("data.root", [RunConfig().data.root]))

    # each strategy's own grid: paper grid (or defaults), then the shared overrides, then its own
    grids: dict[str, dict[str, Any]] = {}
    claimed: set[str] = set()
    for strategy in dict.fromkeys(strategy_names):
        cls = get_strategy_class(strategy)
        grid = {k: list(v) for k, v in cls.search_space().items()} if paper_grid else {}
        for hparam, value in hparam_keys.items():
            if hparam in cls.hparams:
                grid[hparam] = _axis(f"strategy.{hparam}", value, None, search)
                claimed.add(hparam)
        for hparam, value in per_strategy.get(strategy, {}).items():
            if hparam not in cls.hparams:
                allowed = ", ".join(cls.hparams) or "none"
                raise RefusedError(f"sweep.per_strategy.{strategy}.{hparam}: strategy {strategy!r} has no "
                                 f"hyper-parameter {hparam!r}; allowed: {allowed}")
            grid[hparam] = _axis(f"sweep.per_strategy.{strategy}.{hparam}", value, None, search)
        grids[strategy] = grid
    stray = sorted(set(hparam_keys) - claimed)
    if stray:
        raise RefusedError(f"strategy.{stray[0]}: no strategy of this sweep ({', '.join(dict.fromkeys(strategy_names))}) "
                         f"has a hyper-parameter {stray[0]!r}")
    if search != "grid":
        strategy = strategy_names[0]
        return _search_spec(name, search, num_samples, scheduler, strategy, shared,
                            {f"strategy.{k}": v for k, v in grids[strategy].items()})

    trials: list[dict[str, Any]] = []
    seen: set[str] = set()
    shared_items = list(shared.items())
    size = sum(math.prod(len(v) for v in [*shared.values(), *grids[s].values()]) for s in dict.fromkeys(strategy_names))
    if counted + size > max_trials:
        cases = " (with its cases so far)" if counted else ""
        raise RefusedError(f"sweep {name}: the grid has {counted + size:,} trials{cases}, more than the "
                           f"{max_trials:,} of --max-trials (each trial is validated before Ray starts, and each is "
                           "a run); narrow its axes, or pass a larger --max-trials")
    # axes that the default run name does not show get a suffix, so every trial has its own name
    suffix_keys = [k for k, v in shared_items if len(v) > 1 and not k.startswith(NAMING_PREFIXES)]  # the run name shows those already
    for strategy in dict.fromkeys(strategy_names):
        grid = grids[strategy]
        axes = shared_items + [(f"strategy.{k}", v) for k, v in grid.items()]
        for values in itertools.product(*(v for _, v in axes)):
            flat = {"strategy.name": strategy}
            flat.update({k: v for (k, _), v in zip(axes, values, strict=True)})
            flat = _declared_only(flat)
            trial = _resolve_trial(flat)
            if suffix_keys:  # the name is no validated key: the resolved trial takes it as it is
                suffix = "".join(f"-{k.split('.')[-1]}{_name_part(flat[k])}" for k in suffix_keys)
                trial = {**trial, "name": trial["name"] + suffix}
            if _trial_key(trial) not in seen:  # an objective/gradient axis the trial's plug-in lacks repeats it
                seen.add(_trial_key(trial))
                trials.append(trial)
    _refuse_shared_names(trials, "two trials of the sweep would both be the run {!r}; remove the duplicate values")
    axes_out = {k: v for k, v in shared.items() if len(v) > 1}
    axes_out["strategy.name"] = list(dict.fromkeys(strategy_names))
    return SweepSpec(name=name, trials=trials, axes=axes_out, scheduler=scheduler)


def is_range(value: Any) -> bool:
    """Whether a sweep value is a range ``{kind: arguments}`` rather than a value or an axis."""
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in RANGE_KINDS


def _search_spec(name: str, search: str, num_samples: int, scheduler: str, strategy: str,
                 shared: dict[str, Any], hparams: dict[str, Any]) -> SweepSpec:
    """A searcher's space: one-point axes become fixed values; every value a sample can take is
    resolved once here (each range at both ends), so a sampled trial never fails validation."""
    space: dict[str, Any] = {"strategy.name": strategy}
    searched = []
    for key, axis in list(shared.items()) + list(hparams.items()):
        fixed = isinstance(axis, list) and len(axis) == 1
        space[key] = axis[0] if fixed else axis
        if not fixed:
            searched.append(key)
    if not searched:
        raise RefusedError(f"sweep.search: {search!r} has nothing to search; give a range (e.g. strategy.gamma: "
                         "{loguniform: [0.01, 0.5]}) or a list, or use sweep.search: grid")
    if search == "random" and not any(is_range(space[k]) for k in searched):
        raise RefusedError("sweep.search: random samples ranges and this file has none (its lists are grid axes); "
                         "give a range, e.g. strategy.gamma: {loguniform: [0.01, 0.5]}, or use sweep.search: grid")
    base = {k: _points(v)[0] if k in searched else v for k, v in space.items()}
    _resolve_trial(base)  # a refusal of the fixed keys is theirs, not blamed on a searched key
    for key in searched:
        for point in _points(space[key]):
            try:
                _resolve_trial({**base, key: point})
            except ValueError as err:
                raise RefusedError(f"{key}: {_range_text(space[key])} reaches {point!r}, which a run refuses: {err}") from None
    axes = {k: space[k] for k in searched}
    axes["strategy.name"] = [strategy]
    return SweepSpec(name=name, trials=[], axes=axes, search=search, num_samples=num_samples,
                     scheduler=scheduler, space=space)


def _points(value: Any) -> list[Any]:
    """The values a searched key can take at its ends: every list or choice value, a range's bounds."""
    if isinstance(value, list):
        return value
    kind, args = next(iter(value.items()))
    if kind == "choice":
        return list(args)
    return [args[0], args[1] - 1] if kind == "randint" else list(args)


def _range_text(value: Any) -> str:
    if isinstance(value, list):
        return "{" + ", ".join(map(str, value)) + "}"
    kind, args = next(iter(value.items()))
    return f"{kind}({', '.join(map(str, args))})"


def _absolute_roots(roots: list[Any]) -> list[Any]:
    """A relative ``data.root`` is made absolute here: trial workers run in other directories."""
    return [str(Path(r).expanduser().resolve()) if isinstance(r, str) and "://" not in r else r for r in roots]


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
        raise RefusedError(f"train.eval_splits: a sweep selects on the validation split; got "
                         f"{list(cfg.train.eval_splits)}, add 'val'")
    if cfg.data.val_split == 0:
        raise RefusedError("data.val_split: a sweep selects on the validation split; 0 removes it")


def _plugin_hparam(key: str) -> tuple[str, str] | None:
    """``(section, hparam)`` for an ``objective.<hparam>`` or ``gradient.<hparam>`` key, else None."""
    from adaptive_weights.config import OPEN_SECTIONS

    section, _, sub = key.partition(".")
    if section in OPEN_SECTIONS and section != "strategy" and sub and sub != "name":
        return section, sub
    return None


def _check_plugin_hparams(shared: Mapping[str, list[Any]]) -> None:
    """An ``objective.<hparam>`` / ``gradient.<hparam>`` axis must belong to one of the sweep's plug-ins."""
    from adaptive_weights.config import RunConfig, plugin_class

    for key in shared:
        found = _plugin_hparam(key)
        if found is None:
            continue
        section, hparam = found
        names = shared.get(f"{section}.name", [getattr(RunConfig(), section).name])
        if is_range(names):
            raise RefusedError(f"{section}.name: a list of names, not a range")
        if not any(hparam in plugin_class(section, n).hparams for n in names):
            raise RefusedError(f"{key}: no {section} of this sweep ({', '.join(map(str, names))}) has a "
                             f"hyper-parameter {hparam!r}")


def _declared_only(flat: dict[str, Any]) -> dict[str, Any]:
    """Drop the ``objective.*`` / ``gradient.*`` axes that the trial's own plug-in does not declare
    (a sweep over ``objective.name: [ce, distill]`` with ``objective.alpha`` varies alpha for distill only)."""
    from adaptive_weights.config import RunConfig, plugin_class

    def declared(key: str) -> bool:
        found = _plugin_hparam(key)
        if found is None:
            return True
        section, hparam = found
        return hparam in plugin_class(section, flat.get(f"{section}.name", getattr(RunConfig(), section).name)).hparams

    return {k: v for k, v in flat.items() if declared(k)}


def _annotation(key: str) -> Any:
    """The annotation of a dotted key (``None`` for plug-in hyper-parameters); unknown keys raise."""
    from adaptive_weights.config import _SECTIONS, RunConfig

    if _plugin_hparam(key) is not None:
        return None
    section, _, sub = key.partition(".")
    tp = _SECTIONS.get(section)
    hints = typing.get_type_hints(tp) if tp is not None else {}
    if not sub or sub not in hints or (section == "strategy" and sub == "params"):
        raise RefusedError(f"unknown config key {key!r}; valid keys: {', '.join(RunConfig.valid_keys())}")
    return hints[sub]


def _axis(key: str, value: Any, annotation: Any, search: str = "grid") -> Any:
    """A list is an axis (a list of lists for tuple-typed keys); a scalar is a one-point axis; a
    range ``{kind: args}`` is kept as it is for a searcher. Values are type-checked here so the
    message names the sweep key."""
    from adaptive_weights.config import coerce_value

    is_tuple = annotation is not None and _is_tuple_type(annotation)
    if isinstance(value, Mapping):
        return _range(key, value, annotation, search, is_tuple)
    if isinstance(value, (list, tuple)) and (not is_tuple or all(isinstance(v, (list, tuple)) for v in value)):
        values = list(value)
        if not values:
            raise RefusedError(f"{key}: empty grid; give at least one value")
    else:
        values = [value]
    for v in values:
        _check_value(key, v, annotation, coerce_value)
    return values


def _check_value(key: str, v: Any, annotation: Any, coerce_value: Any) -> None:
    if annotation is not None:
        coerce_value(key, v, annotation)
    elif isinstance(v, (list, tuple, Mapping)) or v is None:
        raise RefusedError(f"{key}: expected a number or a string, got {v!r}")


def _range(key: str, value: Mapping[str, Any], annotation: Any, search: str, is_tuple: bool) -> dict[str, Any]:
    """Validate a range's form (its values are resolved against the config later)."""
    from adaptive_weights.config import coerce_value

    kinds = ", ".join(RANGE_KINDS)
    if not is_range(value):
        raise RefusedError(f"{key}: expected a value, a list of values or a range {{kind: [low, high]}} with kind one "
                         f"of {kinds}; got {dict(value)!r}")
    if search == "grid":
        raise RefusedError(f"{key}: the range {dict(value)!r} needs a searcher (sweep.search: random, optuna or "
                         "hyperopt); a grid takes a list of values")
    if is_tuple:
        raise RefusedError(f"{key}: a tuple-valued key takes values or a list of them, not a range")
    kind, args = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(args, (list, tuple)) or not args:
            raise RefusedError(f"{key}: choice needs a non-empty list of values, got {args!r}")
        for v in args:
            _check_value(key, v, annotation, coerce_value)
        return {kind: list(args)}
    numbers = isinstance(args, (list, tuple)) and len(args) == 2 and all(
        isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    if not numbers or not args[0] < args[1]:
        raise RefusedError(f"{key}: {kind} needs [low, high] with low < high, got {args!r}")
    if kind == "loguniform" and args[0] <= 0:
        raise RefusedError(f"{key}: loguniform needs low > 0, got {args!r}")
    if kind == "randint" and not all(float(a).is_integer() for a in args):
        raise RefusedError(f"{key}: randint needs integer bounds [low, high), got {args!r}")
    if annotation is not None:
        base = {a for a in typing.get_args(annotation) if a is not type(None)} or {annotation}
        if not base <= {int, float} or (kind != "randint" and int in base):
            wanted = "randint or choice" if int in base else "choice"
            raise RefusedError(f"{key}: {kind} samples {'floats' if kind != 'randint' else 'integers'}, but the key "
                             f"holds {'/'.join(t.__name__ for t in base)}; use {wanted}")
    return {kind: [int(a) for a in args] if kind == "randint" else [float(a) for a in args]}


def _is_tuple_type(tp: Any) -> bool:
    if typing.get_origin(tp) is tuple:
        return True
    return any(typing.get_origin(a) is tuple for a in typing.get_args(tp))
