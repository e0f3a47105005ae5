"""The training loop, top to bottom (spec §5; DESIGN.md "Training").

Per step: the strategy gives this step's exit weights, the network gives every exit's logits, the
objective turns them into the ``[K]`` loss vector in one vectorised call, the gradient rule turns
weights and losses into the parameters' gradients (default: back-propagate the weighted sum), and
the detached loss vector goes back to the strategy (docs/strategies.md, "Objectives and gradient rules").
Nothing in the default step reads a value back to the host. Every epoch: evaluate all exits, log, write an atomic checkpoint, call ``report`` (the only
hook Ray Tune needs). A run killed at any moment resumes exactly from its last checkpoint.

The epoch's metrics row is written before its checkpoint (a resume drops rows past the checkpoint
and rewrites ``summary.json`` from the checkpointed epoch's row), so the record and the checkpoint
always agree. A run whose state or loss turns non-finite stops (:class:`DivergedError`) before the
bad state reaches a checkpoint; the check reads one flag per epoch and per mid-epoch checkpoint,
never per step. One process at a time trains into a run directory (:class:`RunDirLock`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write_json, read_json
from ._lock import LOCK_NAME, RunDirLock
from .checkpoint import (
    load_checkpoint,
    load_model_state,
    load_optimizer_state,
    load_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
    validate_checkpoint,
)
from .compile_cache import use_compile_cache
from .compiled import compile_training, mark_step_begin
from .config import RESUMABLE_KEYS, RunConfig, plugin_class
from .data._shard import local_batch_size
from .distributed import Distributed, setup_distributed
from .errors import RefusedError
from .evaluate import autocast_for, evaluate_exits
from .gradients import create_gradient_rule
from .hparams import write_hparams
from .logging import RunLogger, exit_key
from .objectives import create_objective
from .progress import Progress
from .schedules import describe_schedule, learning_rate, set_learning_rate
from .schemes import scheme_weights
from .speed import apply_backend_settings, resolve_speed, sgd_kernel

__all__ = ["train", "training_step", "build_run", "build_step_plugins", "resolve_device", "RunExistsError",
           "DivergedError", "UnstartedRunError", "library_version", "git_revision", "run_directory"]

ReportFn = Callable[[dict[str, Any], Path], None]


class RunExistsError(RefusedError):
    """The run directory already holds a run and ``resume`` was not asked for."""


class UnstartedRunError(RefusedError):
    """A fresh run refused in a training step before its first checkpoint (a gradient rule's solver
    failed, memory ran out): its run directory holds nothing worth keeping and is removed."""


class DivergedError(RefusedError):
    """Training stopped because its state or loss stayed non-finite; ``summary.json`` says so
    (``"status": "diverged"``) and the last finite checkpoint is kept. ``epoch`` is the 1-based
    epoch it diverged in."""

    def __init__(self, message: str, *, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch


def run_directory(cfg: RunConfig, out_dir: str | Path | None) -> Path:
    """The absolute run directory of ``cfg``: ``out_dir``, by default ``results/runs/<name>``."""
    run_dir = Path(out_dir) if out_dir is not None else Path("results") / "runs" / cfg.name
    return run_dir.resolve()


def library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("adaptive-weights")
    except PackageNotFoundError:
        return "unknown"


def git_revision() -> str | None:
    """The source tree's git revision (with ``-dirty``), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a torch device (``auto``: CUDA, then MPS, then the CPU); a device that is
    not there is refused before anything is written."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RefusedError(f"train.device: {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RefusedError(f"train.device: {name!r} asked for, but this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RefusedError(f"train.device: {name!r} asked for, but MPS is not available here")
    return device


def build_run(cfg: RunConfig, device: torch.device, ddp: Distributed | None = None):
    """Data, model, static weights and strategy of a config (shared with evaluation); ``ddp``: the
    loaders yield this rank's slice of every global batch.

    ``cfg`` is resolved here unless it already is; the strategy is then built from its resolved
    hyper-parameters without validating them again."""
    from .data import build_data, check_train_batches

    cfg = cfg.resolve()
    rank, world_size = (ddp.rank, ddp.world_size) if ddp is not None else (0, 1)
    data = build_data(cfg.data, batch_size=cfg.train.batch_size, device=device, seed=cfg.train.seed,
                      rank=rank, world_size=world_size)
    check_train_batches(data, cfg.train.batch_size)
    model, base_weights, strategy = build_model_and_strategy(cfg, data, device)
    return data, model, base_weights, strategy


def scheme_exits(cfg: RunConfig) -> tuple[list[int], torch.Tensor]:
    """The units that carry an exit and their static weights: heads only where the scheme puts
    weight (spec §1.1), so ``optimal@i`` builds a single exit and truncates the trunk after it."""
    from .models import count_units, exit_positions

    m = cfg.model
    slots = exit_positions(count_units(m.arch, **_arch_kwargs(cfg)), m.period)
    weights = scheme_weights(cfg.scheme.name, len(slots), cfg.scheme.normalize)
    keep = [i for i, w in enumerate(weights.tolist()) if w > 0]
    return [slots[i] for i in keep], weights[keep]


def build_network(cfg: RunConfig, data, exits: list[int]) -> torch.nn.Module:
    """The anytime network of ``cfg`` for ``data`` with heads at the units ``exits`` (on the CPU;
    its initial weights are drawn from the global RNG, seeded by the caller)."""
    from .models import create_model

    return create_model(cfg.model.arch, num_classes=data.num_classes, in_channels=data.in_channels,
                        input_size=data.image_size, period=cfg.model.period, exits=exits, **_arch_kwargs(cfg))


def build_model_and_strategy(cfg: RunConfig, data, device: torch.device):
    """The model (initial weights from the global RNG), static weights and strategy of a resolved
    config for ``data``: the part of :func:`build_run` after the data."""
    from .strategies import get_strategy_class

    exits, weights = scheme_exits(cfg)
    model = build_network(cfg, data, exits).to(device)
    base_weights = weights.to(device=device, dtype=torch.float32)
    strategy = get_strategy_class(cfg.strategy.name).from_resolved(base_weights, seed=cfg.train.seed,
                                                                   hparams=dict(cfg.strategy.params))
    return model, base_weights, strategy


def _arch_kwargs(cfg: RunConfig) -> dict[str, Any]:
    m = cfg.model
    return dict(n=m.n, c=m.c, unit_style=m.unit_style) if m.arch == "resnet" else dict(depth=m.depth)


def build_step_plugins(cfg: RunConfig, model: torch.nn.Module):
    """The objective and the gradient rule of a resolved config (``training_step``'s arguments);
    ``train.label_smoothing`` smooths the objective's cross-entropy."""
    objective = create_objective(cfg.objective.name, label_smoothing=cfg.train.label_smoothing,
                                 **cfg.objective.params)
    return objective, create_gradient_rule(cfg.gradient.name, model, **cfg.gradient.params)


def training_step(forward, optimizer: torch.optim.Optimizer, strategy, x: torch.Tensor, y: torch.Tensor, *,
                  objective, gradient, amp: bool, device: torch.device,
                  mean_over_ranks: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """One SGD step: objective -> [K] losses -> strategy weights -> gradient rule -> parameter grads.

    ``forward`` is ``gradient.forward_fn()`` (possibly DDP-wrapped or compiled). With ``ce`` and
    ``sum`` nothing here syncs with the host. Returns ``(loss, losses, weights, logits)``: the
    weighted loss, the detached ``[K]`` per-exit losses (already handed to the strategy), this
    step's ``[K]`` weights and the logits. In a data-parallel run ``mean_over_ranks`` averages the
    loss vector over the ranks before the strategy sees it, so every rank's strategy holds the same
    state and draws the same exits.
    """
    weights = strategy.step_weights()                       # [K], on device
    with autocast_for(device, amp):
        logits = forward(x)                                 # [K, B, classes]
    losses = objective(logits, y)                           # [K], one vectorised call
    optimizer.zero_grad(set_to_none=True)
    loss = gradient.backward(weights, losses)               # fills .grad; sum_k w_k L_k
    optimizer.step()
    losses = losses.detach()
    if mean_over_ranks is not None:
        losses = mean_over_ranks(losses)
    strategy.observe(losses)
    return loss, losses, weights, logits


def check_resume(checkpoint: dict[str, Any], cfg: RunConfig, where: Path) -> None:
    """Refuse a resume that would make the run a mix of two experiments.

    Only the RESUMABLE_KEYS may differ from the checkpoint's config (execution-only keys, and
    ``train.epochs`` to train longer); every other change is named ``key: old -> new``. A schedule
    shorter than what was already trained is refused, and so is a longer one whose rates depend
    on the run's length (cosine, onecycle): the epochs already trained would not be that run's.
    """
    # a checkpoint of an older version lacks the keys added since: they held their defaults
    stored = RunConfig.from_flat(checkpoint["config"]).to_flat()
    new = cfg.to_flat()
    changed = [k for k in dict.fromkeys([*stored, *new]) if k not in RESUMABLE_KEYS and stored.get(k) != new.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise RefusedError(f"cannot resume {where}: the config changes {detail}; only "
                           f"{', '.join(RESUMABLE_KEYS)} may change on resume; start a new run instead")
    done = checkpoint["epoch"] + (1 if checkpoint["batch"] else 0)
    epochs, old_epochs = new["train.epochs"], stored["train.epochs"]
    if epochs < done:
        raise RefusedError(f"cannot resume {where}: train.epochs {old_epochs} -> {epochs} is shorter than the "
                           f"{checkpoint['epoch']} epoch(s) already trained; give train.epochs >= {done}")
    if epochs != old_epochs and cfg.train.lr_schedule != "step":
        raise RefusedError(f"cannot resume {where}: train.epochs {old_epochs} -> {epochs} would change the rates "
                           f"of the {cfg.train.lr_schedule} schedule for the epochs already trained; start a new run")


def _one_writer_per_run_dir(train_fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Run ``train_fn`` holding the run directory's lock (taken before anything there is read or
    written); a second process training into the same directory is refused. In a distributed run
    only rank 0 writes the directory, so only rank 0 locks it."""

    @functools.wraps(train_fn)
    def locked(config: RunConfig, *, out_dir: str | Path | None = None, **kwargs: Any) -> dict[str, Any]:
        cfg = config.resolve()  # once: train_fn takes the resolved config as it is
        run_dir = run_directory(cfg, out_dir)
        if not _writes_run_dir() or (kwargs.get("resume") and not run_dir.is_dir()):
            return train_fn(cfg, out_dir=run_dir, **kwargs)  # nothing to lock (a resume is refused)
        fresh = not run_dir.exists()
        # taken outside the clean-up below: a trainer refused here lost the race for the directory,
        # which (lock file included) is the winner's
        lock = RunDirLock(run_dir).acquire()
        try:
            return train_fn(cfg, out_dir=run_dir, **kwargs)
        except BaseException as err:
            remove_unstarted(run_dir, fresh, err)
            raise
        finally:
            lock.release()

    return locked


def remove_unstarted(run_dir: Path, fresh: bool, err: BaseException) -> None:
    """After ``err``: a directory this run created that holds only its lock (it failed before
    anything was written: a file data set's sizes, checked once read; CIFAR not found; an
    interrupt), or that was refused in a step before its first checkpoint, is removed (by its
    lock's holder), so a failed start leaves nothing behind."""
    if fresh and run_dir.is_dir() and ([p.name for p in run_dir.iterdir()] == [LOCK_NAME]
                                       or isinstance(err, UnstartedRunError)):
        shutil.rmtree(run_dir)


def _writes_run_dir() -> bool:
    """Rank 0 or a single process: :func:`setup_distributed`'s rule, asked before it runs."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or os.environ.get("RANK", "0") == "0"


@_one_writer_per_run_dir
def train(
    config: RunConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    report: ReportFn | None = None,
    tensorboard: bool = True,
    hparam_keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``out_dir`` (default ``results/runs/<name>``); returns the summary.

    ``resume=True`` continues from ``out_dir/checkpoints/last.pt``, refusing any change of a key
    outside ``config.RESUMABLE_KEYS`` and a schedule shorter than what was trained; without it an
    existing run directory is an error, so nothing is overwritten. ``config`` may already be
    resolved (``RunConfig.resolve``): it is then not validated again.
    ``report(metrics, checkpoint_path)`` is called after every epoch's checkpoint is written.
    ``tensorboard``: the run writes TensorBoard events and an HParams summary of ``hparam_keys``
    (default: every key that changes what it computes; a sweep names the keys its grid varies).
    A run that diverges raises :class:`DivergedError`; another process training into ``out_dir``
    at the same time is refused (:class:`~adaptive_weights._lock.RunDirBusyError`).
    """
    cfg = config.resolve()  # a resolved config is taken as it is
    run_dir = run_directory(cfg, out_dir)
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    ddp, device = setup_distributed(resolve_device(cfg.train.device))
    local_batch_size(cfg.train.batch_size, ddp.world_size)  # refused before anything is written
    if ddp.enabled and not plugin_class("gradient", cfg.gradient.name).data_parallel:
        raise RefusedError(f"gradient.name: {cfg.gradient.name!r} does not run data-parallel (DDP averages the "
                           "gradients of one plain backward pass); use gradient.name 'sum' or a single process")
    compilable = plugin_class("gradient", cfg.gradient.name).compilable
    if cfg.train.compile not in ("auto", "none") and not compilable:
        raise RefusedError(f"gradient.name: {cfg.gradient.name!r} cannot run with train.compile "
                           f"{cfg.train.compile!r} (TorchJD differentiates with torch.vmap); use train.compile none")
    cfg = resolve_speed(cfg, device, compilable=compilable)  # what config.json records as used
    apply_backend_settings(cfg)
    use_compile_cache(cfg.train.compile_cache, cfg.train.compile)  # checked before anything is written
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)

    # Nothing is written until the run is known to be valid: the checkpoint is read, its config
    # compared and its states loaded, the data read and its sizes checked, the metrics rows read;
    # only then the run directory's files.
    checkpoint = None
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"cannot resume: {ckpt_path} does not exist")
        checkpoint = load_checkpoint(ckpt_path, map_location=device)
        check_resume(checkpoint, cfg, run_dir)
    elif ckpt_path.exists() or (run_dir / "summary.json").exists():
        raise RunExistsError(f"{run_dir} already holds a run; {how_to_go_on(run_dir, ckpt_path)}")

    # ---------------------------------------------------------------- build everything
    torch.manual_seed(cfg.train.seed)
    try:
        data, model, base_weights, strategy = build_run(cfg, device, ddp)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(
            model.parameter_groups(cfg.train.weight_decay, base_weights.tolist()),
            lr=cfg.train.lr_values[0], momentum=cfg.train.momentum, nesterov=cfg.train.nesterov, **sgd_kernel(cfg),
        )
        objective, gradient = build_step_plugins(cfg, model)
    except Exception as err:
        if not _allocation_failure(err):
            raise
        raise RefusedError(f"building the run on {device}: {_out_of_memory(err, cfg)}") from None
    forward = ddp.wrap_model(gradient.forward_fn(), device)
    num_exits = model.num_exits
    exit_macs = model.exit_macs()
    steps_per_epoch = len(data.train)
    if cfg.train.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)

    start_epoch, start_batch, step = 0, 0, 0
    acc = new_accumulators(num_exits, device)
    if checkpoint is not None:
        validate_checkpoint(checkpoint, ckpt_path, model=model, optimizer=optimizer, accumulators=acc,
                            steps_per_epoch=steps_per_epoch)
        load_model_state(model, checkpoint["model"], ckpt_path)
        load_optimizer_state(optimizer, checkpoint["optimizer"], ckpt_path)
        load_state(strategy, checkpoint["strategy"], ckpt_path, "strategy")
        set_rng_state(checkpoint["rng"], device)
        start_epoch, start_batch, step = checkpoint["epoch"], checkpoint["batch"], checkpoint["step"]
        acc.update({k: v.to(device) for k, v in checkpoint["accumulators"].items()})
        if not ddp.is_main:  # the checkpoint holds rank 0's share of the per-rank counts
            acc.update({k: torch.zeros_like(acc[k]) for k in _PER_RANK})
    # compiled after the states are loaded: a CUDA graph (reduce-overhead) reads the strategy's and
    # the network's tensors at fixed addresses, so nothing it captures may predate the resume's state
    forward, stepper = compile_training(forward, strategy, cfg.train.compile)  # `none`: both unchanged

    # what the run records of its processes: this segment's and, resumed, the earlier ones'
    processes = {**ddp.describe(), "segments": _segments(run_dir, (start_epoch, start_batch) if checkpoint else None,
                                                         ddp.describe())}
    # the checkpoint's states fitted and the rows of metrics.jsonl are read: now the directory is written
    logger = (RunLogger(run_dir, resume_epoch=start_epoch, tensorboard=tensorboard, name=cfg.name)
              if ddp.is_main else None)
    if ddp.is_main:  # rank 0 alone writes the run directory
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", {
            "adaptive_weights_version": library_version(),
            "git_revision": git_revision(),
            "torch_version": torch.__version__,
            **processes,
            "config": cfg.to_dict(),
        })
        if tensorboard:  # what TensorBoard's HParams view lists for this run (rewritten on resume)
            write_hparams(run_dir / "tb", cfg.to_flat(), hparam_keys)
    summary = None
    if logger is not None and checkpoint is not None and logger.rows and logger.rows[-1]["epoch"] == start_epoch:
        # a kill between the epoch's checkpoint and its summary.json: rewrite it from the row
        summary = run_summary(cfg, model, exit_macs, logger.rows[-1], data, start_epoch, logger.rows[-1]["step"],
                           completed=start_epoch == cfg.train.epochs)
        summary.update(processes)
        atomic_write_json(run_dir / "summary.json", summary)
    progress = Progress(cfg.train.epochs, steps_per_epoch, enabled=cfg.train.progress and ddp.is_main)
    progress.line(f"run {cfg.name}: {num_exits} exits at units {model.exit_units}, "
                  f"{exit_macs[-1] / 1e6:.2f}M MACs (conv+linear), {steps_per_epoch} steps/epoch on {device}")
    progress.line(describe_schedule(cfg.train))

    last_checkpoint = (start_epoch, start_batch) if checkpoint is not None else None
    inputs = data.input_record()  # the normalisation load_model puts inside the served network

    def checkpoint_now(epoch: int, batch: int) -> None:
        nonlocal last_checkpoint
        if not ddp.is_main:
            return
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "strategy": strategy.state_dict(), "rng": rng_state(device),
            "epoch": epoch, "batch": batch, "step": step,
            "accumulators": {k: v.detach().cpu() for k, v in acc.items()},
            "config": cfg.to_flat(), "version": library_version(), "input": inputs,
        })
        last_checkpoint = (epoch, batch)

    def stop_diverged(epoch: int, reason: str) -> None:
        """Record the divergence in summary.json (the last good epoch's errors, if any) and stop."""
        kept = (f"the last good checkpoint {ckpt_path} (epoch {last_checkpoint[0]}, batch {last_checkpoint[1]}) "
                "is kept" if last_checkpoint else "no checkpoint was written")
        if logger is not None:
            good = logger.rows[-1] if logger.rows else {}
            record = run_summary(cfg, model, exit_macs, good, data, int(good.get("epoch", 0)),
                              int(good.get("step", 0)), completed=False)
            record.update(processes)
            record.update(status="diverged", diverged={
                "epoch": epoch + 1, "step": step, "reason": reason,
                "checkpoint": list(last_checkpoint) if last_checkpoint else None})
            atomic_write_json(run_dir / "summary.json", record)
            logger.close()
        raise DivergedError(f"training diverged in epoch {epoch + 1} (step {step}) of {run_dir}: {reason}; "
                            f"stopped, {kept}; summary.json records the divergence (status 'diverged'): "
                            f"{AFTER_DIVERGENCE}", epoch=epoch + 1)

    # ---------------------------------------------------------------- the loop
    last_ckpt_time = time.monotonic()
    for epoch in range(start_epoch, cfg.train.epochs):
        strategy.start_epoch(epoch)
        first = start_batch if epoch == start_epoch else 0
        # the row records the rate of the epoch's last step: the one before `first` when a resume
        # from a checkpoint after the epoch's last step takes none
        lr = learning_rate(cfg.train, epoch, max(first - 1, 0), steps_per_epoch)
        data.train.set_epoch(epoch, start_batch=first)
        model.train()
        progress.start(epoch, first)
        t_epoch = time.perf_counter()
        images = 0
        batch = first
        for x, y in data.train:
            if batch >= steps_per_epoch:
                break
            if cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = set_learning_rate(optimizer, cfg.train, epoch, batch, steps_per_epoch)
            mark_step_begin(cfg.train.compile)
            try:
                loss, losses, weights, logits = training_step(forward, optimizer, stepper, x, y, objective=objective,
                                                              gradient=gradient, amp=cfg.train.amp, device=device,
                                                              mean_over_ranks=ddp.mean)
            except Exception as err:  # a solver's or the allocator's failure is a refusal, not a crash
                refusal = err if isinstance(err, RefusedError) else (
                    RefusedError(f"training step {step + 1} on {device}: {_out_of_memory(err, cfg)}")
                    if _allocation_failure(err) else None)
                if refusal is None:
                    raise
                if logger is not None:
                    logger.close()
                if last_checkpoint is not None:  # the run directory keeps its last checkpoint, untouched
                    raise refusal from None
                raise UnstartedRunError(f"{refusal} (step {step + 1}, before the run's first checkpoint)") from None
            # epoch statistics stay on the device; read once at the epoch's end
            acc["loss"] += losses
            acc["weight"] += weights
            acc["wrong"] += (logits.detach().argmax(-1) != y).sum(1)
            acc["count"] += y.shape[0]
            acc["steps"] += 1
            acc["nonfinite"] += ~torch.isfinite(losses).all()  # averaged over ranks: the same on every rank
            batch += 1
            step += 1
            images += y.shape[0]
            if progress.due():
                elapsed = time.perf_counter() - t_epoch
                progress.update(epoch, batch, float(loss.detach()), images / max(elapsed, 1e-9))
            if cfg.train.checkpoint_minutes and time.monotonic() - last_ckpt_time > 60 * cfg.train.checkpoint_minutes:
                # rank 0's clock alone decides this, so the other ranks never learn of a divergence
                # found here: a single process stops at once; a data-parallel run keeps the last good
                # checkpoint and stops at the epoch's end, where every rank checks (the state stays
                # non-finite), rather than leave the others waiting in the next collective
                reason = _divergence(model, acc, epoch_end=False) if ddp.is_main else None
                if reason and not ddp.enabled:
                    stop_diverged(epoch, reason)
                if not reason:
                    checkpoint_now(epoch, batch)
                last_ckpt_time = time.monotonic()
        train_time = time.perf_counter() - t_epoch

        # ------------------------------------------------------------ end of epoch
        row: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": lr}
        acc.update({k: ddp.sum(acc[k]) for k in _PER_RANK})
        ddp.sync_buffers(model)  # rank 0's BN statistics: evaluated and checkpointed alike
        if reason := _divergence(model, acc, epoch_end=True):  # the same answer on every rank
            stop_diverged(epoch, reason)
        row.update(epoch_train_metrics(acc, strategy, num_exits))
        steps_done = max(1, batch - first)
        row["time/epoch_s"] = train_time
        row["time/step_ms"] = 1000.0 * train_time / steps_done
        row["throughput/img_s"] = ddp.world_size * images / max(train_time, 1e-9)  # all ranks
        for split in cfg.train.eval_splits:
            if split in data.eval:
                ev = evaluate_exits(model, data.eval[split], amp=cfg.train.amp,
                                    channels_last=cfg.train.channels_last, sum_over_ranks=ddp.sum)
                for k in range(num_exits):
                    row[exit_key(f"{split}/err", k)] = ev.errors[k]
                    row[exit_key(f"{split}/loss", k)] = ev.losses[k]
                row[f"{split}/err/mean"] = sum(ev.errors) / num_exits
                row[f"{split}/err/final"] = ev.errors[-1]
        acc = new_accumulators(num_exits, device)
        eval_split = next((s for s in ("test", "val") if s in data.eval and s in cfg.train.eval_splits), None)
        if logger is not None:
            logger.log_epoch(row, exit_macs=exit_macs, eval_split=eval_split)  # before the checkpoint: see above
        checkpoint_now(epoch + 1, 0)
        last_ckpt_time = time.monotonic()
        summary = run_summary(cfg, model, exit_macs, row, data, epoch + 1, step,
                           completed=epoch + 1 == cfg.train.epochs)
        summary.update(processes)
        if logger is not None:
            atomic_write_json(run_dir / "summary.json", summary)
        progress.line(_epoch_line(row, cfg.train.epochs, eval_split, num_exits))
        if report is not None:
            report(row, ckpt_path)

    if logger is not None:
        logger.close()
    if summary is None:  # resumed past the end from a run without its row (older versions)
        return read_json(run_dir / "summary.json")
    return summary


