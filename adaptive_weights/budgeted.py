"""Budgeted-batch inference (the MSDNet protocol): confidence thresholds for a target average cost.

Every exit k gets a threshold T_k on the max-softmax confidence; a test sample leaves at the first
exit whose confidence reaches T_k (the last exit takes everyone left). Confidence is measured as
the log-odds ``log(p / (1 - p))`` of the max-softmax probability p: the same order as p, but it
does not saturate. In float32, p rounds to exactly 1.0 once the top logit leads by about 17, so
confident samples would all tie and leave together at the first exit whose threshold is 1.0,
far off the planned exit distribution (seen on a ResNet-56 whose deep exits are sure of
themselves). Thresholds are fitted on the
*validation* split only: a geometric exit distribution q_k proportional to p^k is chosen so that
the expected cost ``sum_k q_k * exit_macs[k]`` equals the target, then T_k is set so that a
fraction q_k of the validation samples exits at k. Inference really exits early: finished rows
are dropped from the batch before the next exit's units run, so the reported MACs are the MACs
spent (``exit_macs[k]`` for a sample leaving at k: the trunk up to exit k plus heads 0..k, for the
spatial size of the images given, as ``anytime()`` counts them).

The model needs ``stem_forward(x) -> h``, ``advance(h, k) -> (h, logits_k)`` (the units between
exits k-1 and k, then head k, on any batch), ``num_exits`` and ``exit_macs(input_size)`` (``(H, W)``
of ``x``); the anytime ResNets of :mod:`adaptive_weights.models` provide them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .progress import bar, length_of

__all__ = [
    "BudgetedOutput",
    "budgeted_inference",
    "evaluate_budgeted",
    "exit_confidences",
    "fit_thresholds",
    "geometric_exit_distribution",
    "simulate_exits",
]


def geometric_exit_distribution(exit_macs: Sequence[float], target_avg_macs: float) -> np.ndarray:
    """The exit distribution q_k proportional to p^k (k = 0..K-1) whose mean cost is the target.

    The mean cost grows strictly with p (more mass moves to later, dearer exits), so p is found by
    bisection on log p; the limits p -> 0 and p -> inf give all mass on the first or last exit,
    which is returned exactly when the target equals the first or last exit's cost.
    """
    macs = np.asarray(exit_macs, dtype=np.float64)
    if macs.ndim != 1 or macs.size == 0 or not np.all(np.isfinite(macs)) or np.any(np.diff(macs) <= 0):
        raise ValueError(f"exit_macs={list(exit_macs)} must be a non-empty, strictly increasing sequence")
    target = float(target_avg_macs)
    if not macs[0] <= target <= macs[-1]:
        raise ValueError(
            f"target_avg_macs={target_avg_macs} is not allowed: choose it in "
            f"[{macs[0]:g}, {macs[-1]:g}] (the first and last exits' costs)"
        )
    k = np.arange(macs.size, dtype=np.float64)
    one_hot = np.zeros_like(macs)
    if target == macs[0] or target == macs[-1]:
        one_hot[0 if target == macs[0] else -1] = 1.0
        return one_hot

    def dist(log_p: float) -> np.ndarray:
        z = k * log_p
        w = np.exp(z - z.max())
        return w / w.sum()

    lo, hi = -1.0, 1.0
    while float(dist(lo) @ macs) > target:
        lo *= 2.0
    while float(dist(hi) @ macs) < target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(dist(mid) @ macs) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return dist(0.5 * (lo + hi))


def _log_odds(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Log-odds of the max-softmax probability and the predicted class, over the last dimension.

    ``log(p / (1 - p)) = top logit - logsumexp(other logits)``, exact without saturation.
    """
    logits = logits.float()
    top, pred = logits.max(-1)
    others = logits.scatter(-1, pred.unsqueeze(-1), -math.inf).logsumexp(-1)
    return top - others, pred


def exit_confidences(scores: Tensor, kind: Literal["logits", "probs"] = "logits") -> Tensor:
    """Confidence ``[K, N]`` (log-odds of the max-softmax probability) of scores ``[K, N, C]``.

    ``kind="probs"`` takes probabilities instead of logits (a probability of exactly 1 gives inf).
    """
    if scores.dim() != 3:
        raise ValueError(f"scores must be [num_exits, N, num_classes]; got shape {tuple(scores.shape)}")
    if kind == "logits":
        return _log_odds(scores)[0]
    if kind == "probs":
        p = scores.double().amax(-1)
        return (p.log() - (-p).log1p()).float()
    raise ValueError(f"kind={kind!r} is not allowed: 'logits' or 'probs'")


