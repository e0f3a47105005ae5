"""Several strategies of one class stepped as one: a pack's N members in one set of kernels.

In a packed run every member has its own strategy object; stepped one by one, N members cost N times
the 20-50 small kernels of one step. `StrategyGroups` stacks the state of members that share a
batchable class (same K, same device) into `[N, ...]` tensors and re-homes each member's tensors as
row views of them, so `step_weights()`/`observe()` of the whole group is one set of kernels on the
stacked rows, while every member still owns its state: `state_dict()`, `load_state_dict()`,
`start_epoch()` and a member's own `step_weights()`/`observe()` read and write the same rows.

Exactness: a member stepped in a group computes bit for bit what it computes alone. Each batched
rule applies the single rule's operations in the same order, row-wise (reductions along the last
dimension), with each member's hyper-parameters as `[N, 1]` float32 tensors holding the very float32
values the single rule's Python scalars become; integer hashing (the draws) is element-wise. Draws
come from each member's own counter-based stream (`rng_state`, a row of the stacked `[N]` state), so
they are the member's own numbers whatever the group. One CPU kernel is not row-invariant: `logaddexp`
takes a scalar path for a vector's tail, so it runs on row-strided views of padded buffers, where
each row is its own inner loop exactly as a lone `[K]` vector is. `tests/test_strategies_batched.py`
checks equality for every built-in with different hyper-parameters and seeds. On CUDA one kernel is
not either: a 1-D `cumsum` runs cub's scan and a row-wise one another scan, so a member's cdf may
differ from its lone cdf in the last bit, and its draw with it only when the uniform number falls
inside that bit of a boundary (about 1e-7 per step); a pack on a GPU is not bit-identical to lone
runs anyway (grouped convolutions round differently). Row reductions (sum, max, logsumexp) of
`[N, K]` take the same order as the 1-D ones there, since the block shape depends on K alone.

Batched here: every built-in (static, aann, uniform, quartile, eg, rwm, avgl, adaloss, round-robin,
warmup; exact classes: a subclass, e.g. a plug-in, runs per member, since its rules may differ).
Members whose learning state differs in a step (different `warmup_epochs`) take that step one by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._adaloss import AdaLossStrategy
from ._base import SamplingStrategy, Strategy
from ._curricula import RoundRobinStrategy, WarmupStrategy
from ._fixed import AANNStrategy, QuartileStrategy, StaticStrategy, UniformStrategy
from ._learners import FLOOR_FACTOR, AVGLStrategy, EGStrategy, RWMStrategy
from ._rng import next_uniform

__all__ = ["BATCHED_CLASSES", "StrategyGroups"]


class _Batch:
    """The stacked state of strategies of one exact class and K, and the generic observe."""

    def __init__(self, members: Sequence[Strategy]) -> None:
        self.members = list(members)
        first = self.members[0]
        self.N, self.K, self.device = len(self.members), first.K, first.device
        self.cls = type(first)
        self.s: dict[str, Tensor] = {}  # attribute name -> stacked [N, ...] tensor
        self._stack_state()

    # -- stacking ----------------------------------------------------------------------------
    def _stack_state(self) -> None:
        """Stack every tensor attribute (the learnt buffer as one `[N, F]` tensor) and make each
        member's attributes row views of the stacks; aliases (`_keep is base`) stay aliases."""
        first = self.members[0]
        learnt = first._learnt
        if any(m._learnt_flat is None for m in self.members):  # e.g. one was compiled: none fused
            for m in self.members:
                m.unfuse_learnt()
        skip = {"_uniforms", "_learnt_flat", *learnt}
        names = [k for k, v in vars(first).items() if isinstance(v, Tensor) and k not in skip]
        for j, name in enumerate(names):
            same = next((n for n in names[:j] if all(getattr(m, n) is getattr(m, name) for m in self.members)), None)
            self.s[name] = self.s[same] if same else torch.stack([getattr(m, name) for m in self.members])
        if first._learnt_flat is not None:
            self.flat = torch.stack([m._learnt_flat for m in self.members])
        else:
            self.flat = None
            for name in learnt:  # unfused learnt tensors: stacked like the rest
                self.s[name] = torch.stack([getattr(m, name) for m in self.members])
        for i, m in enumerate(self.members):
            for name in names:
                setattr(m, name, self.s[name][i])
            if self.flat is not None:
                m._learnt_flat = self.flat[i]
                offset = 0
                for name in learnt:
                    shape = getattr(m, name).shape
                    size = math.prod(shape)
                    setattr(m, name, self.flat[i, offset:offset + size].view(shape))
                    offset += size
            else:
                for name in learnt:
                    setattr(m, name, self.s[name][i])
        if self.flat is not None:
            offset = 0
            for name in learnt:
                shape = getattr(first, name).shape
                size = math.prod(shape)
                self.s[name] = self.flat[:, offset:offset + size].view(self.N, *shape)
                offset += size

    def hparam(self, fn: Callable[[Strategy], float]) -> Tensor:
        """`[N, 1]` float32: each member's `fn(member)`, a Python float as the single rule computes
        it (the float32 value its scalar takes in a kernel)."""
        return torch.tensor([[float(fn(m))] for m in self.members], dtype=torch.float32, device=self.device)

    # -- the step ----------------------------------------------------------------------------
    def step_weights(self) -> Tensor:
        """`[N, K]`: every member's weights for the coming step."""
        raise NotImplementedError

    def update(self, losses: Tensor) -> list[Tensor]:
        """The learnt tensors' new values `[N, ...]` in `_learnt` order (out of place)."""
        return []

    def observe(self, losses: Tensor) -> None:
        """`Strategy.observe` for every member: `losses` `[N, K]` (detached float32)."""
        active = {m.active for m in self.members}
        if len(active) > 1:  # members in different phases: one by one (their rows are their state)
            for m, row in zip(self.members, losses, strict=True):
                m.observe(row)
            return
        self.s["steps"].add_(1)
        if not active.pop():
            self.s["skipped"].add_(_not_finite_rows(losses))
            return
        new = self.update(losses)
        candidate = torch.cat([losses, *(t.reshape(self.N, -1).float() for t in new)], 1) if new else losses
        bad = _not_finite_rows(candidate)
        if self.flat is not None:
            torch.where(bad[:, None], self.flat, candidate[:, self.K:], out=self.flat)
        else:
            for name, t in zip(self.members[0]._learnt, new, strict=True):
                kept = self.s[name]
                kept.copy_(torch.where(bad.view(-1, *([1] * (kept.ndim - 1))), kept, t))
        self.s["skipped"].add_(bad)


