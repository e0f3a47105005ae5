"""adaptive-weights: anytime neural networks, their loss-weighting schemes and strategies.

Importing the package is cheap: the heavy modules (torch models, data, training, Ray) load on
first use of the names below. Its subpackages include ``adaptive_weights.strategies`` and
``adaptive_weights.tuning``; their old top-level names are deprecated aliases (``_aliases.py``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from . import _aliases

__version__ = "0.1.0"

_LAZY = {
    "RunConfig": "adaptive_weights.config",
    "ModelConfig": "adaptive_weights.config",
    "DataConfig": "adaptive_weights.config",
    "SchemeConfig": "adaptive_weights.config",
    "StrategyConfig": "adaptive_weights.config",
    "TrainConfig": "adaptive_weights.config",
    "train": "adaptive_weights.training",
    "load_model": "adaptive_weights.loading",
    "TrainedModel": "adaptive_weights.loading",
    "scheme_weights": "adaptive_weights.schemes",
    "list_schemes": "adaptive_weights.schemes",
    "AnytimeResNet": "adaptive_weights.models",
    "AnytimeImageNetResNet": "adaptive_weights.models",
    "create_model": "adaptive_weights.models",
    "list_models": "adaptive_weights.models",
    "evaluate_exits": "adaptive_weights.evaluate",
    "load_runs": "adaptive_weights.runs",
    "milestone_indices": "adaptive_weights.metrics",
    "relative_increase": "adaptive_weights.metrics",
    "win_rate": "adaptive_weights.metrics",
    "eann_curve": "adaptive_weights.eann",
    "evaluate_budgeted": "adaptive_weights.budgeted",
    "build_report": "adaptive_weights.report",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'adaptive_weights' has no attribute {name!r}")


class _Package(types.ModuleType):
    """The package's module type: an exported name stays the export. Importing a submodule of the
    same name (the deprecated module ``adaptive_weights.train``) sets the module as an attribute of
    the package, which would otherwise replace the function ``train`` from then on."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
_aliases.install()