def _segments(run_dir: Path, start: tuple[int, int] | None, processes: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's segments: from which position (``from_epoch``, ``from_batch``) on it trained with
    how many processes (``world_size``, ``backend``), so a run resumed at another world size records
    every one it trained with, not only the last. A resume (``start``: the checkpoint's position)
    keeps the segments of the previous ``config.json`` that began before ``start`` (the others
    were replayed) and adds one only when the processes change."""
    here = {"from_epoch": start[0] if start else 0, "from_batch": start[1] if start else 0, **processes}
    if start is None:
        return [here]
    try:
        meta = read_json(run_dir / "config.json")
    except (OSError, ValueError):
        meta = None
    meta = meta if isinstance(meta, dict) else {}
    previous = meta.get("segments")
    if not isinstance(previous, list):  # written before segments were recorded: one, from the start
        previous = [{"from_epoch": 0, "from_batch": 0, "world_size": meta.get("world_size", 1),
                     "backend": meta.get("backend")}]
    kept = [seg for seg in previous if isinstance(seg, dict) and isinstance(seg.get("from_epoch"), int)
            and isinstance(seg.get("from_batch"), int) and (seg["from_epoch"], seg["from_batch"]) < start]
    if kept and all(kept[-1].get(k) == v for k, v in processes.items()):
        return kept
    return [*kept, here]


def _allocation_failure(err: BaseException) -> bool:
    """Whether ``err`` is the allocator's refusal: CUDA's OutOfMemoryError, Python's MemoryError
    (numpy), or the RuntimeError of torch's CPU (and MPS) allocator."""
    if isinstance(err, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def _out_of_memory(err: BaseException, cfg: RunConfig) -> str:
    """What ran out and which keys size it, for a refusal."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return (f"out of memory ({first[:200]}); the network (model.n {cfg.model.n}, model.c {cfg.model.c}), the "
            f"batch (train.batch_size {cfg.train.batch_size}) or the data set's size is too large for this machine")


# what to do after a divergence: a resume would diverge again from the same last good checkpoint
AFTER_DIVERGENCE = "lower train.lr_values (or check the data) and train the new run into another out_dir"


def how_to_go_on(run_dir: Path, ckpt_path: Path) -> str:
    """What the user can do with a run directory that already holds a run: resuming a diverged
    run repeats its divergence (and one that diverged before its first checkpoint has nothing to
    resume), so only an unfinished healthy run is pointed at --resume."""
    try:
        status = read_json(run_dir / "summary.json").get("status")
    except (OSError, ValueError):
        status = None
    if status == "diverged":
        kept = "its last good checkpoint is kept" if ckpt_path.exists() else "it has no checkpoint to resume"
        return f"it diverged (summary.json: status 'diverged'; {kept}): {AFTER_DIVERGENCE}, or remove this one"
    return "pass resume=True (--resume) or another out_dir"


# accumulators that count this rank's own images (summed over ranks at the epoch's end); the loss
# vector is already averaged over ranks in the step, and the weights and steps are the same on all
_PER_RANK = ("wrong", "count")


def new_accumulators(num_exits: int, device: torch.device) -> dict[str, torch.Tensor]:
    z = torch.zeros(num_exits, device=device)
    return {"loss": z.clone(), "weight": z.clone(), "wrong": torch.zeros(num_exits, device=device, dtype=torch.long),
            "count": torch.zeros((), device=device, dtype=torch.long),
            "steps": torch.zeros((), device=device, dtype=torch.long),
            "nonfinite": torch.zeros((), device=device, dtype=torch.long)}


def _divergence(model: torch.nn.Module, acc: dict[str, torch.Tensor], *, epoch_end: bool) -> str | None:
    """Why training cannot go on, or None: the model's parameters or buffers are non-finite (SGD
    never recovers from that), or, at an epoch's end, the loss was non-finite in every step of the
    epoch. One read from the device."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    state_ok = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
    ok, nonfinite, steps = torch.stack([state_ok.long(), acc["nonfinite"], acc["steps"]]).tolist()
    if not ok:
        bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
        return f"the model's parameters/buffers became non-finite (NaN or inf), e.g. {', '.join(bad[:3])}"
    if epoch_end and steps and nonfinite == steps:
        return f"the training loss was non-finite (NaN or inf) in all {steps} steps of the epoch"
    return None


def epoch_train_metrics(acc: dict[str, torch.Tensor], strategy, num_exits: int) -> dict[str, float]:
    """Mean train loss/error/weight per exit, the strategy's probabilities and statistics: one
    transfer to the host for the whole epoch."""
    steps = acc["steps"].clamp(min=1).double()
    parts = {
        "train/loss": acc["loss"].double() / steps,
        "train/err": acc["wrong"].double() / acc["count"].clamp(min=1).double(),
        "train/weight": acc["weight"].double() / steps,
        "train/prob": strategy.probabilities().double(),
    }
    for name, value in strategy.stats().items():
        parts[f"strategy/{name}"] = value.detach().double()
    # one transfer for everything: concatenate, copy once, split back by size
    flat = torch.cat([v.reshape(-1) for v in parts.values()]).cpu().tolist()
    row: dict[str, float] = {}
    offset = 0
    for prefix, value in parts.items():
        values, offset = flat[offset:offset + value.numel()], offset + value.numel()
        if value.dim() == 0:
            row[prefix] = float(values[0])
        elif len(values) == num_exits:
            row.update({exit_key(prefix, k): float(v) for k, v in enumerate(values)})
        else:
            row.update({f"{prefix}/{i:02d}": float(v) for i, v in enumerate(values)})
    return row


def run_summary(cfg: RunConfig, model, exit_macs: list[int], row: dict[str, Any], data, epochs: int,
             step: int, *, completed: bool) -> dict[str, Any]:
    k = model.num_exits

    def errs(split: str) -> list[float] | None:
        key = exit_key(f"{split}/err", 0)
        return [row[exit_key(f"{split}/err", i)] for i in range(k)] if key in row else None

    return {
        "name": cfg.name,
        "completed": completed,
        "status": "completed" if completed else "unfinished",
        "epochs": epochs,
        "steps": step,
        "num_units": model.num_units,
        "exit_units": list(model.exit_units),
        "exit_macs": list(exit_macs),
        "macs_convention": model.macs_convention,
        "errors": {"val": errs("val"), "test": errs("test")},
        "num_classes": data.num_classes,
        "strategy": cfg.strategy.name,
        "scheme": cfg.scheme.name,
        "config": cfg.to_flat(),
        "library_version": library_version(),
    }


def _epoch_line(row: dict[str, Any], total: int, split: str | None, k: int) -> str:
    msg = f"epoch {row['epoch']}/{total} lr {row['lr']:.4g} train loss(final) {row[exit_key('train/loss', k - 1)]:.4f}"
    if split:
        msg += (f" | {split} err final {100 * row[f'{split}/err/final']:.2f}% "
                f"mean {100 * row[f'{split}/err/mean']:.2f}%")
    return msg + f" | {row['throughput/img_s']:,.0f} img/s"