def _not_finite_rows(x: Tensor) -> Tensor:
    """`[N]` bool: `_not_finite` of each row of `x` (the same row sum, the same test)."""
    s = x.sum(1)
    return (s - s) != 0


class _Plain(_Batch):
    """static and warmup: the weights are a stored tensor (`base` or `weights`)."""

    def step_weights(self) -> Tensor:
        return self.s["weights" if "weights" in self.s else "base"]


class _AdaLoss(_Batch):
    """`AdaLossStrategy` for N members (each its own momentum, gamma and period)."""

    def __init__(self, members: Sequence[Strategy]) -> None:
        super().__init__(members)
        self.momentum = self.hparam(lambda m: m.momentum)
        self.one_minus_momentum = self.hparam(lambda m: 1.0 - m.momentum)
        self.gamma = self.hparam(lambda m: m.gamma)
        self.one_minus_gamma = self.hparam(lambda m: 1.0 - m.gamma)
        self.period = torch.tensor([m.period for m in self.members], device=self.device)

    def step_weights(self) -> Tensor:
        return self.s["a"] * self.s["_exists"]

    def update(self, losses: Tensor) -> list[Tensor]:
        s = self.s
        ema = torch.where(s["seen"][:, None] > 0, self.momentum * s["ema"] + self.one_minus_momentum * losses, losses)
        a = ema.clamp_min(1e-12).reciprocal() + 1e-8
        a = a / a.amax(1, keepdim=True)
        a = a + s["_extra"]
        a = a / a.amax(1, keepdim=True)
        due = (s["steps"] % self.period == 0)[:, None]
        return [ema, torch.ones_like(s["seen"]), torch.where(due, self.one_minus_gamma * a + self.gamma, s["a"])]


