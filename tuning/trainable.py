"""The Ray Tune trainable: ``adaptive_weights.training.train`` with a report hook, nothing more.

The trial's ``config`` *is* the run's flat config: the dotted keys of ``param_space``
(``strategy.gamma``, ``train.seed``, ...), so any Tune search space, searcher or scheduler works
on them, and Ray's tables and dataframes show them. A key a strategy does not have is ``None``
(a grid of several strategies) and is left out.

Every epoch the training loop writes its atomic checkpoint (``checkpoints/last.pt``), its metrics
and summary into the run directory and then calls ``report``; the hook hands Ray the epoch's
metrics and the *whole run directory* as the trial's checkpoint. Ray persists it to the storage
path (a shared file system or a bucket on a cluster), so a trial restarted on another node copies
it back and continues with ``train(..., resume=True)`` exactly where the checkpoint left off, and
the last checkpoint of a finished trial is a complete run directory that reports read directly.
A resumed sweep (``sweep --resume``) starts a trial from the checkpoint it names in ``resume_from``
in the same way: a run directory, read with ``weights_only=True``.

Ray is imported inside the function only: importing this module starts nothing.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from adaptive_weights.hparams import write_hparams  # the core writer every run uses; kept importable here

__all__ = ["train_trial", "train_in_scratch", "trial_metrics", "run_config", "sampled_run_name", "with_device",
           "write_hparams", "RUN_DIRNAME"]

RUN_DIRNAME = "run"
# what a diverged trial reports (the worst error), so searchers and schedulers rank it last
DIVERGED_METRICS = ("val/err/mean", "val/err/final")


def trial_metrics(row: dict[str, Any], *, resumed_from_epoch: int) -> dict[str, float]:
    """The numeric entries of an epoch row (per-exit errors ``val/err/exit_03``, their mean
    ``val/err/mean``, the final exit's ``val/err/final``, losses, probabilities, lr, timings) plus
    ``resumed_from_epoch`` (0 for a trial that never restarted)."""
    first = ("epoch", "val/err/final", "val/err/mean")  # progress tables show the first columns
    ordered = [k for k in first if k in row] + [k for k in row if k not in first]
    out = {k: float(row[k]) for k in ordered
           if isinstance(row[k], (int, float)) and not isinstance(row[k], bool) and math.isfinite(row[k])}
    out["resumed_from_epoch"] = float(resumed_from_epoch)
    return out


def sampled_run_name(config: Mapping[str, Any], trial_id: str) -> str:
    """The run name of a trial whose config has no ``name`` (a sampled one): the default run name,
    with sampled floats shown to 3 significant digits, and the trial's number, so two samples never
    share a directory (``synthetic-resnet1c4-sieve-eg-gamma0.0316-s0-00002``)."""
    from adaptive_weights.config import RunConfig

    shown = {k: float(f"{v:.3g}") if isinstance(v, float) else v for k, v in _config_keys(config).items()}
    base = RunConfig.from_flat(shown).resolve().name
    return f"{base}-{trial_id.rsplit('_', 1)[-1]}"


def run_config(config: Mapping[str, Any], name: str = "trial"):
    """The resolved :class:`RunConfig` of a trial's ``config``, named ``name`` when it has no
    ``name`` of its own (a sampled trial: its Ray trial name, :func:`sampled_run_name` of its first
    config, which stays its name when a PBT scheduler mutates the config later)."""
    from adaptive_weights.config import RunConfig

    flat = _config_keys(config)
    if not flat.get("name"):
        flat["name"] = name
    return RunConfig.from_flat(flat).resolve()


def _config_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run's keys: everything but a plug-in hyper-parameter (``strategy.*``, ``objective.*``,
    ``gradient.*``) that the trial's plug-in does not have, which the grid's param space holds as None."""
    from adaptive_weights.config import OPEN_SECTIONS

    plugin_keys = tuple(f"{section}." for section in OPEN_SECTIONS)
    return {k: v for k, v in config.items() if not (k.startswith(plugin_keys) and v is None)}


def train_trial(config: dict[str, Any], *, tensorboard: bool = True, resume_from: Mapping[str, str] | None = None,
                hparam_keys: Sequence[str] = (), workers: int = 1, cpus_per_worker: float = 1.0,
                gpus_per_worker: float = 0.0, adopt_hparams: bool = False, imports: Sequence[str] = ()) -> None:
    """Ray Tune function trainable: train the run whose flat config is ``config``.

    ``tensorboard``: the run writes TensorBoard events, plus its HParams summary (written by the
    run itself, :mod:`adaptive_weights.hparams`) of ``hparam_keys``, the keys the sweep varies.
    ``resume_from``: run name -> the path or URI of a run directory (an earlier trial's checkpoint)
    this trial continues from when Ray gives it no checkpoint.
    ``workers > 1``: the trial trains data-parallel on that many Ray Train workers
    (:mod:`adaptive_weights.tuning.ray_train`), each with ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs.
    ``adopt_hparams`` (PBT): a checkpoint taken from another trial continues with this trial's
    mutated strategy hyper-parameters (a plain resume refuses a changed one).
    ``imports``: modules that register the sweep's plug-ins (``sweep.imports`` and those carried
    from the driver), imported before the config is resolved: a worker is a fresh process.

    The run directory is always rebuilt from a checkpoint (or started empty), never reused from the
    local disk: a worker killed between writing ``last.pt`` and reporting it would otherwise resume
    from an epoch that Ray never recorded, and the trial's results would differ from an undisturbed
    run's.
    """
    from ray import tune

    from .plugins import import_plugins

    import_plugins(imports)
    ctx = tune.get_context()
    cfg = run_config(config, ctx.get_trial_name())
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and resume_from and cfg.name in resume_from:
        checkpoint = tune.Checkpoint(resume_from[cfg.name])
    if workers > 1:
        from .ray_train import fit_on_workers

        fit_on_workers(cfg, start=checkpoint, workers=workers, cpus_per_worker=cpus_per_worker,
                       gpus_per_worker=gpus_per_worker, tensorboard=tensorboard, hparam_keys=hparam_keys,
                       imports=imports)
        return
    if cfg.train.device == "auto":
        # the GPUs Ray gave this trial (CUDA_VISIBLE_DEVICES is set to them), else the CPU: a trial
        # asked for 0 GPUs must not crowd onto a GPU that Ray lends to others
        import ray

        cfg = with_device(cfg, "cuda" if ray.get_gpu_ids() else "cpu")

    def report(metrics: dict[str, float], run_dir: Path) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(run_dir)))

    train_in_scratch(cfg, f"{ctx.get_experiment_name()}-{ctx.get_trial_id()}", checkpoint=checkpoint,
                     report=report, tensorboard=tensorboard, hparam_keys=hparam_keys, adopt_hparams=adopt_hparams)


