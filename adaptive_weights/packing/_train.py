"""``train_packed``: N member runs trained as one packed network, each into its own run directory.

Every member is first built exactly as ``train()`` builds it alone (its seed drawn into the global
RNG before its network, its own loader seed, its own strategy and optimiser); the pack is then a
re-layout of those N single networks (:mod:`._model`). Per step: each member's strategy gives its
weights (members sharing a strategy class as one batch, ``StrategyGroups``), one packed forward
gives every member's logits, one vectorised objective call gives every member's per-exit losses,
one backward of the members' weighted sums gives each member exactly its own gradient (members
share no parameter), and one SGD step updates all (momentum and weight decay
are element-wise; a head's decay depends on the member's scheme, so it is added to the heads'
gradients per member). Every epoch, each member's state is unpacked into its single network and
optimiser and written as an ordinary run directory.

A member whose state or loss turns non-finite stops alone (its run is marked diverged exactly as a
single run's, its block of the pack is zeroed and left out of the loss); the others go on.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_json, read_json
from .._lock import RunDirLock
from ..checkpoint import (
    load_checkpoint,
    load_model_state,
    load_optimizer_state,
    load_state,
    rng_state,
    set_rng_state,
    validate_checkpoint,
)
from ..compile_cache import use_compile_cache
from ..compiled import compile_forward, mark_step_begin
from ..config import RunConfig
from ..errors import RefusedError
from ..evaluate import autocast_for
from ..hparams import write_hparams
from ..logging import Progress, RunLogger, exit_key
from ..objectives import create_objective
from ..schedules import describe_schedule, learning_rate, set_learning_rate
from ..speed import apply_backend_settings, resolve_speed, sgd_kernel
from ..strategies import StrategyGroups
from ..training import (
    AFTER_DIVERGENCE,
    RunExistsError,
    build_model_and_strategy,
    build_network,
    check_resume,
    epoch_train_metrics,
    git_revision,
    how_to_go_on,
    library_version,
    new_accumulators,
    remove_unstarted,
    resolve_device,
    run_directory,
    run_summary,
)
from ._checkpoints import commit_checkpoints, settle_checkpoints
from ._evaluate import evaluate_packed
from ._members import PackRefusedError, check_pack
from ._model import pack_network

__all__ = ["train_packed", "pack_id", "build_pack"]


@dataclass
class _Member:
    """One member run: its single network and optimiser hold its state at every checkpoint."""

    index: int
    cfg: RunConfig
    run_dir: Path
    data: Any
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    base_weights: torch.Tensor
    strategy: Any
    objective: Any
    exit_macs: list[int]
    checkpoint: dict[str, Any] | None = None
    logger: RunLogger | None = None
    active: bool = True
    summary: dict[str, Any] | None = None
    last_checkpoint: tuple[int, int] | None = None
    acc: dict[str, torch.Tensor] = field(default_factory=dict)
    pack: dict[str, Any] = field(default_factory=dict)  # {id, size, member}: what the run records of its pack

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def num_exits(self) -> int:
        return self.net.num_exits


def pack_id(run_dirs: Sequence[Path]) -> str:
    """A short id of a pack, the same for the same member directories (recorded, never compared)."""
    return hashlib.sha1("\n".join(str(d) for d in run_dirs).encode()).hexdigest()[:12]


def train_packed(
    configs: Sequence[RunConfig],
    *,
    out_dirs: Sequence[str | Path | None] | None = None,
    resume: bool = False,
    tensorboard: bool = True,
    report: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``configs`` as one pack; returns every member's summary (as ``train()`` returns one).

    ``out_dirs[i]`` is member i's run directory (default ``results/runs/<name>``). The configs may
    differ only in the run name, ``train.seed``, ``scheme.*``, ``strategy.*`` and ``objective.*``;
    anything else is refused before any directory is written (:class:`PackRefusedError`). With
    ``resume=True`` every member continues from its checkpoint; members that diverged stay as they are.
    ``report(summaries)``: called after every epoch once every member's checkpoint and summary.json are
    written, with every member's summary in member order (a diverged member's records its divergence),
    so a caller (the packed Ray trial) can hand the whole set of run directories on as one checkpoint.
    """
    cfgs = check_pack(configs)
    outs = list(out_dirs) if out_dirs is not None else [None] * len(cfgs)
    if len(outs) != len(cfgs):
        raise PackRefusedError(f"out_dirs has {len(outs)} entries for {len(cfgs)} member configs")
    run_dirs = [run_directory(cfg, out) for cfg, out in zip(cfgs, outs, strict=True)]
    if len(set(run_dirs)) != len(run_dirs):
        dup = next(d for d in run_dirs if run_dirs.count(d) > 1)
        raise PackRefusedError(f"two members of the pack would train into {dup}: give each its own out_dir")
    _refuse_distributed()
    device = resolve_device(cfgs[0].train.device)
    with contextlib.ExitStack() as locks:
        fresh = [not d.exists() for d in run_dirs]
        for d in run_dirs:
            locks.enter_context(RunDirLock(d))
        try:
            return _train_locked(cfgs, run_dirs, device, resume=resume, tensorboard=tensorboard, report=report)
        except BaseException as err:
            for d, new in zip(run_dirs, fresh, strict=True):  # as train(): a failed start leaves nothing
                remove_unstarted(d, new, err)
            raise