class _RoundRobin(_Batch):
    def step_weights(self) -> Tensor:
        s = self.s
        active = (s["_arange"] == s["position"][:, None]) | s["_always"]
        torch.remainder(s["position"] + 1, self.K, out=s["position"])
        return torch.where(active, s["base"], s["_zeros"])


class _Sampling(_Batch):
    """`SamplingStrategy.step_weights` for N members: one draw each from its own stream."""

    def probabilities_into(self, out: Tensor) -> Tensor:
        return out.copy_(self.s["p"])

    def step_weights(self) -> Tensor:
        s = self.s
        p = self.probabilities_into(s["drawn_p"])
        cdf = torch.cumsum(p, 1)
        u = next_uniform(s["rng_state"])
        for m in self.members:  # their eager caches no longer follow the advanced streams
            m._uniforms = None
        drawn = ((cdf < u[:, None] * cdf[:, -1:]) | (cdf <= 0)).sum(1).clamp_max(self.K - 1)
        torch.where(s["first_step"], s["_last_exit"], drawn, out=s["sel"])
        s["first_step"].zero_()
        torch.eq(s["_arange"], s["sel"][:, None], out=s["onehot"])
        s["draws"].add_(s["onehot"])
        return torch.where(s["onehot"], s["_hit"], s["_keep"])


