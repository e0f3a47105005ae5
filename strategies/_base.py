"""The `Strategy` interface and the two small bases most strategies build on.

A strategy sees only tensors: it turns the scheme's weights into this step's loss weights and learns
from the detached per-exit losses. All state lives in tensors on `base_weights.device` that are
allocated once and then updated in place; sampling uses the strategy's own seeded counter-based
generator (`_rng`, a 0-d tensor) and an inverse-CDF draw, so no step forces a host-device
synchronisation. Python-side state (epoch, whether learning is on) changes only in `start_epoch` and
`load_state_dict`, never per step and never from tensor values.

Capture safety: `step_weights()` and `observe()` of a strategy with `capture_safe = True` are plain
tensor code that `torch.compile(fullgraph=True)` traces as one graph and a CUDA graph can replay:
no `.item()`/`bool(tensor)`/`.tolist()`, no `torch.Generator`, no Python value that changes per step,
and state kept in the tensors allocated at setup (the base class writes `update()`'s new tensors back
into them). `capture_check` (`adaptive_weights.strategies`) verifies this on a copy before a compiled run
trusts it.

Writing a new strategy (see `builtin` for the built-ins):

    @register_strategy("greedy", description="follow the best recent reward, mixed with uniform")
    class Greedy(RewardLearner):
        feedback = "full"
        hparams = {**RewardLearner.hparams, "decay": HParam(0.9, float, 0, 1, doc="reward decay")}
        state_tensors = ("score",)

        def setup(self):
            super().setup()
            self.score = torch.zeros(self.K, device=self.device)

        def learn(self, rewards):  # assign a new tensor: observe() keeps it only if finite
            self.score = self.decay * self.score + rewards

        def probabilities(self):
            return mix_uniform(torch.softmax(self.score, 0), self.gamma)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from ._hparams import HParam, grid_of, resolve_hparams
from ._rewards import relative_rewards
from ._rng import advance, next_uniform, seed_state, uniform_block

__all__ = ["FEEDBACK", "Feedback", "RewardLearner", "SamplingStrategy", "Strategy", "mix_uniform"]

Feedback = Literal["none", "full", "bandit"]
FEEDBACK: tuple[str, ...] = ("none", "full", "bandit")


def mix_uniform(q: Tensor, gamma: float) -> Tensor:
    """`(1 - gamma) * q + gamma / K`: explicit exploration that keeps every probability >= gamma/K."""
    return q * (1.0 - gamma) + gamma / q.shape[0]


class Strategy:
    """Decides each step's loss weights over the K exits; learns from the per-exit losses.

    Contract: `step_weights()` -> float32 [K] weights for the coming step; `observe(losses)` with the
    step's detached per-exit mean losses; `probabilities()` -> the current sampling distribution (a
    point of the simplex); `start_epoch(epoch)` (epochs from 0); `state_dict()`/`load_state_dict()`
    (exact resume, generator included); `search_space()`; `spec()`; `stats()`.

    Subclasses declare `feedback`, `hparams` and `state_tensors` (the learnt tensors: `observe`
    reverts them when a loss or the update is not finite), create them in `setup()` and implement
    `update(losses)`, which must assign new tensors rather than modify them in place. After
    `setup()` the learnt float32 tensors become views of one flat buffer (`_fuse_learnt`: one
    kernel keeps or reverts them all), and in a pack (`StrategyGroups`) every state tensor may become
    a row of a stacked tensor: read them through `self`, never keep another reference from `setup`. A subclass
    whose `step_weights`/`update` follow the capture-safety rules of this module declares
    `capture_safe = True` (the library's bases and built-ins do); otherwise a compiled run steps it
    eagerly, with a warning.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    feedback: ClassVar[Feedback] = "none"
    hparams: ClassVar[dict[str, HParam]] = {}
    state_tensors: ClassVar[tuple[str, ...]] = ()
    #: learning starts at this epoch; a class without a `warmup_epochs` hyper-parameter learns from 0.
    warmup_epochs: int = 0
    #: the author's declaration that the step is capture-safe (verified by `capture_check` before use).
    capture_safe: ClassVar[bool] = False

    def __init__(self, base_weights: Tensor, *, seed: int = 0, **hparams: Any) -> None:
        self._init(base_weights, seed, self.validate_hparams(hparams))

    @classmethod
    def from_resolved(cls, base_weights: Tensor, *, seed: int = 0, hparams: dict[str, Any]) -> Strategy:
        """Build from hyper-parameters that `validate_hparams` already returned (a resolved run
        config holds them): they are trusted, not validated again. A subclass with its own
        `__init__` is built through it, so nothing it does is skipped."""
        if cls.__init__ is not Strategy.__init__:
            return cls(base_weights, seed=seed, **hparams)
        obj = cls.__new__(cls)
        obj._init(base_weights, seed, dict(hparams))
        return obj

    def _init(self, base_weights: Tensor, seed: int, hparams: dict[str, Any]) -> None:
        self._hparams = hparams
        for key, value in self._hparams.items():
            setattr(self, key, value)
        self.base = _check_base_weights(base_weights, type(self).__name__)
        self.device = self.base.device
        self.K = int(self.base.shape[0])
        self.seed = int(seed)
        self.rng_state = torch.tensor(seed_state(self.seed), dtype=torch.int64, device=self.device)
        self._uniforms: Tensor | None = None  # eager cache of the stream's next numbers (see `uniform`)
        self._uniforms_used = 0
        self.epoch = 0
        self._learning = self.epoch >= self.warmup_epochs
        self.steps = torch.zeros((), dtype=torch.int64, device=self.device)
        self.skipped = torch.zeros((), dtype=torch.int64, device=self.device)
        self.setup()
        self._learnt = (*self.state_tensors, *self._learnt_stat_tensors())
        self._learnt_flat = _fuse_learnt(self, self._learnt)

    # -- to override -----------------------------------------------------------------------------
    def setup(self) -> None:
        """Create the state tensors named in `state_tensors` (called once by `__init__`)."""

    def step_weights(self) -> Tensor:
        """The float32 [K] loss weights for the coming step."""
        raise NotImplementedError

    def update(self, losses: Tensor) -> None:
        """Learn from one step's per-exit losses (only called while `active`). Assign new state
        tensors, never modify them in place: if a loss or the new state is not finite, `observe`
        restores the old tensors, so NaN or inf may pass through here but never persist."""

    def probabilities(self) -> Tensor:
        """The current sampling distribution over exits (default: each exit's share of the weights)."""
        return self.base / self.base.sum()

    def probability_floor(self) -> float:
        """A lower bound that `probabilities()` never goes below (for tests and for users)."""
        return 0.0

    # -- shared machinery ------------------------------------------------------------------------
    @classmethod
    def validate_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Full resolved hyper-parameters (defaults filled); bad keys or values raise ValueError."""
        return resolve_hparams(f"strategy {cls.name or cls.__name__!r}", cls.hparams, hparams)

    @classmethod
    def search_space(cls) -> dict[str, list]:
        """The paper's grid for this strategy's hyper-parameters (empty when it has none)."""
        return grid_of(cls.hparams)

    @property
    def active(self) -> bool:
        """Whether learning is on (it is frozen while `epoch < warmup_epochs`). A plain bool set by
        `start_epoch`, so a compiled step is traced at most twice (frozen and learning), not per epoch."""
        return self._learning

    def uniform(self) -> Tensor:
        """One 0-d float32 uniform number in [0, 1) from the strategy's own stream (in place, no sync).

        Traced, it hashes the advanced state in the graph, and drops the eager cache (a write that
        dynamo replays and never guards on). Eager, it reads the number from a cached block of the
        same stream and only advances the state (2 kernels instead of about 15); the cache is valid
        while only eager draws advance the state (compiled draws and `load_state_dict` drop it).
        """
        if torch.compiler.is_compiling():
            self._uniforms = None
            return next_uniform(self.rng_state)
        if self._uniforms is None or self._uniforms_used == _UNIFORM_BLOCK:
            self._uniforms, self._uniforms_used = uniform_block(self.rng_state, _UNIFORM_BLOCK), 0
        u = self._uniforms[self._uniforms_used]
        self._uniforms_used += 1
        advance(self.rng_state)
        return u

    def start_epoch(self, epoch: int) -> None:
        """Tell the strategy that epoch `epoch` (from 0) begins; a new epoch resets the per-epoch
        statistics. Idempotent: a trainer resuming mid-epoch calls it again with the same epoch."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        if epoch != self.epoch:
            self.reset_stats()
        self.epoch = epoch
        self._learning = epoch >= self.warmup_epochs

    def observe(self, losses: Tensor) -> None:
        """Learn from the step's detached per-exit mean losses `[K]`.

        A step whose losses or resulting state are not finite is skipped for learning and counted in
        `stats()["skipped"]`; this is decided on the device with `torch.where`, without a sync. The
        kept values are written back into the state tensors in place, so their storage never changes.
        """
        losses = losses.detach().to(device=self.device, dtype=torch.float32)
        if losses.shape != (self.K,):
            raise ValueError(f"losses must have shape ({self.K},), got {tuple(losses.shape)}")
        self.steps.add_(1)
        if not self.active:
            self.skipped.add_(_not_finite(losses))
            return
        learnt = self._learnt
        old = {name: getattr(self, name) for name in learnt}
        eager = not torch.compiler.is_compiling()  # the in-place check reads versions: eager only
        versions = {name: t._version for name, t in old.items()} if eager else {}
        self.update(losses)
        new = [getattr(self, name) for name in learnt]
        for name, t in zip(learnt, new, strict=True):
            if eager and t is old[name] and t._version != versions[name]:
                raise RuntimeError(f"{type(self).__name__}.update modified {name!r} in place; assign a new tensor")
        # one check for the losses and every learnt tensor: the step counts only if all are finite
        candidate = torch.cat([losses, *(t.reshape(-1).float() for t in new)]) if new else losses
        bad = _not_finite(candidate)
        flat = self._learnt_flat
        if flat is not None:  # the learnt tensors are views of `flat`: one kernel keeps or reverts all
            torch.where(bad, flat, candidate[self.K:], out=flat)
            for name in learnt:
                setattr(self, name, old[name])
        else:
            for name, t in zip(learnt, new, strict=True):
                kept = old[name]
                kept.copy_(torch.where(bad, kept, t))
                setattr(self, name, kept)
        self.skipped.add_(bad)

    def unfuse_learnt(self) -> None:
        """Give every learnt tensor its own storage again (values kept), as before `_fuse_learnt`.

        For a compiled step (`CompiledSteps`, `capture_check`): graph inputs that are views of one
        buffer and are written make AOTAutograd rebuild them from a synthetic base on every call,
        which costs more than the kernels the fused buffer saves; a compiled graph fuses the
        per-tensor updates anyway."""
        if self._learnt_flat is None:
            return
        for name in self._learnt:
            setattr(self, name, getattr(self, name).clone())
        self._learnt_flat = None

    def reset_stats(self) -> None:
        """Clear the per-epoch statistics (called by `start_epoch`)."""

    def stats(self) -> dict[str, Tensor]:
        """Small on-device tensors worth logging once per epoch."""
        return {"skipped": self.skipped}

    def spec(self) -> dict[str, Any]:
        """`{"name": ..., **hparams}`: JSON- and Ray-Tune-friendly, enough to rebuild the object."""
        return {"name": self.name, **self._hparams}

    def state_dict(self) -> dict[str, Any]:
        """Complete state (tensors and plain Python values only: `torch.load(weights_only=True)` reads it)."""
        tensors = {name: getattr(self, name).detach().clone() for name in self._all_tensor_names()}
        return {
            "name": self.name,
            "hparams": dict(self._hparams),
            "K": self.K,
            "seed": self.seed,
            "epoch": self.epoch,
            "steps": int(self.steps),
            "extra": self._extra_state(),
            "tensors": tensors,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()` into the existing state tensors (their storage is kept, so a step
        compiled or graph-captured before the load sees the loaded state); a different strategy, K,
        hyper-parameters or a tensor of another shape or dtype raise ValueError, before anything changes."""
        for key, mine in (("name", self.name), ("K", self.K), ("hparams", self._hparams)):
            if state.get(key) != mine:
                raise ValueError(f"state_dict {key}={state.get(key)!r} does not match this strategy's {mine!r}")
        names = set(self._all_tensor_names())
        if set(state["tensors"]) != names:
            raise ValueError(f"state_dict tensors {sorted(state['tensors'])} != expected {sorted(names)}")
        for name, value in state["tensors"].items():  # all checked before the first write
            mine = getattr(self, name)
            if not isinstance(value, Tensor) or value.shape != mine.shape or value.dtype != mine.dtype:
                got = (f"{value.dtype} {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__)
                raise ValueError(f"state_dict tensor {name!r} is {got}, expected {mine.dtype} {tuple(mine.shape)}")
        for name, value in state["tensors"].items():
            # copied in place: a compiled step (a CUDA graph) reads and writes these very storages
            getattr(self, name).copy_(value)
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
        self.steps.fill_(int(state["steps"]))
        self._learning = self.epoch >= self.warmup_epochs
        self._uniforms = None  # the stream moved: the eager cache no longer follows it
        self._load_extra_state(state["extra"])

    def _all_tensor_names(self) -> tuple[str, ...]:
        return ("skipped", "rng_state", *self.state_tensors, *self._learnt_stat_tensors(), *self._stat_tensors())

    def _stat_tensors(self) -> tuple[str, ...]:
        """Statistics tensors saved with the state but not reverted on a bad step."""
        return ()

    def _learnt_stat_tensors(self) -> tuple[str, ...]:
        """Statistics tensors fed by `update`: reverted with the state on a bad step."""
        return ()

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hparams.items())
        return f"{type(self).__name__}(K={self.K}{', ' if args else ''}{args}, device={self.device})"


class SamplingStrategy(Strategy):
    """Draws one exit `sel` per step from `probabilities()` and adds a bonus to its weight (spec §2.1).

    weights = w + onehot(sel) * 2*w_final/ratio   (ratio > 0)
    weights = onehot(sel) * 2*w_final             (ratio = 0: only the drawn exit trains)

    The first step uses the final exit (spec §2.3). The draw is an inverse-CDF lookup of one uniform
    number from the strategy's generator, all on the device; every step, the first included, takes
    one number from the stream, so the step is the same graph every time.
    """

    capture_safe: ClassVar[bool] = True

    hparams: ClassVar[dict[str, HParam]] = {
        "ratio": HParam(2.0, float, 0.0, None, (0.5, 1.0, 2.0), "bonus divisor: drawn exit gets +2*w_final/ratio; 0 = drawn exit only"),
    }

    def setup(self) -> None:
        super().setup()
        self.sel = torch.full((), self.K - 1, dtype=torch.int64, device=self.device)
        self.draws = torch.zeros(self.K, dtype=torch.int64, device=self.device)
        self._arange = torch.arange(self.K, device=self.device)
        w_final = self.base[-1]
        if self.ratio > 0:
            self._keep = self.base
            self._hit = self.base + 2.0 * w_final / self.ratio
        else:
            self._keep = torch.zeros_like(self.base)
            self._hit = torch.full_like(self.base, 2.0) * w_final
        self.onehot = self._arange == self.sel
        self.drawn_p = torch.full((self.K,), 1.0 / self.K, device=self.device)
        self.first_step = torch.ones((), dtype=torch.bool, device=self.device)
        self._last_exit = torch.full((), self.K - 1, dtype=torch.int64, device=self.device)

    def step_weights(self) -> Tensor:
        p = self.probabilities_into(self.drawn_p)  # what `sel` is drawn from (a bandit update needs p_sel)
        torch.where(self.first_step, self._last_exit, self.draw(p), out=self.sel)
        self.first_step.zero_()
        torch.eq(self._arange, self.sel, out=self.onehot)
        self.draws.add_(self.onehot)
        return torch.where(self.onehot, self._hit, self._keep)

    def probabilities_into(self, out: Tensor) -> Tensor:
        """Write `probabilities()` into the preallocated `out` and return it; a subclass may compute
        them there directly, which saves the copy (one kernel per step)."""
        return out.copy_(self.probabilities())

    def draw(self, p: Tensor) -> Tensor:
        """One index from `p` by inverse CDF, as a 0-d int64 tensor on the device (no sync).

        Leading exits of probability 0 (`cdf <= 0`) are skipped also when the number is exactly 0,
        where `cdf < u * cdf[-1]` alone would pick exit 0; for any other number this changes nothing."""
        cdf = torch.cumsum(p, 0)
        return ((cdf < self.uniform() * cdf[-1]) | (cdf <= 0)).sum().clamp_max(self.K - 1)

    def reset_stats(self) -> None:
        super().reset_stats()
        self.draws.zero_()

    def stats(self) -> dict[str, Tensor]:
        return {**super().stats(), "selected": self.sel, "draws": self.draws}

    def _stat_tensors(self) -> tuple[str, ...]:
        return (*super()._stat_tensors(), "sel", "onehot", "drawn_p", "draws", "first_step")


class RewardLearner(SamplingStrategy):
    """A sampling strategy that learns from the relative-improvement rewards of spec §3.0.

    r_k = 1 - l_{k+1}/l_k for k < K-1 and r_final = rho * max(0, r_0..r_{K-2}). Subclasses implement
    `learn(rewards)` (a bandit learner may read only `rewards[self.sel]`, drawn with probability
    `self.drawn_p[self.sel]`) and `probabilities()`. Sampling follows the initial distribution while
    `epoch < warmup_epochs`. The per-epoch mean reward in `stats()` covers every exit; it is logged,
    never learnt from.
    """

    hparams: ClassVar[dict[str, HParam]] = {
        "gamma": HParam(0.3, float, 0.0, 1.0, (0.1, 0.2, 0.3, 0.4), "uniform exploration mixed into p", low_open=True),
        "rho": HParam(0.8, float, 0.0, 1.0, (0.7, 0.8, 0.9), "final exit's reward = rho * max other reward"),
        **SamplingStrategy.hparams,
        "warmup_epochs": HParam(1, int, 0, None, (), "epochs with learning frozen (the paper: the first epoch)"),
    }

    def setup(self) -> None:
        super().setup()
        self.reward_sum = torch.zeros(self.K, device=self.device)
        self.reward_count = torch.zeros((), device=self.device)

    def learn(self, rewards: Tensor) -> None:
        """Update the learnt state from one step's reward vector (out of place)."""
        raise NotImplementedError

    def update(self, losses: Tensor) -> None:
        rewards = relative_rewards(losses, self.rho)
        self.learn(rewards)
        self.reward_sum = self.reward_sum + rewards
        self.reward_count = self.reward_count + 1.0

    def probability_floor(self) -> float:
        return self.gamma / self.K

    def reset_stats(self) -> None:
        super().reset_stats()
        self.reward_sum.zero_()
        self.reward_count.zero_()

    def stats(self) -> dict[str, Tensor]:
        return {**super().stats(), "mean_reward": self.reward_sum / self.reward_count.clamp_min(1.0)}

    def _learnt_stat_tensors(self) -> tuple[str, ...]:
        return (*super()._learnt_stat_tensors(), "reward_sum", "reward_count")


#: numbers an eager strategy draws per block of its stream (one block: about 15 kernels)
_UNIFORM_BLOCK = 256


def _not_finite(x: Tensor) -> Tensor:
    """0-d bool: some entry of `x` is not finite (s - s != 0 holds only for inf or nan; three kernels).

    A sum beyond float32 range (about 3e38) also counts as not finite, which only skips such a step.
    """
    s = x.sum()
    return (s - s) != 0


def _fuse_learnt(strategy: Strategy, names: tuple[str, ...]) -> Tensor | None:
    """Re-home the learnt tensors `names` as views of one flat float32 buffer (returned), so that
    `observe` keeps or reverts all of them with one `torch.where` instead of two kernels each.

    None (each tensor is kept and reverted on its own, as before) when there is nothing to fuse,
    a tensor is not float32 on the strategy's device, or another attribute shares a learnt
    tensor's storage (a view `setup` kept of it would stop following the re-homed tensor).
    """
    tensors = [getattr(strategy, name) for name in names]
    if len(tensors) < 2 or any(not isinstance(t, Tensor) or t.dtype != torch.float32 or t.device != strategy.device
                               for t in tensors):
        return None
    learnt = {id(t) for t in tensors}
    storages = {t.untyped_storage().data_ptr() for t in tensors}
    for value in vars(strategy).values():
        if isinstance(value, Tensor) and id(value) not in learnt and value.untyped_storage().data_ptr() in storages:
            return None
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    offset = 0
    for name, t in zip(names, tensors, strict=True):
        setattr(strategy, name, flat[offset:offset + t.numel()].view(t.shape))
        offset += t.numel()
    return flat


def _check_base_weights(base_weights: Tensor, owner: str) -> Tensor:
    """Validate once at construction (this may sync; it is not per step) and convert to float32."""
    if not isinstance(base_weights, Tensor):
        raise ValueError(f"{owner}: base_weights must be a torch.Tensor, got {type(base_weights).__name__}")
    base = base_weights.detach().to(torch.float32).clone()
    if base.ndim != 1 or base.shape[0] < 1:
        raise ValueError(f"{owner}: base_weights must be a non-empty 1-D tensor, got shape {tuple(base.shape)}")
    if not bool(torch.isfinite(base).all()) or bool((base < 0).any()) or not float(base.sum()) > 0:
        raise ValueError(f"{owner}: base_weights must be finite, non-negative and sum > 0, got {base.tolist()}")
    if not math.isfinite(float(base.sum())):
        raise ValueError(f"{owner}: base_weights sum overflows float32: {base.tolist()}")
    return base