def _refuse_distributed() -> None:
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PackRefusedError("a pack trains in one process on one device; it cannot run data-parallel "
                               "(WORLD_SIZE > 1): start one process per pack instead")


def _read_checkpoints(cfgs: Sequence[RunConfig], run_dirs: Sequence[Path], device: torch.device,
                      resume: bool) -> list[dict[str, Any] | None]:
    """Every member's checkpoint (resume) after settling an interrupted commit, all at one position;
    without ``resume``, a member directory that already holds a run is refused."""
    paths = [d / "checkpoints" / "last.pt" for d in run_dirs]
    if not resume:
        for d, path in zip(run_dirs, paths, strict=True):
            if path.exists() or (d / "summary.json").exists():
                raise RunExistsError(f"{d} already holds a run; {how_to_go_on(d, path)}")
        return [None] * len(cfgs)
    settle_checkpoints([p for p in paths if p.parent.is_dir()])
    checkpoints: list[dict[str, Any] | None] = []
    for cfg, d, path in zip(cfgs, run_dirs, paths, strict=True):
        if not path.exists():
            raise FileNotFoundError(f"cannot resume: {path} does not exist")
        checkpoint = load_checkpoint(path, map_location=device)
        check_resume(checkpoint, cfg, d)
        checkpoints.append(checkpoint)
    positions = {(c["epoch"], c["batch"]) for c, d in zip(checkpoints, run_dirs, strict=True)
                 if not _diverged(d)}
    if len(positions) > 1:
        raise RefusedError(f"cannot resume the pack: its members' checkpoints are at different positions "
                           f"{sorted(positions)} (epoch, batch); resume each member alone with train --resume")
    return checkpoints


def _diverged(run_dir: Path) -> bool:
    try:
        return read_json(run_dir / "summary.json").get("status") == "diverged"
    except (OSError, ValueError):
        return False


