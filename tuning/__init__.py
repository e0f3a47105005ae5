"""Ray Tune sweeps: sweep files, the trainable, the launcher, and the paper's selection rule.

Importing this package imports neither Ray nor torch; Ray is imported when a sweep starts
(:func:`run_sweep`), after the loopback setting is in place.

Public API: :func:`load_sweep` / :func:`parse_sweep` (sweep file -> :class:`SweepSpec`: validated
trial configs or a searcher's space), :func:`run_sweep` (Ray Tune, in-process or on a cluster;
``--resume`` rebuilt from plain JSON, :mod:`adaptive_weights.tuning.sweepdir`; failed trials raise
:class:`SweepFailedError`), :func:`write_sweep_report`
(selection + report), :func:`select_settings` / :func:`rank_first_common` (the rule),
:func:`train_trial` (the trainable), :func:`run_demo_sweep` (``make demo``), :func:`cli_main`
(``adaptive-weights sweep``). Packed sweeps (``sweep.pack`` / ``--pack``, one Ray trial per pack of
runs): :mod:`adaptive_weights.tuning.packsweep` and :mod:`adaptive_weights.tuning.pack_trial`.
"""

from __future__ import annotations

# Imported as the deprecated `tuning` (Python runs from the repository root, where this folder is on
# sys.path): the package under its new name takes this one's place, its files never load twice.
if __name__ != "adaptive_weights.tuning":
    from adaptive_weights._aliases import redirect

    redirect(__name__)

from typing import Any

__all__ = [
    "SweepSpec", "load_sweep", "parse_sweep", "expand_sweep",
    "run_sweep", "write_sweep_report", "cli_main", "SweepOutcome", "SweepFailedError",
    "rank_first_common", "select_settings", "score_settings",
    "train_trial", "run_demo_sweep",
]

_LAZY = {
    "SweepSpec": "sweepfile", "load_sweep": "sweepfile", "parse_sweep": "sweepfile", "expand_sweep": "sweepfile",
    "run_sweep": "launcher", "write_sweep_report": "launcher", "cli_main": "cli", "SweepOutcome": "launcher",
    "SweepFailedError": "launcher",
    "rank_first_common": "selection", "select_settings": "selection", "score_settings": "selection",
    "train_trial": "trainable", "run_demo_sweep": "demo",
}


def __getattr__(name: str) -> Any:
    """Lazy re-exports: ``from adaptive_weights.tuning import run_sweep`` loads only what it needs."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
