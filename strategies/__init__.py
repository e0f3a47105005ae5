"""Strategies: the rules that decide, step by step, how much each exit's loss counts.

Public API: `create_strategy(name, base_weights, *, seed=0, **hparams)`, `register_strategy(name)`,
`list_strategies(pattern)`, `get_strategy_class(name)`, `validate_hparams(name, hparams)`,
`describe_strategies()`, `capture_check(strategy)` (may a compiled step trust it?), `StrategyGroups`
(a pack's members stepped in batches of one class), and the bases
`Strategy`, `SamplingStrategy`, `RewardLearner`, `HParam`.
Third-party strategies are found through the entry-point group `adaptive_weights.strategies`.
"""

# Imported as the deprecated `strategies` (Python runs from the repository root, where this folder is on
# sys.path): the package under its new name takes this one's place, its files never load twice.
if __name__ != "adaptive_weights.strategies":
    from adaptive_weights._aliases import redirect

    redirect(__name__)

from adaptive_weights.registry import Registry

from ._api import (
    ENTRY_POINT_GROUP,
    STRATEGIES,
    create_strategy,
    describe_strategies,
    get_strategy_class,
    list_strategies,
    register_strategy,
    validate_hparams,
)
from ._base import FEEDBACK, RewardLearner, SamplingStrategy, Strategy, mix_uniform
from ._batched import StrategyGroups
from ._capture import CompiledSteps, capture_check, compile_step
from ._hparams import HParam
from ._rewards import relative_rewards

__all__ = [
    "CompiledSteps",
    "ENTRY_POINT_GROUP",
    "FEEDBACK",
    "STRATEGIES",
    "HParam",
    "Registry",
    "RewardLearner",
    "SamplingStrategy",
    "Strategy",
    "StrategyGroups",
    "capture_check",
    "compile_step",
    "create_strategy",
    "describe_strategies",
    "get_strategy_class",
    "list_strategies",
    "mix_uniform",
    "register_strategy",
    "relative_rewards",
    "validate_hparams",
]