def _fit_from_confidences(conf: Tensor, exit_macs: Sequence[float], target_avg_macs: float) -> list[float]:
    num_exits, n = conf.shape
    if num_exits != len(exit_macs):
        raise ValueError(f"confidences have {num_exits} exits but exit_macs has {len(exit_macs)}")
    if n == 0:
        raise ValueError("fitting thresholds needs at least one validation sample")
    q = geometric_exit_distribution(exit_macs, target_avg_macs)
    # Cumulative rounding: after exit k, round(n * (q_0 + ... + q_k)) samples have left in total.
    planned = [math.floor(n * c + 0.5) for c in np.cumsum(q)]
    conf = conf.detach().to("cpu", torch.float64)
    remaining = torch.ones(n, dtype=torch.bool)
    thresholds = []
    for k in range(num_exits - 1):
        leave = planned[k] - (n - int(remaining.sum()))
        candidates = conf[k][remaining]
        if leave <= 0 or candidates.numel() == 0:
            thresholds.append(math.inf)  # nobody (more) should leave here
            continue
        t = float(candidates.sort(descending=True).values[min(leave, candidates.numel()) - 1])
        thresholds.append(t)
        remaining &= conf[k] < t
    thresholds.append(-math.inf)
    return thresholds


def fit_thresholds(
    val_scores: Tensor,
    exit_macs: Sequence[float],
    target_avg_macs: float,
    *,
    kind: Literal["logits", "probs"] = "logits",
) -> list[float]:
    """Per-exit confidence thresholds for ``target_avg_macs``, fitted on validation scores.

    ``val_scores`` is ``[K, N, C]`` (every exit's logits, or probabilities with ``kind="probs"``)
    on the **validation** split; fitting on the test split would report a tuned, optimistic curve.
    Thresholds are log-odds of the max-softmax probability (see the module docstring).
    Exit k's threshold is the confidence of the ``m_k``-th most confident sample still present,
    where ``m_k`` makes the count that has left after exit k equal ``round(N * (q_0 + ... + q_k))``;
    a sample leaves when its confidence is ``>=`` the threshold (ties may take a few more). An exit
    where nobody should leave gets ``inf``; the last exit gets ``-inf`` (everyone left leaves).
    """
    return _fit_from_confidences(exit_confidences(val_scores, kind), exit_macs, target_avg_macs)


def simulate_exits(conf: Tensor, thresholds: Sequence[float]) -> Tensor:
    """Exit index ``[N]`` each sample would take, given every exit's confidence ``[K, N]``.

    The reference for :func:`budgeted_inference` (which computes the same without running the
    exits a sample never reaches) and the validation cost of a set of thresholds.
    """
    if conf.dim() != 2 or conf.shape[0] != len(thresholds):
        raise ValueError(f"conf must be [{len(thresholds)}, N]; got shape {tuple(conf.shape)}")
    passed = conf >= torch.tensor(list(thresholds), dtype=conf.dtype, device=conf.device)[:, None]
    passed[-1] = True
    return passed.to(torch.int8).argmax(0)  # the first exit that passes


class BudgetedOutput(NamedTuple):
    predictions: Tensor  # [B] class index
    exits: Tensor  # [B] exit index each sample left at
    macs: Tensor  # [B] MACs spent on each sample (exit_macs[exit])


def _check_thresholds(model: torch.nn.Module, thresholds: Sequence[float]) -> list[float]:
    values = [float(t) for t in thresholds]
    if len(values) != model.num_exits or any(math.isnan(t) for t in values):
        raise ValueError(
            f"thresholds={values} is not allowed: give {model.num_exits} numbers (one per exit), no NaN"
        )
    return values


@torch.no_grad()
def budgeted_inference(model: torch.nn.Module, x: Tensor, thresholds: Sequence[float]) -> BudgetedOutput:
    """Early-exit inference on one batch: a sample leaves at the first exit with confidence >= T_k.

    After each exit the rows that left are removed from the trunk state, so later units never see
    them. The new batch size must be known on the host, so each exit costs exactly one device sync
    (the count of leavers); the rows are then split with a stable sort and ``index_select``, which
    need none (boolean-mask indexing would sync once per mask use). The model's train/eval mode is
    the caller's choice.
    """
    t = _check_thresholds(model, thresholds)
    h = model.stem_forward(x)  # checks x's shape first
    exit_macs = torch.as_tensor(model.exit_macs(tuple(x.shape[2:])), dtype=torch.int64, device=x.device)
    batch = x.shape[0]
    predictions = torch.zeros(batch, dtype=torch.int64, device=x.device)
    exits = torch.full((batch,), model.num_exits - 1, dtype=torch.int64, device=x.device)
    rows = torch.arange(batch, device=x.device)
    for k in range(model.num_exits):
        h, logits = model.advance(h, k)
        conf, pred = _log_odds(logits)
        if k == model.num_exits - 1:
            predictions[rows] = pred
            break
        leave = conf >= t[k]
        n_leave = int(leave.sum())  # the one sync of this exit
        if n_leave == 0:
            continue
        order = torch.sort(leave.to(torch.int8), descending=True, stable=True).indices
        out, stay = order[:n_leave], order[n_leave:]
        predictions[rows[out]] = pred[out]
        exits[rows[out]] = k
        if stay.numel() == 0:
            break
        rows, h = rows[stay], h.index_select(0, stay)
    return BudgetedOutput(predictions, exits, exit_macs[exits])


