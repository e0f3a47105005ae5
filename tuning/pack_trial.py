"""The Ray Tune trainable of a packed sweep: one trial trains one pack with ``train_packed``.

Why the checkpoint is a folder of run directories: Ray keeps one checkpoint per trial, and a pack's
members must resume together from one position. After every epoch the trial hands Ray its whole
pack folder, ``pack.json`` (the members' run names) and one ordinary run directory per member,
``<run name>/``; :class:`~adaptive_weights.tuning.sweepdir.SweepDir` reads each member's folder as it
reads an unpacked trial's checkpoint, so the export to ``runs/<run name>``, ``--report``,
``--resume`` and the selection rule see the same run directories as in an unpacked sweep. A trial
restarted by Ray (``--max-failures``) copies the pack folder back and continues its unfinished
members (``train_packed(resume=True)``); a resumed sweep starts a pack from its members' own
checkpoints (``resume_from``), which may come from an unpacked sweep or from other packs.

The metrics a pack reports to Ray every epoch (what was chosen, and why): ``val/err/mean`` and
``val/err/final`` are the *means over the pack's members* of each member's last-epoch validation
errors (a diverged member counts as the worst error, 1.0, as a diverged unpacked trial reports),
so Ray's tables rank packs on the same scale as trials; every member's own values are there too,
``<run name>/val/err/mean`` and ``<run name>/val/err/final``; and ``epoch``, ``pack/size``,
``pack/diverged`` (members stopped as diverged), ``resumed_from_epoch``. Nothing chooses on these
numbers (searchers and schedulers are refused with packs): ``--report`` reads the run directories.

Ray is imported inside the functions only.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["train_pack_trial", "train_pack_in_scratch", "pack_metrics", "PACK_DIRNAME"]

PACK_DIRNAME = "pack"


def pack_metrics(names: Sequence[str], summaries: Sequence[Mapping[str, Any] | None], *,
                 resumed_from_epoch: int = 0) -> dict[str, float]:
    """A pack's metrics for Ray from its members' ``summary.json`` (``None``: no summary yet); see
    the module docstring."""
    members: dict[str, float] = {}
    means, finals, epochs, diverged = [], [], [], 0
    for name, summary in zip(names, summaries, strict=True):
        if summary is None:
            continue
        if summary.get("status") == "diverged":
            mean = final = 1.0
            diverged += 1
        else:
            val = (summary.get("errors") or {}).get("val") or []
            if not val:
                continue
            mean, final = sum(val) / len(val), float(val[-1])
            epochs.append(int(summary.get("epochs", 0)))
        members[f"{name}/val/err/mean"], members[f"{name}/val/err/final"] = mean, final
        means.append(mean)
        finals.append(final)
    out = {"epoch": float(max(epochs, default=0))}
    if means:
        out["val/err/final"] = sum(finals) / len(finals)
        out["val/err/mean"] = sum(means) / len(means)
    out.update({"pack/size": float(len(names)), "pack/diverged": float(diverged),
                "resumed_from_epoch": float(resumed_from_epoch)})
    out.update(members)
    return out


def train_pack_trial(config: dict[str, Any], *, packs: Mapping[str, Sequence[Mapping[str, Any]]],
                     resume_from: Mapping[str, str] | None = None, tensorboard: bool = True,
                     hparam_keys: Sequence[str] = (), imports: Sequence[str] = ()) -> None:
    """Ray Tune function trainable: train the pack ``config["name"]``, whose members' flat configs
    are ``packs[name]``. ``resume_from``: run name -> a run directory (path or URI) a member
    continues from when Ray gives the trial no checkpoint (a resumed sweep). ``tensorboard`` and
    ``hparam_keys`` as for :func:`~adaptive_weights.tuning.trainable.train_trial`, and ``imports``
    (the plug-in modules, imported before the members' configs are resolved)."""
    from ray import tune

    from .plugins import import_plugins
    from .trainable import run_config, with_device

    import_plugins(imports)

    ctx = tune.get_context()
    cfgs = [run_config(t, str(t["name"])) for t in packs[config["name"]]]
    if cfgs[0].train.device == "auto":  # the GPUs Ray gave this trial, else the CPU (as train_trial)
        import ray

        device = "cuda" if ray.get_gpu_ids() else "cpu"
        cfgs = [with_device(cfg, device) for cfg in cfgs]
    members = {cfg.name: tune.Checkpoint(resume_from[cfg.name]) for cfg in cfgs
               if resume_from and cfg.name in resume_from}

    def report(metrics: dict[str, float], pack_dir: Path) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(pack_dir)))

    train_pack_in_scratch(cfgs, f"{ctx.get_experiment_name()}-{ctx.get_trial_id()}", checkpoint=tune.get_checkpoint(),
                          member_checkpoints=members, report=report, tensorboard=tensorboard, hparam_keys=hparam_keys)


