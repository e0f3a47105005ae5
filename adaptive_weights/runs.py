"""Run directories as data: the one reader of what reports, OPT, EANN analyses and sweeps need.

A run directory holds ``config.json`` (written before training starts) and, once an epoch has
finished, ``summary.json`` (exit units, MACs, per-split errors, the flat config).
:func:`load_run` turns one into a :class:`Run`, :func:`load_run_config` reads its config,
:func:`is_completed` says whether it trained its whole schedule, :func:`find_run_dirs` finds run
directories (and those without a summary yet), and :func:`opt_points` groups OPT runs by model and
unit. The keys below say which config values identify a *setting* (data set, model, seed) and
which only change how a run executes. A malformed file raises :class:`RefusedError` naming it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ._io import read_json
from .config import MODEL_KEYS, OPT_MODEL_KEYS, RunConfig, load_config_file
from .errors import RefusedError
from .schemes import is_single_exit

__all__ = ["Run", "RunDirs", "OptPoint", "DATASET_CLASSES", "dataset_classes", "divergence_text", "model_label",
           "load_run", "load_run_config", "is_completed", "is_final", "summary_is_final", "find_run_dirs", "load_runs", "opt_points"]

# the key lists (MODEL_KEYS: a setting with train.seed; OPT_MODEL_KEYS: how OPT runs match) are the
# config's, derived from its roles; imported here, not restated


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
    status: str = "completed"               # summary.json's status: completed | unfinished | diverged
    diverged: Mapping[str, Any] | None = None  # where and why it diverged (epoch, step, reason)
    num_classes: int | None = None           # from summary.json, else the data set's (None: unknown)

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
        hyper-parameter that this run's strategy does not have is left out (``aann`` beside
        ``eg+0.1`` under ``strategy.name,strategy.gamma``)."""
        missing = [k for k in keys if k not in self.config and not k.startswith("strategy.")]
        if missing:
            raise ValueError(f"--group-by {','.join(keys)}: run {self.name} has no key {missing[0]!r}; "
                             f"available keys: {', '.join(sorted(self.config))}")
        return "+".join(str(self.config[k]) for k in keys if k in self.config) or f"(no {'+'.join(keys)})"


def divergence_text(run: Run) -> str:
    """Where and why ``run`` diverged (``epoch 2: <reason>``), from its summary's ``diverged`` record."""
    d = dict(run.diverged or {})
    where = f"epoch {d['epoch']}" if "epoch" in d else "epoch unknown"
    return f"{where}: {d['reason']}" if d.get("reason") else where


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


def _read_summary(path: Path) -> dict[str, Any]:
    """``summary.json`` as a mapping; corrupt JSON or another top-level type is refused, naming the file."""
    try:
        summary = read_json(path)
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise RefusedError(str(err)) from None
    if not isinstance(summary, Mapping):
        raise RefusedError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    return dict(summary)


def _completed(summary: Mapping[str, Any]) -> bool:
    return summary.get("completed") is True


def _status(summary: Mapping[str, Any], path: Path) -> str:
    """``completed`` / ``unfinished`` / ``diverged`` (summaries written before ``status`` existed
    say only ``completed``)."""
    status = summary.get("status", "completed" if _completed(summary) else "unfinished")
    if status not in ("completed", "unfinished", "diverged"):
        raise RefusedError(f"{path}: status={status!r}; expected completed, unfinished or diverged")
    return status


def is_completed(run_dir: str | Path) -> bool:
    """Whether the run in ``run_dir`` trained every epoch of its schedule (``summary.json`` says
    ``completed: true``). No summary yet (killed in its first epoch, or never started) is not completed."""
    path = Path(run_dir) / "summary.json"
    return path.is_file() and _completed(_read_summary(path))


def summary_is_final(summary: Mapping[str, Any]) -> bool:
    """Whether a run with this ``summary.json`` will train no further: it completed its schedule, or
    it diverged (a resume would diverge again from the same last good checkpoint)."""
    return _completed(summary) or summary.get("status") == "diverged"