def _to(device: torch.device | str | None, *tensors: Tensor) -> tuple[Tensor, ...]:
    return tensors if device is None else tuple(t.to(device, non_blocking=True) for t in tensors)


@torch.no_grad()
def _validation_confidences(
    model: torch.nn.Module, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device | str | None,
    batches: Any = None,
) -> tuple[Tensor, tuple[int, ...]]:
    """Every exit's confidence ``[K, N]`` on the loader and the spatial size of its images;
    ``batches`` (a progress bar) counts each batch."""
    chunks = []
    size: tuple[int, ...] = ()
    for x, _ in loader:
        (x,) = _to(device, x)
        size = tuple(x.shape[2:])
        h = model.stem_forward(x)
        per_exit = []
        for k in range(model.num_exits):
            h, logits = model.advance(h, k)
            per_exit.append(_log_odds(logits)[0])
        chunks.append(torch.stack(per_exit))
        if batches is not None:
            batches.update()
    if not chunks:
        raise ValueError("val_loader yielded no batch; thresholds need validation samples")
    return torch.cat(chunks, dim=1), size


def evaluate_budgeted(
    model: torch.nn.Module,
    val_loader: Iterable[tuple[Tensor, Tensor]],
    test_loader: Iterable[tuple[Tensor, Tensor]],
    targets: Sequence[float],
    *,
    device: torch.device | str | None = None,
    progress: str | None = None,
) -> list[dict]:
    """Accuracy versus average MACs on ``test_loader`` for every target average cost.

    Thresholds for each target are fitted on ``val_loader`` alone (one pass, all exits), then the
    test split is run with real early exit. Loaders yield ``(x, y)``; batches are moved to
    ``device`` if given. Each result holds ``target``, ``avg_macs`` and ``accuracy`` (test),
    ``exit_histogram`` (test samples per exit), ``thresholds`` and ``val_avg_macs`` (the cost the
    thresholds give on validation, which should be close to the target). The model runs in eval
    mode and is put back in its previous mode.

    ``progress``: the label of one bar over every batch of the whole evaluation (the validation
    pass, then one test pass per target), with an ETA, on stderr when it is a terminal.
    """
    was_training = model.training
    model.eval()
    val_batches, test_batches = length_of(val_loader), length_of(test_loader)
    total = None if val_batches is None or test_batches is None else val_batches + len(targets) * test_batches
    batches = bar(total, progress or "", unit="batch", enabled=progress is not None)
    try:
        val_conf, size = _validation_confidences(model, val_loader, device, batches)
        exit_macs = list(model.exit_macs(size))  # the MACs of these images, as budgeted_inference's
        macs_table = torch.tensor(exit_macs, dtype=torch.float64)
        results = []
        for target in targets:
            thresholds = _fit_from_confidences(val_conf, exit_macs, target)
            val_exits = simulate_exits(val_conf, thresholds).cpu()
            correct = macs = hist = 0  # device tensors after the first batch: one sync at the end
            count = 0
            for x, y in test_loader:
                x, y = _to(device, x, y)
                out = budgeted_inference(model, x, thresholds)
                correct = correct + (out.predictions == y).sum()
                macs = macs + out.macs.sum()
                hist = hist + torch.bincount(out.exits, minlength=model.num_exits)
                count += y.shape[0]
                batches.update()
            if not count:
                raise ValueError("test_loader yielded no sample")
            results.append(
                {
                    "target": float(target),
                    "avg_macs": float(macs) / count,
                    "accuracy": float(correct) / count,
                    "exit_histogram": hist.tolist(),
                    "thresholds": thresholds,
                    "val_avg_macs": float(macs_table[val_exits].mean()),
                }
            )
        return results
    finally:
        batches.close()
        model.train(was_training)
