"""Learning-rate schedules as pure functions of (epoch, step within the epoch).

A rate depends only on where training is, never on what happened before, so a run resumed at any
epoch or batch continues with exactly the rates of an uninterrupted one (no scheduler state to
save). ``train.lr_schedule``:

- ``step`` (the paper's recipes, the default): ``lr_values[i]`` once ``i`` of ``lr_milestones`` have
  passed; a milestone ``e`` takes effect after epoch ``e`` has finished (tensorpack's convention).
- ``cosine``: from ``lr_values[0]`` down to 0 at the end of the last epoch (half a cosine).
- ``onecycle``: up from ``lr_values[0] / 25`` to ``lr_values[0]`` over the warm-up (``warmup_epochs``,
  or the first 30% of the run when that is 0), then half a cosine down to ``lr_values[0] / 25e4``
  (the shape of ``torch.optim.lr_scheduler.OneCycleLR``'s defaults).

``train.warmup_epochs`` (``step`` and ``cosine``) ramps the rate linearly from almost 0 to the
schedule's value over the first epochs, step by step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["LR_SCHEDULES", "lr_at_epoch", "learning_rate", "set_learning_rate", "describe_schedule"]

LR_SCHEDULES = ("step", "cosine", "onecycle")
_ONECYCLE_START, _ONECYCLE_END, _ONECYCLE_RISE = 25.0, 25e4, 0.3


def lr_at_epoch(epoch: int, milestones: Sequence[int], values: Sequence[float]) -> float:
    """Step schedule: ``values[i]`` once ``i`` milestones have passed (epochs from 0; a milestone
    ``e`` takes effect after epoch ``e`` has finished, as in tensorpack)."""
    return values[sum(1 for m in milestones if epoch >= m)]


def learning_rate(train: Any, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The rate of step ``step`` (0-based) of epoch ``epoch`` under the resolved ``train`` section
    (``lr_schedule``, ``lr_milestones``, ``lr_values``, ``epochs``, ``warmup_epochs``)."""
    steps_per_epoch = max(1, steps_per_epoch)
    t = epoch + (step + 1) / steps_per_epoch           # epochs done once this step is taken
    base, epochs, warmup = train.lr_values[0], train.epochs, train.warmup_epochs
    if train.lr_schedule == "onecycle":
        rise = warmup if warmup > 0 else _ONECYCLE_RISE * epochs
        if t <= rise:
            low = base / _ONECYCLE_START
            return low + (base - low) * _half_cosine_up(t / rise)
        low = base / _ONECYCLE_END
        return low + (base - low) * _half_cosine_down((t - rise) / max(epochs - rise, 1e-12))
    if train.lr_schedule == "cosine":
        # the decay runs after the warm-up: the peak rate is reached once the ramp ends
        lr = base * _half_cosine_down((t - warmup) / max(epochs - warmup, 1e-12)) if t > warmup else base
    else:
        lr = lr_at_epoch(epoch, train.lr_milestones, train.lr_values)
    if warmup > 0 and t < warmup:
        lr *= t / warmup
    return lr


def set_learning_rate(optimizer: Any, train: Any, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Put :func:`learning_rate` into every parameter group of ``optimizer``; returns it (a host
    float: no device work)."""
    lr = learning_rate(train, epoch, step, steps_per_epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def describe_schedule(train: Any) -> str:
    """One line for the start of a run: preset, epochs, schedule, rates, warm-up, optimiser options."""
    if train.lr_schedule == "step":
        steps = ", ".join(f"{v:g} after epoch {e}" for e, v in zip(train.lr_milestones, train.lr_values[1:],
                                                                     strict=True))
        rates = f"step lr {train.lr_values[0]:g}" + (f", {steps}" if steps else "")
        rates += _preset_note(train)
    else:
        rates = f"{train.lr_schedule} lr {train.lr_values[0]:g}"
    extras = [f"warm-up {train.warmup_epochs} epochs"] if train.warmup_epochs else []
    extras += [f"label smoothing {train.label_smoothing:g}"] if train.label_smoothing else []
    extras += ["nesterov"] if train.nesterov else []
    return (f"schedule: preset {train.preset}, {train.epochs} epochs, {rates}; batch {train.batch_size}, "
            f"momentum {train.momentum:g}, weight decay {train.weight_decay:g}"
            + "".join(f", {e}" for e in extras))


def _preset_note(train: Any) -> str:
    """How a preset's step schedule was fitted to a run of another length (``config.scaled_steps``),
    or "" when the run has the preset's length or milestones of its own."""
    from .config import PRESETS, scaled_steps

    if train.preset not in PRESETS:
        return ""
    epochs, milestones, values = PRESETS[train.preset]
    if train.epochs == epochs:
        return ""
    scaled, kept = scaled_steps(milestones, values, epochs, train.epochs)
    factor = train.batch_size / 256 if train.preset == "imagenet" else 1.0  # as config._resolve_train scales them
    if tuple(train.lr_milestones) != scaled or not all(
            math.isclose(v, k * factor) for v, k in zip(train.lr_values, kept, strict=False)) \
            or len(train.lr_values) != len(kept):
        return ""  # milestones or rates of the user's own
    note = f" (the {train.preset} preset's {epochs}-epoch steps scaled to {train.epochs} epochs"
    if train.epochs < epochs:
        note += ", each rate kept for one epoch at least"
    dropped = len(values) - len(kept)
    if dropped:
        note += f"; its last {dropped} rate{'s' if dropped > 1 else ''} dropped: no epoch left for {'them' if dropped > 1 else 'it'}"
    return note + ")"


def _half_cosine_down(x: float) -> float:
    """1 at x = 0 down to 0 at x = 1."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(x, 0.0), 1.0)))


def _half_cosine_up(x: float) -> float:
    return 1.0 - _half_cosine_down(x)
