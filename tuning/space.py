"""A sweep as Ray Tune sees it: the ``param_space`` of real dotted config keys, the search
algorithm and the scheduler.

A grid's trials need not form one product (each strategy has its own hyper-parameters), so the
grid is ``name: tune.grid_search([...])`` over the trials' run names with every other varying key
looked up from the name (``tune.sample_from``): each trial's config holds its real keys and values,
and Ray's progress table, ``ResultGrid.get_dataframe()`` and its TensorBoard HParams show the keys
that vary. A searcher's space maps a range to its Tune domain (``{loguniform: [a, b]}`` ->
``tune.loguniform(a, b)``) and a list to ``tune.grid_search`` (random search, each sample run over
the whole grid) or ``tune.choice`` (Optuna, HyperOpt).

Ray is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adaptive_weights.errors import RefusedError

from .sweepfile import SCHEDULERS, SweepSpec, is_range

__all__ = ["grid_param_space", "search_param_space", "varying_keys", "search_algorithm", "make_scheduler",
           "pbt_keys", "check_scheduler", "SELECTION_METRIC"]

SELECTION_METRIC = "val/err/mean"
_PBT_NEEDS_KEYS = ("sweep.scheduler: pbt mutates searched keys; give a range or a list of a strategy key "
                   "(e.g. strategy.gamma: {uniform: [0.1, 0.4]}) with sweep.search: random")
# the optional extra that installs each searcher's library
_EXTRAS = {"optuna": ("optuna", "ray.tune.search.optuna", "OptunaSearch"),
           "hyperopt": ("hyperopt", "ray.tune.search.hyperopt", "HyperOptSearch")}


def varying_keys(trials: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys whose values differ between ``trials`` (run names aside), in first-seen order."""
    keys = list(dict.fromkeys(k for t in trials for k in t if k != "name"))
    return [k for k in keys if len({repr(t.get(k)) for t in trials}) > 1]


def grid_param_space(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Explicit trials as a param_space: shared keys as values, the run names as the grid, every
    other varying key a lookup by name (``None`` where a trial's strategy lacks the key)."""
    from ray import tune

    varying = varying_keys(trials)
    by_name = {str(t["name"]): {k: t.get(k) for k in varying} for t in trials}
    space: dict[str, Any] = {k: v for k, v in trials[0].items() if k not in varying and k != "name"}
    space["name"] = tune.grid_search(list(by_name))

    def lookup(resolved: Mapping[str, Any], key: str) -> Any:
        # Ray passes the trial's config, or (depending on the code path) the spec holding it
        config = resolved["config"] if "config" in resolved else resolved
        return by_name[config["name"]][key]

    for key in varying:
        space[key] = tune.sample_from(lambda resolved, key=key: lookup(resolved, key))
    return space


def search_param_space(spec: SweepSpec) -> dict[str, Any]:
    """A searcher's space as Tune domains (see the module docstring)."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, value in spec.space.items():
        if is_range(value):
            kind, args = next(iter(value.items()))
            out[key] = tune.choice(list(args)) if kind == "choice" else getattr(tune, kind)(*args)
        elif key in spec.searched:
            out[key] = tune.grid_search(value) if spec.search == "random" else tune.choice(value)
        else:
            out[key] = value
    return out


def search_algorithm(search: str, *, points: Sequence[Mapping[str, Any]] = (),
                     rewards: Sequence[float] = (), max_concurrent: int | None = None) -> Any:
    """The Tune search algorithm of ``search`` (``None``: Tune's grid/random variant generator).
    ``points`` and ``rewards`` warm-start Optuna with finished trials on a resume."""
    if search == "grid":
        return None
    if search == "random":
        from ray.tune.search import BasicVariantGenerator

        # one sample over every grid point; Tune's max_concurrent_trials does not reach this generator
        return BasicVariantGenerator(constant_grid_search=True, max_concurrent=max_concurrent or 0)
    package, module, cls_name = _EXTRAS[search]
    try:
        import importlib

        importlib.import_module(package)
        cls = getattr(importlib.import_module(module), cls_name)
    except ImportError:
        raise RefusedError(f"sweep.search: {search!r} needs the {package} package: "
                           f"pip install 'adaptive-weights[{search}]'") from None
    kwargs: dict[str, Any] = {"metric": SELECTION_METRIC, "mode": "min"}
    if points and search == "optuna":
        kwargs.update(points_to_evaluate=[dict(p) for p in points], evaluated_rewards=list(rewards))
    return cls(**kwargs)


def check_search_available(search: str) -> None:
    """Refuse a searcher whose library is missing before anything starts (naming the extra)."""
    if search in _EXTRAS:
        import importlib.util

        package = _EXTRAS[search][0]
        if importlib.util.find_spec(package) is None:
            raise RefusedError(f"sweep.search: {search!r} needs the {package} package: "
                               f"pip install 'adaptive-weights[{search}]'")


def make_scheduler(name: str, *, max_epochs: int, mutations: Mapping[str, Any] | None = None) -> Any:
    """``fifo`` (None: every trial to the end, as in the paper), ``asha`` (early stopping on
    ``val/err/mean``, one rung per epoch) or ``pbt`` (population based training: every epoch a poor
    trial continues from a good one's checkpoint with ``mutations`` of its searched keys)."""
    if name == "fifo":
        return None
    if name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(metric=SELECTION_METRIC, mode="min", time_attr="training_iteration",
                             max_t=max_epochs, grace_period=1)
    if name == "pbt":
        if not mutations:
            raise RefusedError(_PBT_NEEDS_KEYS)
        from ray.tune.schedulers import PopulationBasedTraining

        return PopulationBasedTraining(metric=SELECTION_METRIC, mode="min", time_attr="training_iteration",
                                       perturbation_interval=1, hyperparam_mutations=dict(mutations))
    raise RefusedError(f"sweep.scheduler: got {name!r}; allowed: {', '.join(SCHEDULERS)}")


def pbt_keys(spec: SweepSpec) -> list[str]:
    """The strategy keys a PBT scheduler may change: the searched ones (none in a grid)."""
    return [] if spec.search == "grid" else [k for k in spec.searched if k.startswith("strategy.")]


def check_scheduler(spec: SweepSpec) -> None:
    """Refuse, before Ray starts or anything is written, a PBT sweep with nothing to mutate or with
    a searcher (Tune's PBT draws its trials from the random search's generator only)."""
    if spec.scheduler == "pbt" and spec.search in _EXTRAS:
        raise RefusedError(f"sweep.scheduler: pbt with sweep.search: {spec.search!r}: Ray Tune's PBT takes no "
                           "searcher; use sweep.search: random (PBT then mutates the sampled values)")
    if spec.scheduler == "pbt" and not pbt_keys(spec):
        raise RefusedError(_PBT_NEEDS_KEYS)


def pbt_mutations(spec: SweepSpec) -> dict[str, Any]:
    """:func:`pbt_keys`, a range as its Tune domain and a list as the values to pick from (a grid
    axis of the search stays an axis for the start)."""
    keys = pbt_keys(spec)
    if not keys:
        return {}
    domains = search_param_space(spec)
    return {k: (domains[k] if is_range(spec.space[k]) else list(spec.space[k])) for k in keys}
