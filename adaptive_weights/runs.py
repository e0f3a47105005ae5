"""Run directories as data: what reports, EANN analyses and sweeps read from a finished run.

A run directory holds ``summary.json`` (exit units, MACs, per-split errors, the flat config) and
``config.json``; :func:`load_run` turns one into a :class:`Run`, and the keys below say which
config values identify a *setting* (data set, model, seed) and which only change how a run executes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import read_json
from .config import EXECUTION_KEYS, MODEL_KEYS, OPT_MODEL_KEYS
from .schemes import is_single_exit

__all__ = ["MODEL_KEYS", "OPT_MODEL_KEYS", "EXECUTION_KEYS", "Run", "model_label", "load_run", "find_run_dirs",
           "load_runs"]

# MODEL_KEYS identify a setting (with train.seed), OPT_MODEL_KEYS match OPT runs (no exit layout),
# EXECUTION_KEYS only change where or how fast a run executes: all derived from the config's roles.



@dataclass(frozen=True)
class Run:
    """What a report needs from one run directory (``summary.json`` and ``config.json``)."""

    path: Path
    name: str
    config: dict[str, Any]
    num_units: int
    exit_units: tuple[int, ...]
    exit_macs: tuple[int, ...]
    errors: dict[str, list[float] | None]
    completed: bool
    epochs: int

    @property
    def is_opt(self) -> bool:
        return is_single_exit(str(self.config.get("scheme.name", "")))

    @property
    def seed(self) -> int:
        return int(self.config.get("train.seed", 0))

    @property
    def model_key(self) -> tuple:
        return tuple(self.config.get(k) for k in MODEL_KEYS)

    @property
    def opt_key(self) -> tuple:
        """(data, model without period, seed): how OPT runs are matched to anytime runs."""
        return tuple(self.config.get(k) for k in OPT_MODEL_KEYS) + (self.seed,)

    @property
    def setting(self) -> tuple:
        """(data, model, seed): what two methods must share to be compared in a win rate."""
        return self.model_key + (self.seed,)

    @property
    def model_label(self) -> str:
        return model_label(self.config)

    def split_errors(self, split: str) -> list[float]:
        errs = self.errors.get(split)
        if errs is None:
            raise ValueError(f"{self.path}: summary.json has no {split!r} errors (errors.{split} is null); "
                             f"choose another --split or train with train.eval_splits including {split!r}")
        return list(errs)

    def label(self, keys: Sequence[str]) -> str:
        """Method label: the values of ``keys`` joined with ``+`` (``sieve+aann``). A strategy
        hyper-parameter that this run's strategy does not have shows as ``-``."""
        missing = [k for k in keys if k not in self.config and not k.startswith("strategy.")]
        if missing:
            raise ValueError(f"--group-by {','.join(keys)}: run {self.name} has no key {missing[0]!r}; "
                             f"available keys: {', '.join(sorted(self.config))}")
        return "+".join(str(self.config.get(k, "-")) for k in keys)


def model_label(config: dict[str, Any]) -> str:
    """``digits/resnet n3 c16`` (``p2`` appended for a prediction period 2)."""
    arch = config.get("model.arch")
    if arch == "resnet":
        body = f"resnet n{config.get('model.n')} c{config.get('model.c')}"
        if config.get("model.period", 1) != 1:
            body += f" p{config.get('model.period')}"
    else:
        body = f"{arch}{config.get('model.depth')}"
    return f"{config.get('data.name')}/{body}"


def load_run(path: str | Path) -> Run:
    """Read one run directory; a missing or corrupt file raises ``ValueError`` naming it."""
    path = Path(path)
    try:
        summary = read_json(path / "summary.json")
    except FileNotFoundError:
        raise ValueError(f"{path}: not a finished-epoch run directory (no summary.json)") from None
    for key in ("exit_units", "exit_macs", "errors", "num_units"):
        if key not in summary:
            raise ValueError(f"{path / 'summary.json'}: missing key {key!r}")
    if "config" in summary:
        config = dict(summary["config"])
    else:  # the resolved config is in config.json too
        from .config import load_config_file

        config = load_config_file(path / "config.json")
    return Run(
        path=path, name=path.name, config=config, num_units=int(summary["num_units"]),
        exit_units=tuple(int(u) for u in summary["exit_units"]),
        exit_macs=tuple(int(m) for m in summary["exit_macs"]),
        errors=dict(summary["errors"]), completed=bool(summary.get("completed", False)),
        epochs=int(summary.get("epochs", 0)),
    )


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories among ``paths``: a path holding ``summary.json`` is one; any other directory
    contributes the run directories below it (at any depth), in sorted order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "summary.json").is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(s.parent for s in p.rglob("summary.json"))
            if not found:
                raise ValueError(f"{p}: no run directory (summary.json) under it")
            out.extend(found)
        else:
            raise ValueError(f"{p}: no such run directory")
    unique = list(dict.fromkeys(q.resolve() for q in out))
    return unique


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    return [load_run(p) for p in find_run_dirs(paths)]
