"""Multi-task gradient balancers on the shared trunk, through TorchJD (Quinton & Rey, "Jacobian
Descent for Multi-Objective Optimization", 2024; https://github.com/SimplexLab/TorchJD).

Each exit is a task. The Jacobian of the weighted losses ``[w_k L_k]`` with respect to the chosen
trunk parameters (one row per exit of weight > 0) is aggregated into one update by a TorchJD
aggregator; every other parameter (the heads, and the trunk outside ``scope``) gets the ordinary
gradient of ``sum_k w_k L_k``, which for a head is its own exit's gradient anyway.

``scope`` bounds the cost: the Jacobian needs one backward pass per exit (batched with vmap) from
the losses down to the deepest chosen parameter, and K rows of their size in memory.

- ``trunk``: the stem and every unit;
- ``last-group``: the units of the final width (the ResNet's last resolution group), so the extra
  backward passes stop at that group; only the exits placed in it are rows (the others cannot reach
  it).

An exit whose weight is 0 this step (a sampling strategy with ``ratio 0``, ``round-robin``) trains
nothing this step, so it is no row of the Jacobian: as a zero row it would make the min-norm point of
MGDA and CAGrad's solution 0 (no update of those parameters at all) and would count in UPGrad's
mean. Choosing the rows reads the weights on the host once per step, as the aggregators do anyway.
TorchJD is an install extra: ``pip install 'adaptive-weights[multitask]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import RefusedError
from ..strategies._hparams import HParam
from ._api import GradientRule, register_gradient_rule

__all__ = ["CAGradRule", "MGDARule", "PCGradRule", "TorchJDRule", "UPGradRule", "SCOPES"]

SCOPES = ("trunk", "last-group")
_EXTRA = "pip install 'adaptive-weights[multitask]'"


class TorchJDRule(GradientRule):
    """Aggregate the per-exit Jacobian on the chosen trunk parameters with a TorchJD aggregator."""

    compilable = False  # torch.vmap (the Jacobian's batched backward) cannot go through compiled outputs
    hparams: ClassVar[dict[str, HParam]] = {
        "scope": HParam("trunk", str, choices=SCOPES, doc="trunk parameters the aggregator acts on"),
    }

    def make_aggregator(self) -> Any:
        """The `torchjd.aggregation.Aggregator` of this rule."""
        raise NotImplementedError

    def setup(self) -> None:
        try:
            self.aggregator = self.make_aggregator()
        except ImportError as err:
            raise RefusedError(f"gradient.name: {self.name!r} needs TorchJD and its solvers ({err}); "
                               f"install them with {_EXTRA}") from None
        first_unit, shared = _trunk_parameters(self.model, self.scope)
        ids = {id(p) for p in shared}
        self.shared = shared
        self.others = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        # exits before the chosen units would be all-zero rows: leave them out of the Jacobian
        self.first_row = next(k for k, u in enumerate(self.model.exit_units) if u >= first_unit)

    def backward(self, weights: Tensor, losses: Tensor) -> Tensor:
        from torchjd.autojac import backward, jac_to_grad

        weighted = weights * losses                               # [K], one Jacobian row per exit
        loss = weighted.sum()
        torch.autograd.backward(loss, inputs=self.others, retain_graph=True)
        rows = torch.nonzero(weights[self.first_row:]).flatten() + self.first_row  # the exits that train
        if rows.numel() == 0:  # none of them reaches the chosen units: their gradient is 0, as with `sum`
            for p in self.shared:
                p.grad = torch.zeros_like(p)
            return loss
        if not bool(torch.isfinite(weighted[rows]).all()):  # diverged: NaN gradients, as `sum` gives, and
            for p in self.shared:                          # the run stops as diverged (the solvers would fail)
                p.grad = torch.full_like(p, float("nan"))
            return loss
        backward(weighted[rows], inputs=self.shared)
        try:
            jac_to_grad(self.shared, self.aggregator)
        except _solver_errors() as err:
            first = (str(err).strip().splitlines() or [""])[0]
            hparams = ", ".join(f"gradient.{k} {v!r}" for k, v in self._hparams.items())
            raise RefusedError(f"gradient.name {self.name!r} ({hparams}): its aggregator's solver failed on this "
                               f"step's Jacobian ({type(err).__name__}: {first}); try other hyper-parameters or "
                               "gradient.name 'upgrad' or 'sum'") from None
        return loss


def _trunk_parameters(model: nn.Module, which: str) -> tuple[int, list[nn.Parameter]]:
    """The first unit index of the chosen part of the trunk and its parameters."""
    if which == "trunk":
        first, modules = 0, [model.stem, *model.units]
    else:
        width = model.unit_channels[-1]
        first = next(i for i, c in enumerate(model.unit_channels) if c == width)
        modules = list(model.units[first:])
    return first, [p for m in modules for p in m.parameters() if p.requires_grad]


def _solver_errors() -> tuple[type[BaseException], ...]:
    """What the aggregators' solvers raise when they fail: cvxpy (CAGrad), qpsolvers (UPGrad's dual
    cone; quadprog raises ValueError), torch.linalg (a decomposition that does not converge)."""
    import importlib

    errors: list[type[BaseException]] = [torch.linalg.LinAlgError, ValueError]
    for module, name in (("cvxpy.error", "SolverError"), ("qpsolvers.exceptions", "QPError")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _torchjd(name: str) -> Callable[..., Any]:
    try:
        from torchjd import aggregation
    except ImportError:
        raise ImportError("torchjd is not installed") from None
    return getattr(aggregation, name)


@register_gradient_rule("pcgrad", description="PCGrad: project away each exit's conflict with the others (TorchJD)")
class PCGradRule(TorchJDRule):
    """PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning", Alg. 1): for each row g_i,
    in a random order of the others, if g_i . g_j < 0 then g_i <- g_i - (g_i . g_j / |g_j|^2) g_j;
    the update is the sum of the projected rows. The order is drawn from torch's global generator."""

    def make_aggregator(self) -> Any:
        return _torchjd("PCGrad")()