def with_device(cfg, device: str):
    """``cfg`` with ``train.device`` set (a trial's device is the one Ray gave it)."""
    import dataclasses

    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=device))


def train_in_scratch(cfg, scratch: str, *, checkpoint: Any, report: Callable[[dict[str, float], Path], None],
                     tensorboard: bool, hparam_keys: Sequence[str], adopt_hparams: bool = False) -> None:
    """Train ``cfg`` in the scratch run directory ``scratch`` (started from ``checkpoint``, a Ray
    checkpoint of a run directory, when given, with ``cfg``'s strategy hyper-parameters when
    ``adopt_hparams``); after every epoch ``report(metrics, run_dir)``.

    The run trains in a scratch folder outside the trial directory: Ray copies trial directories
    to the storage path while trials write, and would trip over the atomic writes' temp files.
    Every epoch's checkpoint (the whole run directory) is what Ray keeps.
    """
    from adaptive_weights.training import DivergedError, train

    run_dir = (Path(tempfile.gettempdir()) / "adaptive-weights-trials" / scratch / RUN_DIRNAME).resolve()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    resumed_from = 0
    if checkpoint is not None:
        checkpoint.to_directory(str(run_dir))
        resumed_from = _checkpoint_epoch(run_dir)
        if adopt_hparams:
            _adopt_hparams(run_dir, cfg)

    def on_epoch(row: dict[str, Any], checkpoint_path: Path) -> None:
        report(trial_metrics(row, resumed_from_epoch=resumed_from), run_dir)

    try:
        train(cfg, out_dir=run_dir, resume=checkpoint is not None, report=on_epoch, tensorboard=tensorboard,
              hparam_keys=list(hparam_keys) or None)
    except DivergedError as err:
        # final, not a failure to retry (it would diverge again from the same checkpoint): Ray keeps
        # the run directory whose summary.json records the divergence, and sees the worst error
        report({"diverged": 1.0, "diverged_epoch": float(err.epoch), **dict.fromkeys(DIVERGED_METRICS, 1.0)},
               run_dir)
    finally:
        shutil.rmtree(run_dir.parent, ignore_errors=True)


def _adopt_hparams(run_dir: Path, cfg: Any) -> None:
    """PBT's exploit step: the checkpoint (read with ``weights_only=True``) of a better trial goes
    on with this trial's strategy hyper-parameters; its learnt state (weights, statistics) is kept."""
    from adaptive_weights.checkpoint import load_checkpoint, save_checkpoint

    path = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    params = dict(cfg.strategy.params)
    if state["strategy"].get("hparams") != params:
        state["strategy"]["hparams"] = params
        state["config"] = {**state["config"], **{f"strategy.{k}": v for k, v in params.items()}}
        save_checkpoint(path, state)


def _checkpoint_epoch(run_dir: Path) -> int:
    from adaptive_weights._io import read_json

    summary = run_dir / "summary.json"
    return int(read_json(summary).get("epochs", 0)) if summary.exists() else 0
