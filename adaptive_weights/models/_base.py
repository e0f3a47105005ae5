"""`AnytimeNet`: the base class shared by the anytime ResNets.

A subclass builds a stem, the units up to the last exit, and the channel count after every unit;
this class adds the heads and everything that depends only on that structure: the one-pass forward,
the exit-by-exit ``stem_forward``/``advance`` pair, budgeted ``anytime`` inference, analytic MACs
and the optimiser's parameter groups.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Generator, Sequence

import torch
from torch import Tensor, nn

from ..conventions import MACS_CONVENTION
from ._macs import Size, as_size, module_macs
from ._units import Head

__all__ = ["AnytimeNet", "check_positive_int", "exit_positions", "resolve_exits"]


def check_positive_int(name: str, value: object) -> int:
    """Return `value` if it is an int >= 1, else raise a ValueError naming it."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: it must be an int >= 1")
    return value


def exit_positions(num_units: int, period: int = 1) -> list[int]:
    """0-based units carrying a head: (L-1) mod period, +period, ..., L-1 (spec 1.2).

    Counting back from the last unit guarantees the final unit always has a head.
    """
    check_positive_int("num_units", num_units)
    check_positive_int("period", period)
    return list(range((num_units - 1) % period, num_units, period))


def resolve_exits(num_units: int, period: int, exits: Sequence[int] | None) -> list[int]:
    """Explicit `exits` (validated) if given, else the `period` placement."""
    check_positive_int("period", period)
    if exits is None:
        return exit_positions(num_units, period)
    given = list(exits)
    if not given:
        raise ValueError("exits=[] is not allowed: give at least one 0-based unit index")
    units = []
    for u in given:
        try:
            index = operator.index(u)  # accepts numpy integers, refuses floats
        except TypeError:
            index = None
        if index is None or isinstance(u, bool) or not 0 <= index < num_units:
            raise ValueError(f"exits contains {u!r}: unit indices must be ints in [0, {num_units - 1}]")
        units.append(int(index))
    if any(b <= a for a, b in zip(units, units[1:], strict=False)):
        raise ValueError(f"exits={units} is not allowed: indices must be strictly ascending")
    return units