@register_gradient_rule("upgrad", description="UPGrad: project every row onto the dual cone of all rows, average (TorchJD)")
class UPGradRule(TorchJDRule):
    """UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization"): each row is
    projected onto the dual cone {v : J v >= 0} of all rows and the projections are averaged, so no
    exit's loss increases to first order. Needs quadprog/qpsolvers (the `multitask` extra)."""

    def make_aggregator(self) -> Any:
        return _torchjd("UPGrad")()


@register_gradient_rule("mgda", description="MGDA: min-norm point of the rows' convex hull, Frank-Wolfe (TorchJD)")
class MGDARule(TorchJDRule):
    """MGDA (Désidéri 2012; Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective
    Optimization", Alg. 2): d = sum_k a_k g_k with a = argmin_{a in simplex} |sum_k a_k g_k|^2, solved
    by Frank-Wolfe on the Gramian until the step is below ``epsilon`` or ``max_iters``."""

    hparams: ClassVar[dict[str, HParam]] = {
        **TorchJDRule.hparams,
        "epsilon": HParam(0.001, float, 0.0, None, (), "Frank-Wolfe stopping threshold", low_open=True),
        "max_iters": HParam(100, int, 1, None, (), "Frank-Wolfe iterations at most"),
    }

    def make_aggregator(self) -> Any:
        return _torchjd("MGDA")(epsilon=self.epsilon, max_iters=self.max_iters)


@register_gradient_rule("cagrad", description="CAGrad: best worst-case improvement near the mean gradient (TorchJD)")
class CAGradRule(TorchJDRule):
    """CAGrad (Liu et al. 2021, "Conflict-Averse Gradient Descent for Multi-task Learning", Alg. 1):
    d = argmax_d min_k g_k . d subject to |d - g0| <= c |g0|, g0 the mean row; solved on the Gramian
    with cvxpy (the `multitask` extra)."""

    hparams: ClassVar[dict[str, HParam]] = {
        **TorchJDRule.hparams,
        # c < 1 keeps the paper's convergence guarantee; far above 10 the update is |g0| times c and
        # the solver fails (1e12 did): refused at validation
        "c": HParam(0.5, float, 0.0, 10.0, (0.2, 0.5, 0.8), "radius of the ball around the mean gradient"),
    }

    def make_aggregator(self) -> Any:
        return _torchjd("CAGrad")(c=self.c)