def _build_members(cfgs: Sequence[RunConfig], run_dirs: Sequence[Path], device: torch.device,
                   checkpoints: Sequence[dict[str, Any] | None]) -> list[_Member]:
    """Each member as ``train()`` builds it alone: its seed into the global RNG, then its network;
    the data set is read once and each member's loader gets its own seed."""
    from ..data import build_data, check_train_batches

    first = cfgs[0]
    shared = build_data(first.data, batch_size=first.train.batch_size, device=device, seed=first.train.seed)
    check_train_batches(shared, first.train.batch_size)
    members = []
    for i, (cfg, run_dir, checkpoint) in enumerate(zip(cfgs, run_dirs, checkpoints, strict=True)):
        data = _reseeded(shared, cfg, device)
        torch.manual_seed(cfg.train.seed)
        net, base_weights, strategy = build_model_and_strategy(cfg, data, device)
        optimizer = torch.optim.SGD(net.parameter_groups(cfg.train.weight_decay, base_weights.tolist()),
                                    lr=cfg.train.lr_values[0], momentum=cfg.train.momentum,
                                    nesterov=cfg.train.nesterov, **sgd_kernel(cfg))
        objective = create_objective(cfg.objective.name, label_smoothing=cfg.train.label_smoothing,
                                     **cfg.objective.params)
        member = _Member(i, cfg, run_dir, data, net, optimizer, base_weights, strategy, objective, net.exit_macs(),
                         checkpoint=checkpoint)
        if checkpoint is not None:  # validated against what was built before anything is loaded or written
            validate_checkpoint(checkpoint, member.ckpt_path, model=net, optimizer=optimizer,
                                accumulators=new_accumulators(net.num_exits, device),
                                steps_per_epoch=_steps_per_epoch(cfg, data))
            load_model_state(net, checkpoint["model"], member.ckpt_path)
            load_optimizer_state(optimizer, checkpoint["optimizer"], member.ckpt_path)
            load_state(strategy, checkpoint["strategy"], member.ckpt_path, "strategy")
            member.last_checkpoint = (checkpoint["epoch"], checkpoint["batch"])
        members.append(member)
    return members


def _steps_per_epoch(cfg: RunConfig, data: Any) -> int:
    steps = len(data.train)
    return min(steps, cfg.train.max_steps_per_epoch) if cfg.train.max_steps_per_epoch else steps


def _reseeded(shared: Any, cfg: RunConfig, device: torch.device) -> Any:
    """The shared data bundle with a train loader drawing member ``cfg``'s order and augmentation:
    a device-resident loader is copied with the member's seed (its draws depend on (seed, epoch)
    only, the images are shared); any other loader is built again for the member."""
    from ..data import DeviceLoader, build_data

    if isinstance(shared.train, DeviceLoader):
        loader = copy.copy(shared.train)
        loader.seed = cfg.train.seed
        return dataclasses.replace(shared, train=loader)
    return build_data(cfg.data, batch_size=cfg.train.batch_size, device=device, seed=cfg.train.seed)


class _HeadDecay:
    """The heads' weight decay per member: ``train.weight_decay * w_k`` of the member's scheme
    weights (what ``AnytimeNet.parameter_groups`` gives a single run), added to the packed heads'
    gradients before the step, since one optimiser group cannot hold N decays."""

    def __init__(self, packed: torch.nn.Module, members: Sequence[_Member], slots: Sequence[Sequence[int]],
                 weight_decay: float) -> None:
        n = len(members)
        self.params: list[torch.Tensor] = []
        self.coefficients: list[torch.Tensor] = []
        for s, head in enumerate(packed.heads):
            decay = torch.zeros(n, dtype=torch.float64)
            for m, member in enumerate(members):
                if s in slots[m]:
                    decay[m] = float(weight_decay) * member.base_weights.tolist()[list(slots[m]).index(s)]
            for p in head.parameters():
                self.params.append(p)
                self.coefficients.append(decay.to(p.device, p.dtype).view(n, *([1] * (p.dim() - 1))))

    @torch.no_grad()
    def apply(self) -> None:
        """``grad += decay * param`` for every head parameter, as two multi-tensor kernels (the
        step is bound by launches: one ``mul`` and one ``add_`` per head parameter were 3 x 54
        operators per step at n=9)."""
        live = [(p.grad, p, c) for p, c in zip(self.params, self.coefficients, strict=True) if p.grad is not None]
        if live:
            grads, params, coefficients = (list(t) for t in zip(*live, strict=True))
            torch._foreach_add_(grads, torch._foreach_mul(params, coefficients))


