"""Deprecated: the old import name `tuning`, installed until adaptive-weights 0.3; it is the package
`adaptive_weights.tuning` itself (the same module objects, see adaptive_weights/_aliases.py)."""

from adaptive_weights._aliases import redirect

redirect(__name__)