def is_final(run_dir: str | Path) -> bool:
    """:func:`summary_is_final` of the run in ``run_dir`` (no summary yet: not final)."""
    path = Path(run_dir) / "summary.json"
    return path.is_file() and summary_is_final(_read_summary(path))


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config recorded in ``run_dir/config.json``; a malformed one is refused, naming it."""
    path = Path(run_dir) / "config.json"
    try:
        flat = load_config_file(path)
        return RunConfig.from_flat(flat)
    except (ValueError, TypeError) as err:  # config refusals name the key; say which file holds it
        raise RefusedError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from None


_DEFAULT_FLAT = {k: v for k, v in RunConfig().to_flat().items() if k != "name"}


def _int_list(summary: Mapping[str, Any], key: str, path: Path) -> tuple[int, ...]:
    values = summary[key]
    if not isinstance(values, list) or not values or not all(isinstance(v, int) and not isinstance(v, bool)
                                                            for v in values):
        raise RefusedError(f"{path}: {key}={values!r}; expected a non-empty list of integers")
    return tuple(values)


def _errors(summary: Mapping[str, Any], num_exits: int, path: Path) -> dict[str, list[float] | None]:
    errors = summary["errors"]
    if not isinstance(errors, Mapping):
        raise RefusedError(f"{path}: errors={errors!r}; expected an object of split -> list of errors (or null)")
    for split, values in errors.items():
        if values is None:
            continue
        if (not isinstance(values, list) or len(values) != num_exits
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values)):
            raise RefusedError(f"{path}: errors.{split}={values!r}; expected null or a list of {num_exits} "
                               "numbers between 0 and 1 (one error rate per exit)")
    return dict(errors)


def load_run(path: str | Path) -> Run:
    """Read one run directory; a missing or malformed file raises :class:`RefusedError` naming it."""
    path = Path(path)
    where = path / "summary.json"
    try:
        summary = _read_summary(where)
    except FileNotFoundError:
        raise RefusedError(f"{path}: not a finished-epoch run directory (no summary.json)") from None
    for key in ("exit_units", "exit_macs", "errors", "num_units"):
        if key not in summary:
            raise RefusedError(f"{where}: missing key {key!r}")
    exit_units, exit_macs = _int_list(summary, "exit_units", where), _int_list(summary, "exit_macs", where)
    if len(exit_macs) != len(exit_units):
        raise RefusedError(f"{where}: {len(exit_units)} exit_units but {len(exit_macs)} exit_macs; "
                           "expected one MACs count per exit")
    num_units, epochs = summary["num_units"], summary.get("epochs", 0)
    for key, value in (("num_units", num_units), ("epochs", epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise RefusedError(f"{where}: {key}={value!r}; expected a non-negative integer")
    if "config" in summary:
        config = summary["config"]
        if not isinstance(config, Mapping):
            raise RefusedError(f"{where}: config={config!r}; expected an object of dotted config keys")
        config = dict(config)
    else:  # the resolved config is in config.json too
        config = load_run_config(path).to_flat()
    seed = config.get("train.seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise RefusedError(f"{where}: train.seed={seed!r}; expected a non-negative integer")
    # a key added to the library after the run was written (e.g. objective.name) reads as its default,
    # which is what the run trained with, so old and new runs group and compare alike
    config = {**_DEFAULT_FLAT, **config}
    return Run(
        path=path, name=path.name, config=config, num_units=num_units, exit_units=exit_units,
        exit_macs=exit_macs, errors=_errors(summary, len(exit_units), where), completed=_completed(summary),
        epochs=epochs, status=_status(summary, where), diverged=summary.get("diverged"),
        num_classes=_num_classes(summary, config),
    )


# classes of the data sets whose count is fixed (the synthetic set's is its data.synthetic_classes)
DATASET_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "digits": 10, "imagenet": 1000}


def dataset_classes(config: Mapping[str, Any]) -> int | None:
    """The number of classes of a run's data set from its flat config (None when unknown): what
    the chance error 1 - 1/classes of a plot needs when a summary does not record it."""
    name = config.get("data.name")
    if name == "synthetic":
        value = config.get("data.synthetic_classes")
        return value if isinstance(value, int) and value > 1 else None
    return DATASET_CLASSES.get(str(name))


def _num_classes(summary: Mapping[str, Any], config: Mapping[str, Any]) -> int | None:
    value = summary.get("num_classes")
    if isinstance(value, int) and not isinstance(value, bool) and value > 1:
        return value
    return dataset_classes(config)


class RunDirs(NamedTuple):
    """Run directories found under some paths: ``finished`` hold ``summary.json`` (at least one
    epoch done); ``without_summary`` hold only ``config.json`` (killed in their first epoch)."""

    finished: list[Path]
    without_summary: list[Path]


def _is_run_dir(path: Path) -> bool:
    return (path / "summary.json").is_file() or (path / "config.json").is_file()


def _is_ray_checkpoint(path: Path) -> bool:
    """A Ray Tune trial's ``checkpoint_NNNNNN`` folder (beside the trial's ``params.json``): a snapshot
    of a run whose final copy is in the sweep's ``runs/``, so counting it would count the run twice."""
    return (path.name.startswith("checkpoint_") and path.name[len("checkpoint_"):].isdigit()
            and (path.parent / "params.json").is_file())


