"""The built-in strategies (the classes named by our own entry points in pyproject.toml).

Importing this module registers them, so they are found even when entry-point metadata is stale.
"""

from ._adaloss import AdaLossStrategy
from ._curricula import RoundRobinStrategy, WarmupStrategy
from ._fixed import AANNStrategy, QuartileStrategy, StaticStrategy, UniformStrategy, quartile_distribution
from ._learners import AVGLStrategy, EGStrategy, RWMStrategy

__all__ = [
    "AANNStrategy",
    "AVGLStrategy",
    "AdaLossStrategy",
    "EGStrategy",
    "QuartileStrategy",
    "RWMStrategy",
    "RoundRobinStrategy",
    "StaticStrategy",
    "UniformStrategy",
    "WarmupStrategy",
    "quartile_distribution",
]