def _packed_optimizer(packed: torch.nn.Module, cfg: RunConfig) -> torch.optim.SGD:
    convs = [m.weight for m in packed.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [p for m in packed.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    heads = [p for h in packed.heads for p in h.parameters()]
    return torch.optim.SGD([
        {"params": convs, "weight_decay": cfg.train.weight_decay, "name": "conv"},
        {"params": norms, "weight_decay": 0.0, "name": "bn"},
        {"params": heads, "weight_decay": 0.0, "name": "heads (decay per member, added to the gradients)"},
    ], lr=cfg.train.lr_values[0], momentum=cfg.train.momentum, nesterov=cfg.train.nesterov, **sgd_kernel(cfg))


class _Pack:
    """The packed network, its optimiser and the index of the active members' exits in its outputs."""

    def __init__(self, members: list[_Member], cfg: RunConfig, device: torch.device) -> None:
        self.members = members
        self.cfg = cfg
        template_exits = sorted({u for m in members for u in m.net.exit_units})
        with torch.random.fork_rng(devices=[]):  # the template's own weights are replaced by the members'
            template = build_network(cfg, members[0].data, template_exits)
        self.model, self.layout = pack_network(template, [m.net for m in members])
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = _packed_optimizer(self.model, cfg)
        self._pack_optimizer_state()
        self.head_decay = _HeadDecay(self.model, members, self.layout.slots, cfg.train.weight_decay)
        self.forward = compile_forward(self.model, cfg.train.compile)
        self.device = device
        specs = {(m.cfg.objective.name, tuple(sorted(m.cfg.objective.params.items()))) for m in members}
        self.shared_objective = members[0].objective if len(specs) == 1 else None
        self.refresh_active()

    # ---------------------------------------------------------------- layout of the active members
    def refresh_active(self) -> None:
        """The flat index of the active members' exits in the ``[S, N]`` loss table, in member order."""
        n = len(self.members)
        self.active = [m for m in self.members if m.active]
        flat = [s * n + m.index for m in self.active for s in self.layout.slots[m.index]]
        self.flat_index = torch.tensor(flat, dtype=torch.long, device=self.device)
        self.sizes = [m.num_exits for m in self.active]
        owner = [i for i, m in enumerate(self.active) for _ in range(m.num_exits)]
        self.owner = torch.tensor(owner, dtype=torch.long, device=self.device)
        # members of one batchable strategy class step as one (their state becomes rows of stacked
        # tensors; each member's strategy object still reads and writes its own row)
        self.strategies = StrategyGroups([m.strategy for m in self.active])

    # ---------------------------------------------------------------- state in and out
    def _named_params(self) -> dict[str, torch.Tensor]:
        return dict(self.model.named_parameters())

    def _pack_optimizer_state(self) -> None:
        """The members' momentum buffers (resume) into the packed optimiser's state."""
        packed_params = self._named_params()
        member_params = [dict(m.net.named_parameters()) for m in self.members]
        for key, p in packed_params.items():
            values = []
            for i, m in enumerate(self.members):
                name = self.layout.key_map[i].get(key)
                state = m.optimizer.state.get(member_params[i][name], {}) if name else {}
                values.append(state.get("momentum_buffer"))
            if any(v is not None for v in values):
                buffer = torch.zeros_like(p)
                self.layout.pack_tensor(buffer, key, values)
                self.optimizer.state[p]["momentum_buffer"] = buffer

    def unpack_into_members(self) -> None:
        """Every active member's network, momentum and learning rate from the pack (before its checkpoint)."""
        state = self.model.state_dict()
        packed_params = self._named_params()
        lr = self.optimizer.param_groups[0]["lr"]
        for m in self.active:
            m.net.load_state_dict(self.layout.unpack(state, m.index))
            member_params = dict(m.net.named_parameters())
            for key, name in self.layout.key_map[m.index].items():
                if key in packed_params:
                    buffer = self.optimizer.state.get(packed_params[key], {}).get("momentum_buffer")
                    if buffer is not None:
                        shape = member_params[name].shape
                        m.optimizer.state[member_params[name]]["momentum_buffer"] = \
                            self.layout.member_slice(buffer, m.index).reshape(shape)
            for group in m.optimizer.param_groups:
                group["lr"] = lr

    def drop(self, member: _Member) -> None:
        """Take a diverged member out: zero its block of every tensor, leave it out of the loss."""
        member.active = False
        tensors = list(self.model.state_dict().values())
        tensors += [s["momentum_buffer"] for s in self.optimizer.state.values() if s.get("momentum_buffer") is not None]
        self.layout.zero_member(tensors, member.index)
        self.refresh_active()

    def finite_members(self) -> list[bool]:
        return self.layout.finite_members(list(self.model.state_dict().values())).tolist()

    # ---------------------------------------------------------------- the step
    def losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The active members' per-exit losses, concatenated in member order (one vectorised call
        when the members share an objective that packs)."""
        if self.shared_objective is not None:
            table = self.shared_objective.packed(logits, y)
            if table is not None:
                return table.reshape(-1)[self.flat_index]
        return torch.cat([m.objective(logits[self.layout.slots[m.index], :, m.index], y[:, m.index])
                          for m in self.active])

    def step(self, x: torch.Tensor, y: torch.Tensor, amp: bool):
        """One SGD step of every active member; returns (loss, losses, weights, logits), the flat
        ``[sum K_m]`` losses (detached, already observed) and weights in member order."""
        weights = self.strategies.step_weights()
        with autocast_for(self.device, amp):
            logits = self.forward(x)                                 # [S, B, N, classes]
        losses = self.losses(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss = (weights * losses).sum()
        loss.backward()
        self.head_decay.apply()
        self.optimizer.step()
        losses = losses.detach()
        self.strategies.observe(losses)
        return loss, losses, weights, logits


def build_pack(configs: Sequence[RunConfig], device: torch.device | str | None = None) -> _Pack:
    """The pack of ``configs`` built in memory only (no run directory): for benchmarks and for
    callers with their own loop; ``pack.step(x, y, amp)`` trains every member one step on
    ``x [B, N * C, H, W]`` (member m's images in its channel block) and ``y [B, N]``."""
    cfgs = check_pack(configs)
    device = resolve_device(cfgs[0].train.device) if device is None else torch.device(device)
    cfgs = _execution(cfgs, device)
    members = _build_members(cfgs, [Path(".")] * len(cfgs), device, [None] * len(cfgs))
    return _Pack(members, cfgs[0], device)


def _execution(cfgs: Sequence[RunConfig], device: torch.device) -> list[RunConfig]:
    """The members' configs with ``train.speed`` resolved on ``device`` (what they record), and the
    process set up for them as ``train()`` sets it up: cuDNN's algorithm search (its default choice
    for grouped convolutions is often far from the fastest), the compile cache, the thread count."""
    cfgs = [resolve_speed(cfg, device) for cfg in cfgs]  # a pack's gradient rule is sum: compilable
    apply_backend_settings(cfgs[0])
    use_compile_cache(cfgs[0].train.compile_cache, cfgs[0].train.compile)
    if cfgs[0].train.num_threads:
        torch.set_num_threads(cfgs[0].train.num_threads)
    return cfgs


def _train_locked(cfgs: Sequence[RunConfig], run_dirs: Sequence[Path], device: torch.device, *,
                  resume: bool, tensorboard: bool,
                  report: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    cfgs = _execution(cfgs, device)
    cfg = cfgs[0]  # the shared keys
    # nothing is written until every member is known to be valid (as in train())
    checkpoints = _read_checkpoints(cfgs, run_dirs, device, resume)
    members = _build_members(cfgs, run_dirs, device, checkpoints)
    for m in members:
        if _diverged(m.run_dir):
            m.active = False
            m.summary = read_json(m.run_dir / "summary.json")
    pack = _Pack(members, cfg, device)
    steps_per_epoch = _steps_per_epoch(cfg, members[0].data)
    live = pack.active
    start = next((m.checkpoint for m in live if m.checkpoint is not None), None)
    start_epoch, start_batch, step = (start["epoch"], start["batch"], start["step"]) if start else (0, 0, 0)
    if start is not None:
        set_rng_state(start["rng"], device)
    for m in live:
        m.acc = new_accumulators(m.num_exits, device)
        if m.checkpoint is not None:
            m.acc.update({k: v.to(device) for k, v in m.checkpoint["accumulators"].items()})

    ident = pack_id(run_dirs)
    for m in members:  # execution information only (config.json and summary.json)
        m.pack = {"id": ident, "size": len(members), "member": m.index}
    for m in live:  # the checkpoints are read and fit: now the directories are written
        m.logger = RunLogger(m.run_dir, resume_epoch=start_epoch, tensorboard=tensorboard, name=m.cfg.name)
        if tensorboard:  # each member is a run of its own in TensorBoard's HParams view
            write_hparams(m.run_dir / "tb", m.cfg.to_flat())
        atomic_write_json(m.run_dir / "config.json", {
            "adaptive_weights_version": library_version(), "git_revision": git_revision(),
            "torch_version": torch.__version__, "world_size": 1, "backend": None,
            "pack": m.pack, "config": m.cfg.to_dict(),
        })
        if m.checkpoint is not None and m.logger.rows and m.logger.rows[-1]["epoch"] == start_epoch:
            row = m.logger.rows[-1]
            _write_summary(m, row, start_epoch, row["step"], completed=start_epoch == cfg.train.epochs)
    progress = Progress(cfg.train.epochs, steps_per_epoch, enabled=cfg.train.progress)
    progress.line(f"pack {ident}: {len(live)} runs as one network ({', '.join(m.cfg.name for m in live)}), "
                  f"{steps_per_epoch} steps/epoch on {device}")
    progress.line(describe_schedule(cfg.train))

    def checkpoint_now(epoch: int, batch: int) -> None:
        pack.unpack_into_members()
        rng = rng_state(device)
        commit_checkpoints([m.ckpt_path for m in pack.active], [{
            "model": m.net.state_dict(), "optimizer": m.optimizer.state_dict(),
            "strategy": m.strategy.state_dict(), "rng": rng, "epoch": epoch, "batch": batch, "step": step,
            "accumulators": {k: v.detach().cpu() for k, v in m.acc.items()},
            "config": m.cfg.to_flat(), "version": library_version(), "input": m.data.input_record(),
        } for m in pack.active])
        for m in pack.active:
            m.last_checkpoint = (epoch, batch)

    last_ckpt_time = time.monotonic()
    for epoch in range(start_epoch, cfg.train.epochs):
        if not pack.active:
            break
        first = start_batch if epoch == start_epoch else 0
        lr = learning_rate(cfg.train, epoch, max(first - 1, 0), steps_per_epoch)
        for m in pack.active:
            m.strategy.start_epoch(epoch)
            m.data.train.set_epoch(epoch, start_batch=first)
        flat = _flat_accumulators(pack, device)
        pack.model.train()
        progress.start(epoch, first)
        t_epoch = time.perf_counter()
        iterators = [iter(m.data.train) for m in pack.members]  # a dropped member's images keep its block fed
        images = 0
        for batch in range(first, steps_per_epoch):
            xs, ys = zip(*(next(it) for it in iterators), strict=True)
            x, y = torch.cat(xs, dim=1), torch.stack(ys, dim=1)    # [B, N*C, H, W], [B, N]
            if cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = set_learning_rate(pack.optimizer, cfg.train, epoch, batch, steps_per_epoch)
            mark_step_begin(cfg.train.compile)
            loss, losses, weights, logits = pack.step(x, y, cfg.train.amp)
            _accumulate(flat, pack, losses, weights, logits, y)
            step += 1
            images += y.shape[0]
            if progress.due():
                progress.update(epoch, batch + 1, float(loss.detach()) / len(pack.active),
                                len(pack.active) * images / max(time.perf_counter() - t_epoch, 1e-9))
            if cfg.train.checkpoint_minutes and time.monotonic() - last_ckpt_time > 60 * cfg.train.checkpoint_minutes:
                _split_accumulators(flat, pack)
                _stop_diverged(pack, epoch, step, epoch_end=False)
                flat = _flat_accumulators(pack, device)
                if pack.active:
                    checkpoint_now(epoch, batch + 1)
                last_ckpt_time = time.monotonic()
        train_time = time.perf_counter() - t_epoch
        _split_accumulators(flat, pack)
        _stop_diverged(pack, epoch, step, epoch_end=True)
        if not pack.active:
            break

        evaluations = {split: evaluate_packed(pack.model, members[0].data.eval[split], pack.layout.slots,
                                              amp=cfg.train.amp, channels_last=cfg.train.channels_last)
                       for split in cfg.train.eval_splits if split in members[0].data.eval}
        eval_split = next((s for s in ("test", "val") if s in evaluations), None)
        steps_done = max(1, steps_per_epoch - first)
        for m in pack.active:
            row: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": lr}
            row.update(epoch_train_metrics(m.acc, m.strategy, m.num_exits))
            row["time/epoch_s"] = train_time
            row["time/step_ms"] = 1000.0 * train_time / steps_done
            row["throughput/img_s"] = images / max(train_time, 1e-9)
            for split, per_member in evaluations.items():
                ev = per_member[m.index]
                for k in range(m.num_exits):
                    row[exit_key(f"{split}/err", k)] = ev.errors[k]
                    row[exit_key(f"{split}/loss", k)] = ev.losses[k]
                row[f"{split}/err/mean"] = sum(ev.errors) / m.num_exits
                row[f"{split}/err/final"] = ev.errors[-1]
            m.logger.log_epoch(row, exit_macs=m.exit_macs, eval_split=eval_split,  # before the checkpoint
                               figures=epoch + 1 == cfg.train.epochs)
            m.acc = new_accumulators(m.num_exits, device)
        checkpoint_now(epoch + 1, 0)
        last_ckpt_time = time.monotonic()
        for m in pack.active:
            _write_summary(m, m.logger.rows[-1], epoch + 1, step, completed=epoch + 1 == cfg.train.epochs)
        progress.line(_epoch_line(pack, epoch, cfg.train.epochs, eval_split, len(pack.active) * images / max(train_time, 1e-9)))
        if report is not None:
            report([_member_summary(m) for m in members])

    for m in members:
        if m.logger is not None:
            m.logger.close()
    return [_member_summary(m) for m in members]


def _member_summary(m: _Member) -> dict[str, Any]:
    return m.summary if m.summary is not None else read_json(m.run_dir / "summary.json")


def _write_summary(m: _Member, row: dict[str, Any], epochs: int, step: int, *, completed: bool,
                   **status: Any) -> None:
    """Member ``m``'s summary.json from an epoch's row (``status``: e.g. a divergence's record)."""
    summary = run_summary(m.cfg, m.net, m.exit_macs, row, m.data, epochs, step, completed=completed)
    summary.update({"world_size": 1, "backend": None, "pack": m.pack}, **status)
    atomic_write_json(m.run_dir / "summary.json", summary)
    m.summary = summary


def _flat_accumulators(pack: _Pack, device: torch.device) -> dict[str, torch.Tensor]:
    """The active members' epoch statistics side by side (flat over their exits), from theirs."""
    act = pack.active
    if not act:
        return {}
    return {
        "loss": torch.cat([m.acc["loss"] for m in act]), "weight": torch.cat([m.acc["weight"] for m in act]),
        "wrong": torch.cat([m.acc["wrong"] for m in act]),
        "count": torch.stack([m.acc["count"] for m in act]), "steps": torch.stack([m.acc["steps"] for m in act]),
        "nonfinite": torch.stack([m.acc["nonfinite"] for m in act]),
    }


def _split_accumulators(flat: dict[str, torch.Tensor], pack: _Pack) -> None:
    """Back to each member's own accumulators (the form ``train()`` keeps and checkpoints)."""
    if not flat:
        return
    parts = {k: flat[k].split(pack.sizes) for k in ("loss", "weight", "wrong")}
    for i, m in enumerate(pack.active):
        m.acc = {"loss": parts["loss"][i], "weight": parts["weight"][i], "wrong": parts["wrong"][i],
                 "count": flat["count"][i], "steps": flat["steps"][i], "nonfinite": flat["nonfinite"][i]}


def _accumulate(flat: dict[str, torch.Tensor], pack: _Pack, losses: torch.Tensor, weights: torch.Tensor,
                logits: torch.Tensor, y: torch.Tensor) -> None:
    """This step's statistics into the epoch's, on the device (no host sync)."""
    flat["loss"] += losses
    flat["weight"] += weights
    wrong = (logits.detach().argmax(-1) != y).sum(1)                  # [S, N]
    flat["wrong"] += wrong.reshape(-1)[pack.flat_index]
    flat["count"] += y.shape[0]
    flat["steps"] += 1
    bad = torch.zeros(len(pack.active), device=losses.device).index_add_(0, pack.owner, (~torch.isfinite(losses)).float())
    flat["nonfinite"] += bad > 0


def _stop_diverged(pack: _Pack, epoch: int, step: int, *, epoch_end: bool) -> None:
    """Members whose state is non-finite (or, at an epoch's end, whose loss was non-finite in every
    step) stop alone: summary.json records it as a single run's divergence, the others go on."""
    finite = pack.finite_members()
    counts = torch.stack([torch.stack([m.acc["nonfinite"], m.acc["steps"]]) for m in pack.active]).tolist() \
        if pack.active else []
    for m, (nonfinite, steps) in zip(list(pack.active), counts, strict=True):
        if not finite[m.index]:
            reason = "the model's parameters/buffers became non-finite (NaN or inf)"
        elif epoch_end and steps and nonfinite == steps:
            reason = f"the training loss was non-finite (NaN or inf) in all {steps} steps of the epoch"
        else:
            continue
        good = m.logger.rows[-1] if m.logger.rows else {}
        _write_summary(m, good, int(good.get("epoch", 0)), int(good.get("step", 0)), completed=False,
                       status="diverged", diverged={
                           "epoch": epoch + 1, "step": step, "reason": reason,
                           "checkpoint": list(m.last_checkpoint) if m.last_checkpoint else None})
        m.logger.close()
        print(f"run {m.cfg.name}: training diverged in epoch {epoch + 1} (step {step}): {reason}; this member "
              f"stopped, the others go on; {AFTER_DIVERGENCE}", file=sys.stderr)
        pack.drop(m)


def _epoch_line(pack: _Pack, epoch: int, total: int, split: str | None, rate: float) -> str:
    msg = f"epoch {epoch + 1}/{total} | {len(pack.active)} runs"
    if split:
        finals = [m.logger.rows[-1][f"{split}/err/final"] for m in pack.active]
        msg += f" | {split} err final {100 * min(finals):.2f}..{100 * max(finals):.2f}%"
    return msg + f" | {rate:,.0f} img/s in all"