def _run_dirs_below(root: Path) -> list[Path]:
    """Run directories below ``root`` at any depth, in sorted order. Symbolic links to directories
    are followed (a folder of links to chosen runs is a common way to pick them), each real
    directory once; Ray Tune checkpoint copies are skipped."""
    found, seen = [], set()
    for here, dirs, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a link cycle, or a second link to a folder already searched
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not _is_ray_checkpoint(Path(here) / d))
        if _is_run_dir(Path(here)):
            found.append(Path(here))
    return sorted(found)


def find_run_dirs(paths: Iterable[str | Path]) -> RunDirs:
    """Run directories among ``paths``: a path holding ``summary.json`` or ``config.json`` is one;
    any other directory contributes the run directories below it (:func:`_run_dirs_below`)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if _is_run_dir(p):
            found.append(p)
        elif p.is_dir():
            below = _run_dirs_below(p)
            if not below:
                raise RefusedError(f"{p}: no run directory (summary.json or config.json) under it (Ray Tune's "
                                   "checkpoint_* copies are skipped; give one by its path to use it)")
            found.extend(below)
        else:
            raise RefusedError(f"{p}: no such run directory")
    unique = list(dict.fromkeys(q.resolve() for q in found))
    return RunDirs([q for q in unique if (q / "summary.json").is_file()],
                   [q for q in unique if not (q / "summary.json").is_file()])


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run directory among ``paths`` with a summary (see :func:`find_run_dirs` for the others)."""
    return [load_run(p) for p in find_run_dirs(paths).finished]


class OptPoint(NamedTuple):
    """OPT runs of one model at one unit: their only exit's MACs and error on a split, mean over seeds."""

    model: str
    unit: int
    macs: int
    error: float
    runs: tuple[Run, ...]


def opt_points(runs: Iterable[Run], split: str, *, like: Run | None = None,
               seed: int | None = None) -> list[OptPoint]:
    """The OPT runs among ``runs`` grouped by model (the period does not matter for a single exit)
    and unit, their errors on ``split`` averaged over seeds; sorted by model, then unit. ``like``
    keeps only the OPT runs of that run's data set and model, ``seed`` only those of one seed."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        if not r.is_opt:
            continue
        if like is not None and r.opt_key[:-1] != like.opt_key[:-1]:
            continue
        if seed is not None and r.seed != seed:
            continue
        groups[(r.opt_key[:-1], r.exit_units[0])].append(r)
    points = []
    for (_, unit), rs in groups.items():
        errors = [r.split_errors(split)[0] for r in rs]
        points.append(OptPoint(model_label({**rs[0].config, "model.period": 1}), unit, rs[0].exit_macs[0],
                               sum(errors) / len(errors), tuple(rs)))
    return sorted(points, key=lambda p: (p.model, p.unit))