class _Learner(_Sampling):
    """`RewardLearner.update` for N members; subclasses give `learn` and the distribution."""

    def __init__(self, members: Sequence[Strategy]) -> None:
        super().__init__(members)
        self.rho = self.hparam(lambda m: m.rho)
        self.one_minus_gamma = self.hparam(lambda m: 1.0 - m.gamma)
        self.gamma_over_k = self.hparam(lambda m: m.gamma / m.K)

    def learn(self, rewards: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def update(self, losses: Tensor) -> list[Tensor]:
        rewards = _relative_rewards_rows(losses, self.rho)
        return [*self.learn(rewards), self.s["reward_sum"] + rewards, self.s["reward_count"] + 1.0]


def _relative_rewards_rows(losses: Tensor, rho: Tensor) -> Tensor:
    """`relative_rewards` of each row of `losses` `[N, K]`, `rho` `[N, 1]`."""
    if losses.shape[1] == 1:
        return torch.zeros_like(losses)
    prev, nxt = losses[:, :-1], losses[:, 1:]
    inner = torch.where(prev > 0, 1.0 - nxt / prev, 0.0)
    final = rho * inner.amax(1, keepdim=True).clamp_min(0.0)
    return torch.cat([inner, final], 1)


class _LogWeights(_Learner):
    """eg and rwm: `floored_log_weights` row-wise; logaddexp on padded row-strided buffers."""

    def __init__(self, members: Sequence[Strategy]) -> None:
        super().__init__(members)
        a = [FLOOR_FACTOR * m.gamma for m in self.members]
        self.log1p_neg_a = torch.tensor([[math.log1p(-x)] for x in a], dtype=torch.float32, device=self.device)
        padded = -(-self.K // 64) * 64  # rows that no kernel can merge into one long vector
        self._pad = torch.zeros(3, self.N, padded, device=self.device)
        self._x, self._floor, self._out = (b[:, : self.K] for b in self._pad)
        self._floor.copy_(self.s["_log_floor"])

    def probabilities_into(self, out: Tensor) -> Tensor:
        return torch.exp(self.s["log_w"], out=out).mul_(self.one_minus_gamma).add_(self.gamma_over_k)

    def floored(self, log_w: Tensor) -> Tensor:
        torch.sub(log_w, torch.logsumexp(log_w, 1, keepdim=True) - self.log1p_neg_a, out=self._x)
        torch.logaddexp(self._x, self._floor, out=self._out)
        return self._out


class _EG(_LogWeights):
    def learn(self, rewards: Tensor) -> list[Tensor]:
        s = self.s
        step = torch.where(s["onehot"], rewards, 0.0) / s["drawn_p"] * self.gamma_over_k
        return [self.floored(s["log_w"] + step)]


class _RWM(_LogWeights):
    def __init__(self, members: Sequence[Strategy]) -> None:
        super().__init__(members)
        self.half_gamma = self.hparam(lambda m: 0.5 * m.gamma)

    def learn(self, rewards: Tensor) -> list[Tensor]:
        return [self.floored(self.s["log_w"] + self.half_gamma * rewards)]


class _AVGL(_Learner):
    def __init__(self, members: Sequence[Strategy]) -> None:
        super().__init__(members)
        self.momentum = self.hparam(lambda m: m.momentum)

    def probabilities_into(self, out: Tensor) -> Tensor:
        w = self.s["w"]
        total = w.sum(1, keepdim=True)
        positive = total > 0
        torch.where(positive, w / torch.where(positive, total, 1.0), self.s["_uniform"], out=out)
        return out.mul_(self.one_minus_gamma).add_(self.gamma_over_k)

    def learn(self, rewards: Tensor) -> list[Tensor]:
        return [(self.momentum * self.s["w"] + rewards).clamp_min(0.0)]


#: the exact classes that batch, and their batched rules
BATCHED_CLASSES: dict[type[Strategy], type[_Batch]] = {
    StaticStrategy: _Plain, WarmupStrategy: _Plain, RoundRobinStrategy: _RoundRobin, AdaLossStrategy: _AdaLoss,
    AANNStrategy: _Sampling, UniformStrategy: _Sampling, QuartileStrategy: _Sampling,
    EGStrategy: _EG, RWMStrategy: _RWM, AVGLStrategy: _AVGL,
}
assert all(issubclass(c, SamplingStrategy) for c, b in BATCHED_CLASSES.items() if issubclass(b, _Sampling))


class StrategyGroups:
    """`step_weights()`/`observe()` of a list of strategies (a pack's active members, in order):
    members of one batchable class and K step as one `_Batch`, the rest one by one.

    `step_weights()` gives the members' weights concatenated in member order (`[sum K_m]`) and
    `observe(losses)` takes the same layout, exactly as the per-member loop did.
    """

    def __init__(self, strategies: Sequence[Strategy]) -> None:
        self.strategies = list(strategies)
        sizes = [s.K for s in self.strategies]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        keyed: dict[tuple, list[int]] = {}
        for i, s in enumerate(self.strategies):
            batchable = type(s) in BATCHED_CLASSES and sum(x is s for x in self.strategies) == 1
            keyed.setdefault((type(s), s.K, str(s.device)) if batchable else ("alone", i), []).append(i)
        self.groups: list[_Batch | Strategy] = []
        order: list[int] = []
        for key, idx in keyed.items():
            order += [p for i in idx for p in range(starts[i], starts[i] + sizes[i])]
            self.groups.append(self.strategies[idx[0]] if len(idx) == 1
                               else BATCHED_CLASSES[key[0]]([self.strategies[i] for i in idx]))
        self.group_sizes = [g.N * g.K if isinstance(g, _Batch) else g.K for g in self.groups]
        device = self.strategies[0].device if self.strategies else torch.device("cpu")
        # group order <-> member order: one gather each way (none when members come grouped)
        self.identity = order == list(range(len(order)))
        self.order = torch.tensor(order, dtype=torch.long, device=device)
        self.inverse = torch.argsort(self.order)

    @property
    def batched(self) -> int:
        """How many strategies step inside a batch (the rest step one by one)."""
        return sum(g.N for g in self.groups if isinstance(g, _Batch))

    def step_weights(self) -> Tensor:
        weights = torch.cat([g.step_weights().reshape(-1) for g in self.groups])
        return weights if self.identity else weights[self.inverse]

    def observe(self, losses: Tensor) -> None:
        losses = losses.detach().to(torch.float32)
        grouped = losses if self.identity else losses[self.order]
        for g, part in zip(self.groups, grouped.split(self.group_sizes), strict=True):
            g.observe(part.view(g.N, g.K) if isinstance(g, _Batch) else part)