class AnytimeNet(nn.Module):
    """A residual trunk with a head after selected units; all exits share one pass.

    Attributes: ``num_units`` (L of the full architecture, even when the trunk is truncated after
    the last exit), ``exit_units`` (0-based unit index of every exit), ``unit_channels`` (output
    channels of every built unit; a resolution stage is a run of equal widths), ``num_exits``,
    ``num_classes``, ``in_channels``, ``input_size`` (the default for MAC counts).
    """

    macs_convention: str = MACS_CONVENTION

    def __init__(
        self,
        stem: nn.Module,
        units: Sequence[nn.Module],
        unit_channels: Sequence[int],
        exit_units: Sequence[int],
        num_units: int,
        num_classes: int,
        in_channels: int,
        input_size: int | Sequence[int],
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        exit_units = list(exit_units)
        if len(units) != exit_units[-1] + 1:
            raise ValueError(f"{len(units)} units built but the last exit sits at unit {exit_units[-1]}")
        self.stem = stem
        self.units = nn.ModuleList(units)
        self.heads = nn.ModuleList(Head(unit_channels[u], num_classes) for u in exit_units)
        self.unit_channels = [int(unit_channels[i]) for i in range(len(units))]
        self.num_units = num_units
        self.exit_units = exit_units
        self.num_exits = len(exit_units)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = as_size(input_size)
        # Units run by advance(h, k): (first, last + 1); plain ints keep the per-exit loop cheap.
        starts = [0] + [u + 1 for u in exit_units[:-1]]
        self._segments = [(a, u + 1) for a, u in zip(starts, exit_units, strict=True)]
        self._unit_macs_cache: dict[Size, list[int]] = {}
        self._init_weights()
        self.trunk_macs()  # validates the default input size now, not at the first forward

    def _init_weights(self) -> None:
        """He (fan-in) normal for convs and Linear weights, zero biases, BN scale 1 / shift 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ----------------------------------------------------------------------------------- forward
    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input of shape {tuple(x.shape)} is not allowed: expected [batch, {self.in_channels}, H, W]"
            )
        size = (int(x.shape[2]), int(x.shape[3]))
        if size not in self._unit_macs_cache:
            self._cumulative_unit_macs(size)  # raises if the input is too small to down-sample

    def stem_forward(self, x: Tensor) -> Tensor:
        """Run the stem; the result feeds ``advance(h, 0)``."""
        self._check_input(x)
        return self.stem(x)

    def advance(self, h: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Run the units after exit k-1's unit up to and including exit k's unit, then head k.

        Returns the trunk state to pass to ``advance(., k + 1)`` and exit k's logits. Works on any
        batch, so a caller may drop finished samples between calls.
        """
        h = self.trunk_stage(h, k)
        return h, self.heads[k](h)

    def trunk_stage(self, h: Tensor, k: int) -> Tensor:
        """Trunk stage k alone: the units after exit k-1's unit up to and including exit k's unit.

        A gradient rule that acts at the stage boundaries (gradient equilibrium) runs the stages
        and heads itself with this; ``advance`` is this followed by head k.
        """
        if not 0 <= k < self.num_exits:
            raise ValueError(f"exit index k={k} is not allowed: choose 0 <= k < {self.num_exits}")
        first, stop = self._segments[k]
        units = self.units
        for i in range(first, stop):
            h = units[i](h)
        return h

    def forward(self, x: Tensor) -> Tensor:
        """All exits' logits in one pass: a tensor [num_exits, batch, num_classes]."""
        h = self.stem_forward(x)
        logits = []
        for k in range(self.num_exits):
            h, out = self.advance(h, k)
            logits.append(out)
        return torch.stack(logits)

    def anytime(
        self, x: Tensor, budget_macs: float | None = None, deadline_s: float | None = None
    ) -> Generator[tuple[int, int, Tensor], None, None]:
        """Yield ``(exit_index, macs_so_far, logits)`` exit by exit, computing only what is used.

        Before computing exit k (and before the stem, for k = 0) it stops if ``exit_macs()[k]``
        (per image, for x's spatial size) exceeds ``budget_macs``, or if ``deadline_s`` seconds have
        passed since this call (``time.perf_counter``; elapsed >= deadline stops, so
        ``deadline_s=0`` yields nothing). An exit that starts before the deadline is finished and
        yielded; time the consumer spends between yields counts. Arguments are checked and the
        clock started at the call, not at the first ``next``. Grad mode is the caller's choice.
        """
        start = time.perf_counter()
        for name, value in (("budget_macs", budget_macs), ("deadline_s", deadline_s)):
            if value is not None and (isinstance(value, bool) or not value >= 0 or math.isnan(value)):
                raise ValueError(f"{name}={value!r} is not allowed: give a number >= 0 or None")
        self._check_input(x)
        costs = self.exit_macs((int(x.shape[2]), int(x.shape[3])))
        return self._anytime(x, costs, budget_macs, deadline_s, start)

    def _anytime(
        self, x: Tensor, costs: list[int], budget: float | None, deadline: float | None, start: float
    ) -> Generator[tuple[int, int, Tensor], None, None]:
        h = None
        for k, cost in enumerate(costs):
            if budget is not None and cost > budget:
                return
            if deadline is not None and time.perf_counter() - start >= deadline:
                return
            if h is None:
                h = self.stem(x)
            h, logits = self.advance(h, k)
            yield k, cost, logits

    # -------------------------------------------------------------------------------------- MACs
    def _cumulative_unit_macs(self, size: Size) -> list[int]:
        """MACs of stem + units 0..i, for every built unit i (cached per input size)."""
        cached = self._unit_macs_cache.get(size)
        if cached is not None:
            return cached
        try:
            total, hw = module_macs(self.stem, size)
            cumulative = []
            for unit in self.units:
                macs, hw = module_macs(unit, hw)
                total += macs
                cumulative.append(total)
        except ValueError as err:
            raise ValueError(
                f"input size {size[0]}x{size[1]} is not allowed for this model ({err}); "
                f"the smallest accepted square input is {self._min_input_size()}"
            ) from None
        self._unit_macs_cache[size] = cumulative
        return cumulative

    def _min_input_size(self) -> int:
        for s in range(1, 4097):
            try:
                hw = module_macs(self.stem, (s, s))[1]
                for unit in self.units:
                    hw = module_macs(unit, hw)[1]
                return s
            except ValueError:
                continue
        raise RuntimeError("no input size up to 4096 fits this model")

    def trunk_macs(self, input_size: int | Sequence[int] | None = None) -> list[int]:
        """Per exit: MACs of the stem and all units up to that exit's unit (no heads)."""
        size = self.input_size if input_size is None else as_size(input_size)
        cumulative = self._cumulative_unit_macs(size)
        return [cumulative[u] for u in self.exit_units]

    def exit_macs(self, input_size: int | Sequence[int] | None = None) -> list[int]:
        """Per exit: MACs spent to produce it in anytime use (trunk so far + heads 0..k).

        See ``macs_convention``; computed analytically for ``input_size`` (default: the model's).
        """
        heads = 0
        out = []
        for trunk, head in zip(self.trunk_macs(input_size), self.heads, strict=True):
            heads += head.linear_macs()
            out.append(trunk + heads)
        return out

    # --------------------------------------------------------------------------------- optimiser
    def parameter_groups(self, weight_decay: float, exit_weights: Sequence[float]) -> list[dict]:
        """Parameter groups for ``torch.optim.SGD`` with the spec's decay (5.2).

        Conv kernels get `weight_decay`; head k's Linear weight and bias get
        ``weight_decay * exit_weights[k]`` (heads with equal decay share a group, so the optimiser
        runs few groups); BN parameters get 0. Every parameter appears exactly once; each group
        carries a "name" for logs.
        """
        if isinstance(weight_decay, bool) or not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay={weight_decay!r} is not allowed: give a finite number >= 0")
        weights = [float(w) for w in exit_weights]
        if len(weights) != self.num_exits:
            raise ValueError(
                f"exit_weights has {len(weights)} entries: this model has {self.num_exits} exits"
            )
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ValueError(f"exit_weights={weights} is not allowed: weights must be finite and >= 0")
        convs = [m.weight for m in self.modules() if isinstance(m, nn.Conv2d)]
        convs += [m.bias for m in self.modules() if isinstance(m, nn.Conv2d) and m.bias is not None]
        norms = [p for m in self.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
        groups = [
            {"params": convs, "weight_decay": float(weight_decay), "name": "conv"},
            {"params": norms, "weight_decay": 0.0, "name": "bn"},
        ]
        by_decay: dict[float, list[int]] = {}
        for k, w in enumerate(weights):
            by_decay.setdefault(float(weight_decay) * w, []).append(k)
        for decay, ks in by_decay.items():
            params = [p for k in ks for p in self.heads[k].parameters()]
            groups.append({"params": params, "weight_decay": decay, "name": f"heads{ks}"})
        grouped = [id(p) for g in groups for p in g["params"]]
        if len(grouped) != len(set(grouped)) or set(grouped) != {id(p) for p in self.parameters()}:
            raise RuntimeError("parameter groups do not cover every parameter exactly once")
        return groups