def train_pack_in_scratch(cfgs: Sequence[Any], scratch: str, *, checkpoint: Any, member_checkpoints: Mapping[str, Any],
                          report: Callable[[dict[str, float], Path], None], tensorboard: bool = True,
                          hparam_keys: Sequence[str] = ()) -> None:
    """Train the pack ``cfgs`` in the scratch folder ``scratch`` (outside Ray's trial directory, as
    :func:`~adaptive_weights.tuning.trainable.train_in_scratch` does and for the same reason); after
    every epoch ``report(metrics, pack_dir)``, and once more at the end if the last epoch's report
    does not show how the pack ended (every remaining member diverged). ``checkpoint``: the pack's
    own Ray checkpoint (a pack folder), else ``member_checkpoints``: run name -> a Ray checkpoint of
    that member's run directory. Members already final (finished or diverged) are kept as they are."""
    from adaptive_weights._io import atomic_write_json, read_json
    from adaptive_weights.packing import train_packed
    from adaptive_weights.runs import is_final

    from .sweepdir import PACK_FILE
    from .trainable import write_hparams

    pack_dir = (Path(tempfile.gettempdir()) / "adaptive-weights-trials" / scratch / PACK_DIRNAME).resolve()
    if pack_dir.exists():
        shutil.rmtree(pack_dir)
    names = [cfg.name for cfg in cfgs]
    dirs = [pack_dir / name for name in names]

    def summaries() -> list[dict[str, Any] | None]:
        return [read_json(d / "summary.json") if (d / "summary.json").is_file() else None for d in dirs]

    try:
        if checkpoint is not None:
            checkpoint.to_directory(str(pack_dir))
        pack_dir.mkdir(parents=True, exist_ok=True)
        for name, d in zip(names, dirs, strict=True):
            if checkpoint is None and name in member_checkpoints:
                member_checkpoints[name].to_directory(str(d))
        atomic_write_json(pack_dir / PACK_FILE, {"members": names})
        todo = [i for i, d in enumerate(dirs) if not is_final(d)]
        started = [i for i in todo if (dirs[i] / "checkpoints" / "last.pt").exists()]
        resumed_from = int((read_json(dirs[started[0]] / "summary.json") if started and
                            (dirs[started[0]] / "summary.json").is_file() else {}).get("epochs", 0))
        if tensorboard and hparam_keys:
            for i in todo:
                write_hparams(dirs[i] / "tb", cfgs[i].to_flat(), hparam_keys)
        reported: list[list[Any]] = []

        def on_epoch(_: list[dict[str, Any]]) -> None:
            now = summaries()
            report(pack_metrics(names, now, resumed_from_epoch=resumed_from), pack_dir)
            reported.append(_ends(now))

        if todo:
            train_packed([cfgs[i] for i in todo], out_dirs=[dirs[i] for i in todo], resume=bool(started),
                         tensorboard=tensorboard, report=on_epoch)
        final = summaries()
        if not reported or reported[-1] != _ends(final):
            report(pack_metrics(names, final, resumed_from_epoch=resumed_from), pack_dir)
    finally:
        shutil.rmtree(pack_dir.parent, ignore_errors=True)


def _ends(summaries: Sequence[Mapping[str, Any] | None]) -> list[Any]:
    """What a report must show of each member: its status and epochs."""
    return [None if s is None else (s.get("status"), s.get("epochs")) for s in summaries]
