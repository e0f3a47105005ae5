"""Static loss-weight schemes over the exits of an anytime network (spec §1).

A scheme is a pure function ``num_exits -> raw float64 weights``; a normalisation then fixes the
scale, which matters for the effective learning rate, the heads' weight decay and the AANN constant
(spec §1.4). Position ``j = 0 .. K-1`` is the exit index, ``j = K-1`` the final exit.

Names: ``const``, ``linear``, ``half-end``, ``sieve``, ``sieve-v2``, ``exp-lin``, ``quarter``,
``eann-sieve``, ``optimal@i`` (one-hot; negative ``i`` counts from the end) and ``exp:b``
(``w_j = b**j``). Normalisations: ``last`` (final exit = 1, the default), ``sum`` (sum = 1),
``log`` (sum = log2(K+1), the 2017 scripts' convention) and ``none``.

Schemes live in the library's one :class:`~adaptive_weights.registry.Registry` (entry-point group
``adaptive_weights.schemes``): a plain scheme is a function ``num_exits -> weights``; a
:class:`SchemeFamily` (``optimal``, ``exp``) takes a parameter written into the name after its
separator (``optimal@3``, ``exp:0.5``), so one registration serves every member of the family.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from .errors import RefusedError
from .registry import Registry

__all__ = ["NORMALIZATIONS", "SCHEMES", "ENTRY_POINT_GROUP", "SchemeFamily", "register_scheme", "list_schemes",
           "scheme_weights", "is_single_exit"]

ENTRY_POINT_GROUP = "adaptive_weights.schemes"

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


@dataclass(frozen=True)
class SchemeFamily:
    """Schemes named ``<family><separator><parameter>`` (``optimal@3``, ``exp:0.5``).

    ``weights(num_exits, parameter_text)`` returns the raw weights or raises ``ValueError`` naming
    the bad parameter; ``single_exit`` marks one-hot families (OPT baselines, trained without a
    sampler); ``placeholder`` names the parameter in listings (``optimal@i``).
    """

    separator: str
    placeholder: str
    weights: Callable[[int, str], np.ndarray]
    single_exit: bool = False
    description: str = ""


Scheme = Callable[[int], np.ndarray] | SchemeFamily


def _check_scheme(name: str, obj: Any) -> None:
    if isinstance(obj, SchemeFamily):
        if obj.separator not in ("@", ":"):
            raise ValueError(f"scheme family {name!r}: separator must be '@' or ':', got {obj.separator!r}")
    elif not callable(obj):
        raise ValueError(f"scheme {name!r} must be a function num_exits -> weights or a SchemeFamily, got {obj!r}")


SCHEMES: Registry[Scheme] = Registry("weight scheme", group=ENTRY_POINT_GROUP, check=_check_scheme)


def register_scheme(name: str, scheme: Scheme | None = None, *, description: str = "") -> Any:
    """Register ``scheme`` (a function ``num_exits -> weights`` or a :class:`SchemeFamily`) as
    ``name``; without ``scheme`` it is a decorator. A duplicate name raises ValueError."""

    def deco(obj: Scheme) -> Scheme:
        doc = description or getattr(obj, "description", "") or ((obj.__doc__ or "").strip().splitlines() or [""])[0]
        SCHEMES.register(name, obj, doc)
        return obj

    return deco if scheme is None else deco(scheme)


def _optimal(k: int, text: str) -> np.ndarray:
    try:
        i = int(text)
    except ValueError:
        raise ValueError(f"scheme 'optimal@{text}': the exit index must be an integer, got {text!r}") from None
    if not -k <= i < k:
        raise ValueError(
            f"scheme 'optimal@{text}': exit index {i} is out of range for {k} exits; "
            f"allowed: {-k} .. {k - 1} (negative counts from the end)"
        )
    w = np.zeros(k)
    w[i] = 1.0
    return w


def _exp(k: int, text: str) -> np.ndarray:
    try:
        b = float(text)
    except ValueError:
        raise ValueError(f"scheme 'exp:{text}': the base must be a number, got {text!r}") from None
    if not (math.isfinite(b) and b > 0):
        raise ValueError(f"scheme 'exp:{text}': the base must be > 0 and finite, got {b}")
    return b ** np.arange(k, dtype=np.float64)


for _name, _fn in {"const": _const, "linear": _linear, "half-end": _half_end, "sieve": _sieve,
                   "sieve-v2": _sieve_v2, "exp-lin": _exp_lin, "quarter": _quarter,
                   "eann-sieve": _eann_sieve}.items():
    register_scheme(_name, _fn, description=((_fn.__doc__ or "").strip().splitlines() or [_name])[0])
register_scheme("optimal", SchemeFamily("@", "i", _optimal, single_exit=True,
                                        description="one-hot at exit i (OPT baselines)"))
register_scheme("exp", SchemeFamily(":", "b", _exp, description="w_j = b**j"))


def list_schemes() -> list[str]:
    """Names accepted by :func:`scheme_weights` (families shown with their placeholder, ``optimal@i``)."""
    return [f"{e.name}{e.obj.separator}{e.obj.placeholder}" if isinstance(e.obj, SchemeFamily) else e.name
            for e in SCHEMES.entries()]


def _lookup(name: str) -> tuple[Scheme, str | None]:
    """The registered scheme of ``name`` and the parameter text of a family member."""
    family, sep, param = name, "", None
    for i, ch in enumerate(name):
        if ch in "@:":
            family, sep, param = name[:i], ch, name[i + 1:]
            break
    if family in SCHEMES:
        obj = SCHEMES.get(family)
        if isinstance(obj, SchemeFamily) == (param is not None) and (param is None or sep == obj.separator):
            return obj, param
        if isinstance(obj, SchemeFamily):
            raise RefusedError(f"weight scheme {name!r}: {family!r} takes a parameter, e.g. "
                               f"{family}{obj.separator}{obj.placeholder}")
        raise RefusedError(f"weight scheme {name!r}: {family!r} takes no parameter")
    close = difflib.get_close_matches(name, list_schemes(), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise RefusedError(f"unknown weight scheme {name!r}{hint}; allowed: {', '.join(list_schemes())}")


def _raw(name: str, k: int) -> np.ndarray:
    obj, param = _lookup(name)
    if isinstance(obj, SchemeFamily):
        try:
            return np.asarray(obj.weights(k, param), dtype=np.float64)
        except RefusedError:
            raise
        except ValueError as err:
            raise RefusedError(str(err)) from None
    return np.asarray(obj(k), dtype=np.float64)


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
    """True for members of one-hot families (``optimal@i``): OPT baselines, trained without a
    sampler. Unknown names are not single-exit (``scheme_weights`` refuses them)."""
    try:
        obj, _ = _lookup(str(name))
    except ValueError:
        return False
    return isinstance(obj, SchemeFamily) and obj.single_exit
