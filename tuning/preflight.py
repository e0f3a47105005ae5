"""What a sweep checks in the driver before Ray starts, beyond its file: the data its trials read,
and the plug-ins its workers need (:mod:`adaptive_weights.tuning.plugins`).

Without these checks a ``data.root`` pointing nowhere, or a strategy registered only in the
driver, passed ``--dry-run`` and then failed in every trial, each with Ray's error block. Here
they fail once, in a second or two, as one ``error:`` line; ``--dry-run`` runs the same checks.

Nothing here imports Ray.
"""

from __future__ import annotations

import itertools
from typing import Any

from .plugins import check_in_fresh_process, sweep_imports
from .sweepfile import SweepSpec

__all__ = ["preflight", "check_sweep_data", "data_configs"]


def preflight(spec: SweepSpec, *, address: str | None = None) -> tuple[str, ...]:
    """Check the sweep's data and plug-ins before anything starts; returns the modules every
    worker imports (``sweep.imports`` and the plug-in modules carried from this process). With an
    ``address`` the trials run on the cluster's nodes, whose data this machine cannot see: the data
    is left to them."""
    if address is None:
        check_sweep_data(spec)
    imports = sweep_imports(spec)
    check_in_fresh_process(spec, imports)
    return imports


def check_sweep_data(spec: SweepSpec) -> None:
    """:func:`adaptive_weights.data.check_data` for every distinct data config of the sweep."""
    from adaptive_weights.data import check_data

    for cfg in data_configs(spec):
        check_data(cfg)


def data_configs(spec: SweepSpec) -> list[Any]:
    """The distinct ``DataConfig``s of a grid's trials, or of every value a searcher's data keys
    list (a range's low end: which files a set needs does not depend on a number)."""
    from adaptive_weights.config import RunConfig

    if spec.search == "grid":
        flats = [{k: v for k, v in t.items() if k.startswith("data.")} for t in spec.trials]
    else:
        from .sweepfile import _points

        axes = {k: _points(v) if k in spec.searched else [v] for k, v in spec.space.items() if k.startswith("data.")}
        flats = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
    distinct = {repr(sorted(f.items())): f for f in flats}
    return [RunConfig.from_flat(flat).data for flat in distinct.values()]
