"""Static loss-weight schemes over the exits of an anytime network (spec §1).

A scheme is a pure function ``num_exits -> raw float64 weights``; a normalisation then fixes the
scale, which matters for the effective learning rate, the heads' weight decay and the AANN constant
(spec §1.4). Position ``j = 0 .. K-1`` is the exit index, ``j = K-1`` the final exit.

Names: ``const``, ``linear``, ``half-end``, ``sieve``, ``sieve-v2``, ``exp-lin``, ``quarter``,
``eann-sieve``, ``optimal@i`` (one-hot; negative ``i`` counts from the end) and ``exp:b``
(``w_j = b**j``). Normalisations: ``last`` (final exit = 1, the default), ``sum`` (sum = 1),
``log`` (sum = log2(K+1), the 2017 scripts' convention) and ``none``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import torch

__all__ = ["NORMALIZATIONS", "list_schemes", "scheme_weights", "is_single_exit"]

NORMALIZATIONS = ("last", "sum", "log", "none")


def _const(k: int) -> np.ndarray:
    return np.ones(k)


def _linear(k: int) -> np.ndarray:
    """Zamir-style ramp from 0.25 at the first exit to 1 at the final one (spec f=6/12)."""
    if k == 1:
        return np.ones(1)
    return 0.25 + 0.75 * np.arange(k) / (k - 1)


def _half_end(k: int) -> np.ndarray:
    """Every early exit 1/(K-1), the final 1: the final exit carries half the mass (spec f=7)."""
    if k == 1:
        return np.ones(1)
    w = np.full(k, 1.0 / (k - 1))
    w[-1] = 1.0
    return w


def _sieve(k: int) -> np.ndarray:
    """SIEVE (spec §1.3, f=5): counted backwards from the final exit, an exit at distance d gets
    one plus the number of powers of two p < K dividing d; the final exit gets the sum of the rest."""
    if k == 1:
        return np.ones(1)
    w = np.zeros(k)
    p = 1
    while p < k:
        for d in range(0, k, p):
            w[k - 1 - d] += 1.0
        p *= 2
    w[-1] = w[:-1].sum()
    return w


def _sieve_v2(k: int) -> np.ndarray:
    """Forward-indexed sieve of the authors' later code (spec §1.3, f=10)."""
    if k == 1:
        return np.ones(1)
    w = np.ones(k)
    step = k / 2.0
    while round(step) > 1:
        t = 1
        while math.floor(step * t) < k:
            w[math.floor(step * t)] += 1.0
            t += 1
        step /= 2.0
    w[-1] = w[:-1].sum()
    return w


def _exp_lin(k: int) -> np.ndarray:
    """This library's ``exp-lin`` (DESIGN.md; not in the authors' code).

    The final exit holds half the total weight. The other half is split equally among the depth
    bands (K/2, K), (K/4, K/2], (K/8, K/4], ... (exits at depths 1..K), skipping bands without an
    exit, and spread uniformly over the exits inside each band: the earliest exits keep a fixed
    share however deep the network is.
    """
    if k == 1:
        return np.ones(1)
    bands: list[list[int]] = []
    hi = Fraction(k)
    first = True
    while hi >= 1:
        lo = hi / 2
        members = [d for d in range(1, k) if lo < d and (d < hi if first else d <= hi)]
        if members:
            bands.append(members)
        hi, first = lo, False
    w = np.zeros(k)
    for members in bands:
        for d in members:
            w[d - 1] = 1.0 / (len(bands) * len(members))
    w[-1] = 1.0
    return w


def _quarter(k: int) -> np.ndarray:
    """First exit 1/4, final 1/2, the other quarter spread over the rest (spec f=8)."""
    if k == 1:
        return np.ones(1)
    if k == 2:
        return np.array([1.0 / 3.0, 2.0 / 3.0])
    w = np.full(k, 1.0 / (4 * k - 8))
    w[0], w[-1] = 0.25, 0.5
    return w


def _eann_sieve(k: int) -> np.ndarray:
    """SIEVE with the first floor(K/2) exits zeroed (spec §5.5): inside an EANN the previous
    member's final answer beats them, so they get no head."""
    w = _sieve(k)
    w[: k // 2] = 0.0
    return w


_SCHEMES: dict[str, Callable[[int], np.ndarray]] = {
    "const": _const,
    "linear": _linear,
    "half-end": _half_end,
    "sieve": _sieve,
    "sieve-v2": _sieve_v2,
    "exp-lin": _exp_lin,
    "quarter": _quarter,
    "eann-sieve": _eann_sieve,
}
_PARAMETRISED = ("optimal@i", "exp:b")
_OPTIMAL = re.compile(r"^optimal@(-?\d+)$")
_EXP = re.compile(r"^exp:([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)$")


def list_schemes() -> list[str]:
    """Names accepted by :func:`scheme_weights` (parametrised ones shown with their placeholder)."""
    return sorted(_SCHEMES) + list(_PARAMETRISED)


def _raw(name: str, k: int) -> np.ndarray:
    if name in _SCHEMES:
        return _SCHEMES[name](k)
    m = _OPTIMAL.match(name)
    if m:
        i = int(m.group(1))
        if not -k <= i < k:
            raise ValueError(
                f"scheme {name!r}: exit index {i} is out of range for {k} exits; "
                f"allowed: {-k} .. {k - 1} (negative counts from the end)"
            )
        w = np.zeros(k)
        w[i] = 1.0
        return w
    m = _EXP.match(name)
    if m:
        b = float(m.group(1))
        if b <= 0:
            raise ValueError(f"scheme {name!r}: the base must be > 0, got {b}")
        return b ** np.arange(k, dtype=np.float64)
    raise ValueError(f"unknown weight scheme {name!r}; allowed: {', '.join(list_schemes())}")


def _normalize(w: np.ndarray, normalize: str) -> np.ndarray:
    if normalize == "none":
        return w
    if normalize == "sum":
        return w / w.sum()
    if normalize == "log":
        return w * (math.log2(len(w) + 1) / w.sum())
    # "last": the final exit weighs 1; a scheme that gives the final exit nothing (optimal@i with
    # i < K-1, exp:b with b < 1 underflowing) is scaled so its largest weight is 1 instead.
    ref = w[-1] if w[-1] > 0 else w.max()
    return w / ref


def scheme_weights(name: str, num_exits: int, normalize: str = "last") -> torch.Tensor:
    """The static weight vector of scheme ``name`` over ``num_exits`` exits (float64, CPU).

    >>> scheme_weights("half-end", 3).tolist()
    [0.5, 0.5, 1.0]
    """
    if not isinstance(num_exits, int) or isinstance(num_exits, bool) or num_exits < 1:
        raise ValueError(f"num_exits must be a positive integer, got {num_exits!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {normalize!r}; allowed: {', '.join(NORMALIZATIONS)}")
    w = _normalize(_raw(str(name), num_exits).astype(np.float64), normalize)
    return torch.from_numpy(np.ascontiguousarray(w))


def is_single_exit(name: str) -> bool:
    """True for one-hot schemes (``optimal@i``): OPT baselines, trained without a sampler."""
    return bool(_OPTIMAL.match(str(name)))
