"""The built-in gradient rules. Importing this module registers them (no entry-point metadata needed)."""

from ._equilibrium import GradientEquilibriumRule
from ._sum import SumRule
from ._torchjd import CAGradRule, MGDARule, PCGradRule, UPGradRule

__all__ = ["CAGradRule", "GradientEquilibriumRule", "MGDARule", "PCGradRule", "SumRule", "UPGradRule"]
