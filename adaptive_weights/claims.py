"""The paper's claims, checked: a verdict for each claim from a report's own runs.

A reader deciding whether to trust a reproduction wants one table: each claim of the paper, the
number that tests it here, the seed-to-seed spread next to it, and a verdict: *holds*, *does not
hold* or *cannot tell at this scale*. This module computes that table from the grouped runs of a
report (:mod:`adaptive_weights.report`, ``--claims``), so the verdicts regenerate with the numbers.

Methods are found by their config values (``scheme.name``, ``strategy.name``, ``objective.name``,
``gradient.name``), whatever ``--group-by`` names them. A claim none of whose methods were run is
left out (a report of two samplers need not list four claims it cannot speak to); one whose methods
were run in part says which were not. Runs are compared in matched settings (data set, model, seed).

The rule for a difference is stated once, in :data:`RULE`: a difference over seeds is *clear* when
a two-sided t-test rejects "no difference" at the 5% level (paired by seed for A - B, Welch's for
two groups of values). With 2-3 seeds only large and consistent differences pass (the critical t
is 12.7 for 2 seeds, 4.3 for 3): *cannot tell at this scale* is the honest verdict for the rest, and
the win-rate columns show why (the exact sign test of 3 seeds cannot go below p = 0.125).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, NamedTuple

from .eann import inflation_ratios
from .grouping import Q_LABEL, QUANTILES, GroupedRuns
from .metrics import win_rate
from .rendering import Section, md_table

if TYPE_CHECKING:
    from .eann import EannAnalysis
    from .runs import Run

__all__ = ["HOLDS", "NOT_HOLD", "CANNOT_TELL", "NOT_RUN", "RULE", "Spread", "claims_section", "paired", "spread",
           "welch"]

HOLDS, NOT_HOLD, CANNOT_TELL, NOT_RUN = "holds", "does not hold", "cannot tell at this scale", "not run"
RULE = ("A difference is **clear** when a two-sided t-test over seeds rejects 'no difference' at the 5% level "
        "(paired by seed for A - B, Welch's for two methods' values; with 2 seeds the mean must exceed 12.7 "
        "standard errors, with 3 seeds 4.3); `±` is the standard deviation over seeds "
        "(of the paired differences for A - B, of the values otherwise). Errors and differences are in "
        "percentage points (pp).")
ALPHA = 0.05  # the level of every t-test of RULE
# the paper's bound on EANN's cost inflation using members' finals only (spec §5.5)
EANN_BOUND = 4.0

Method = Mapping[str, str]
CONST = {"scheme.name": "const", "strategy.name": "static"}
LINEAR = {"scheme.name": "linear", "strategy.name": "static"}
SIEVE = {"scheme.name": "sieve", "strategy.name": "static"}
EXP_LIN = {"scheme.name": "exp-lin", "strategy.name": "static"}
AANN = {"scheme.name": "sieve", "strategy.name": "aann"}
NO_REGRET = {name: {"scheme.name": "sieve", "strategy.name": name} for name in ("eg", "rwm", "avgl")}
PLAIN = {"objective.name": "ce", "gradient.name": "sum"}  # what a method without these keys means


class Spread(NamedTuple):
    """Values over seeds: their number, mean and standard deviation (0 for one value)."""

    n: int
    mean: float
    sd: float
    values: tuple[float, ...]

    @property
    def sign(self) -> int:
        """+1 / -1 when the values are clearly above / below 0 (:data:`RULE`: a one-sample t-test), else 0."""
        from scipy.stats import t

        if self.n < 2 or self.mean == 0:
            return 0
        clear = _no_spread(self.sd, self.mean) or \
            2 * t.sf(abs(self.mean) / (self.sd / math.sqrt(self.n)), self.n - 1) < ALPHA
        return (1 if self.mean > 0 else -1) if clear else 0

    def text(self, scale: float = 100.0, unit: str = " pp", signed: bool = True) -> str:
        if not self.n:
            return "n/a"
        body = f"{scale * self.mean:+.2f}" if signed else f"{scale * self.mean:.2f}"
        return f"{body} ± {scale * self.sd:.2f}{unit} (n={self.n})"


def _no_spread(sd: float, gap: float) -> bool:
    """Identical values up to float rounding: any gap is then clear (the t statistic is infinite;
    scipy would return NaN and warn of catastrophic cancellation)."""
    return sd <= 1e-9 * abs(gap)


def welch(x: Spread, y: Spread) -> int:
    """+1 / -1 when ``x``'s values are clearly above / below ``y``'s (Welch's t-test), else 0."""
    from scipy.stats import ttest_ind_from_stats

    if x.n < 2 or y.n < 2 or x.mean == y.mean:
        return 0
    gap = x.mean - y.mean
    sx, sy = (0.0 if _no_spread(v.sd, gap) else v.sd for v in (x, y))
    clear = sx == sy == 0 or ttest_ind_from_stats(x.mean, sx, x.n, y.mean, sy, y.n, equal_var=False).pvalue < ALPHA
    return (1 if x.mean > y.mean else -1) if clear else 0


def spread(values: Sequence[float]) -> Spread:
    """:class:`Spread` of ``values`` (sample standard deviation)."""
    vals = tuple(float(v) for v in values)
    if not vals:
        return Spread(0, math.nan, math.nan, vals)
    return Spread(len(vals), statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, vals)


def _matches(run: Run, method: Method) -> bool:
    want = {**PLAIN, **method}
    return all(str(run.config.get(k, PLAIN.get(k))) == v for k, v in want.items())


def _runs_of(g: GroupedRuns, method: Method) -> list[Run]:
    return [r for rs in g.methods.values() for r in rs if _matches(r, method)]


def _name(method: Method) -> str:
    extra = [method[k] for k in ("objective.name", "gradient.name") if k in method and method[k] != PLAIN[k]]
    return "+".join([method["scheme.name"], method["strategy.name"], *extra])


def _milestones(g: GroupedRuns, run: Run) -> dict[Fraction, float]:
    return {q: e for q, _, e in g.milestone_errors(run) if e is not None}


def _setting_means(values: Iterable[tuple[tuple, float]]) -> dict[tuple, float]:
    """``(setting, value)`` pairs -> one value per setting: the mean over its runs when a method has
    several, so that a setting counts once in every test (n is the number of settings)."""
    acc: dict[tuple, list[float]] = {}
    for setting, v in values:
        acc.setdefault(setting, []).append(v)
    return {s: sum(v) / len(v) for s, v in sorted(acc.items(), key=lambda kv: str(kv[0]))}


def paired(g: GroupedRuns, a: Method, b: Method, q: Fraction) -> Spread:
    """A's error minus B's at milestone ``q``, one value per setting both have (mean over a
    setting's runs when a method has several)."""
    def by_setting(method: Method) -> dict[tuple, float]:
        return _setting_means((r.setting, e) for r in _runs_of(g, method)
                              if (e := _milestones(g, r).get(q)) is not None)

    ea, eb = by_setting(a), by_setting(b)
    return spread([ea[s] - eb[s] for s in sorted(set(ea) & set(eb), key=str)])


def _relative_increase(g: GroupedRuns, method: Method, q: Fraction) -> tuple[Spread, str]:
    """(e_ANN - e_OPT) / e_OPT at ``q`` over the method's settings (:meth:`GroupedRuns.relative_increase`;
    mean over a setting's runs), and why runs were left out ("not run" without any run)."""
    from .metrics import milestone_indices

    runs = _runs_of(g, method)
    if not runs:
        return spread([]), "not run"
    ratios = []
    for r in runs:
        idx = milestone_indices(r.num_units, [q])[0]
        ratios.append((r.setting, idx, g.relative_increase(r, idx, _milestones(g, r).get(q))))
    left_out = [f"{ratio.problem} {idx}" for _, idx, ratio in ratios if ratio.value is None]
    reasons = ", ".join(f"{left_out.count(w)} run(s) left out: {w}" for w in dict.fromkeys(left_out))
    kept = _setting_means((s, ratio.value) for s, _, ratio in ratios if ratio.value is not None)
    return spread(list(kept.values())), reasons


def _opt_final(g: GroupedRuns) -> Spread:
    """OPT's error at the last unit of the anytime runs' model, over its seeds (the model most runs have)."""
    runs = [r for rs in g.methods.values() for r in rs]
    if not runs:
        return spread([])
    like = max(runs, key=lambda r: sum(o.model_key == r.model_key for o in runs))
    last = like.num_units - 1
    return spread([o.split_errors(g.split)[0] for o in g.opt_runs
                   if o.opt_key[:-1] == like.opt_key[:-1] and o.exit_units[0] == last])


def _direction_text(d: Spread, a: str, b: str) -> str:
    return {-1: f"{a} better", 1: f"{b} better", 0: "no clear difference"}[d.sign]


def _milestone_rows(g: GroupedRuns, a: Method, b: Method) -> tuple[list[list[str]], list[Spread], str]:
    """Per milestone: A - B with its spread and direction; plus the pooled win rate over all
    milestones and seeds with its Hoeffding and exact p."""
    rows, diffs = [], []
    for q in QUANTILES:
        d = paired(g, a, b, q)
        diffs.append(d)
        rows.append([f"q={Q_LABEL[q]}", d.text(), _direction_text(d, _name(a), _name(b))])
    every = [v for d in diffs for v in d.values]  # A - B: A wins where it is negative
    pooled = win_rate(every, [0.0] * len(every)) if every else None
    reverse = win_rate([0.0] * len(every), every) if every else None
    pooled_text = ("n/a" if pooled is None or reverse is None or pooled.n == 0 else
                   f"{_name(a)} wins {pooled.wins} of {pooled.n} (seed, milestone) pairs ({pooled.ties} ties): "
                   f"p({_name(a)} better) Hoeffding {pooled.hoeffding_p:.3g} / exact {pooled.binomial_p:.3g}, "
                   f"p({_name(b)} better) {reverse.hoeffding_p:.3g} / {reverse.binomial_p:.3g} (the milestones of "
                   "one seed are not independent, so these p are optimistic)")
    return rows, diffs, pooled_text


def _most(diffs: Sequence[Spread], *, better: int, against: int) -> str:
    """Verdict of 'A improves on B at most milestones': holds when A is clearly better at ``better``
    milestones or more, does not hold when clearly worse at ``against`` or more. Both methods were
    run (the caller checks): without a setting they share, that is *cannot tell*, not *not run*."""
    wins = sum(d.sign < 0 for d in diffs)
    losses = sum(d.sign > 0 for d in diffs)
    if wins >= better and not losses:
        return HOLDS
    return NOT_HOLD if losses >= against else CANNOT_TELL


class Claim(NamedTuple):
    key: str
    statement: str
    test: str
    numbers: str
    verdict: str
    details: list[str]


def _claim_a(g: GroupedRuns) -> Claim | None:
    if not any(_runs_of(g, m) for m in (CONST, LINEAR, SIEVE, EXP_LIN)):
        return None
    q = Fraction(1)
    measured = {name: _relative_increase(g, m, q) for name, m in
                (("const", CONST), ("linear", LINEAR), ("sieve", SIEVE), ("exp-lin", EXP_LIN))}
    ri = {k: v for k, (v, _) in measured.items()}

    def text(name: str) -> str:
        v, reasons = measured[name]
        if not v.n:
            return reasons
        return v.text(unit="%") + (f", {reasons}" if reasons else "")

    numbers = "; ".join(f"{k} {text(k)}" for k in ri)
    if any(not v.n for v in ri.values()):
        verdict = NOT_RUN if any(measured[k][1] == "not run" for k in ri) else CANNOT_TELL
    else:
        directions = [welch(ri[heavy], ri[light]) for heavy in ("const", "linear") for light in ("sieve", "exp-lin")]
        verdict = HOLDS if all(d > 0 for d in directions) else NOT_HOLD if any(d < 0 for d in directions) \
            else CANNOT_TELL
    rows = [[k, text(k), f"{100 * min(v.values):+.1f} to {100 * max(v.values):+.1f}%" if v.n else "n/a"]
            for k, v in ri.items()]
    details = md_table(["method", "relative increase at q=1", "range over seeds"], rows)
    opt = _opt_final(g)
    if opt.n:
        details += [f"OPT at the final unit, whose error every ratio divides by: {opt.text(signed=False)} "
                    "(its seed spread is part of every number above).", ""]
        numbers += f"; OPT's final error {opt.text(signed=False)}"
    return Claim("a", "`const` and `linear` lose accuracy at the final exit against OPT, while `sieve` and `exp-lin` "
                 "keep it close", "relative increase against OPT at q=1 (mean ± sd over seeds); holds when each of "
                 "const, linear is clearly above each of sieve, exp-lin (Welch's t-test, 5%), does not hold when one is "
                 "clearly below",
                 numbers, verdict, details)


def _comparison(g: GroupedRuns, key: str, statement: str, a: Method, b: Method) -> Claim | None:
    """A minus B at each milestone; None (left out) when neither was run."""
    test = (f"{_name(a)} minus {_name(b)} at each milestone, paired by seed; holds when {_name(a)} is clearly "
            "better at 3 or 4 milestones and clearly worse at none, does not hold when clearly worse at 2 or more")
    missing = [_name(m) for m in (a, b) if not _runs_of(g, m)]
    if len(missing) == 2:
        return None
    if missing:
        return Claim(key, statement, test, f"no runs of {' and '.join(missing)}", NOT_RUN, [])
    rows, diffs, pooled = _milestone_rows(g, a, b)
    verdict = _most(diffs, better=3, against=2)
    numbers = ", ".join(f"{r[0]} {r[1].split(' (')[0]}" for r in rows) + f"; {pooled}"
    details = md_table(["milestone", f"{_name(a)} - {_name(b)} (error)", "direction"], rows) + [pooled, ""]
    return Claim(key, statement, test, numbers, verdict, details)


def _claim_c(g: GroupedRuns) -> Claim | None:
    """The samplers against ``aann``; left out when no sampler was run (``aann`` is the yardstick, not
    what the claim is about)."""
    if not any(_runs_of(g, m) for m in NO_REGRET.values()):
        return None
    details: list[str] = []
    parts, verdicts = [], []
    for name, method in NO_REGRET.items():
        if not _runs_of(g, method) or not _runs_of(g, AANN):
            verdicts.append(NOT_RUN)
            parts.append(f"{name}: not run")
            continue
        rows, diffs, pooled = _milestone_rows(g, method, AANN)
        better = sum(d.sign < 0 for d in diffs)
        worse = sum(d.sign > 0 for d in diffs)
        verdicts.append(NOT_HOLD if better >= 2 else HOLDS if worse >= 2 and not better else CANNOT_TELL)
        parts.append(f"{name}: clearly better at {better}, clearly worse at {worse} of 4 milestones")
        details += [f"`{name}` against `aann`:", ""] + md_table(
            ["milestone", f"sieve+{name} - sieve+aann (error)", "direction"], rows) + [pooled, ""]
    # one sampler with a gain refutes the claim; it holds only when every sampler was run and lost
    verdict = NOT_HOLD if NOT_HOLD in verdicts else NOT_RUN if NOT_RUN in verdicts else \
        HOLDS if all(v == HOLDS for v in verdicts) else CANNOT_TELL
    return Claim("c", "the no-regret samplers (`eg`, `rwm`, `avgl`) bring no gain over AANN's fixed distribution "
                 "(the authors' final code makes `aann` the default)",
                 "each sampler minus sieve+aann at each milestone, paired by seed; does not hold when some sampler "
                 "is clearly better at 2 or more milestones, holds when every sampler is clearly worse at 2 or more "
                 "and clearly better at none", "; ".join(parts), verdict, details)


def _claim_d(analyses: Sequence[tuple[str, EannAnalysis]]) -> Claim | None:
    """Every EANN chain against OPT+; left out without a chain."""
    if not analyses:
        return None
    statement = (f"EANN stays within a small constant factor of OPT+ at every budget (the paper bounds the worst "
                 f"cost inflation by about {EANN_BOUND:g} with members' finals)")
    test = f"worst and average cost inflation of each EANN chain against OPT+; holds when the worst is at most {EANN_BOUND:g}"
    measured = [(label, a) for label, a in analyses if a.inflation is not None and a.opt_plus is not None]
    if not measured:
        return Claim("d", statement, test, "no EANN chain with OPT runs", NOT_RUN, [])

    def factor(x: float, never: str = "some OPT+ error") -> str:
        return f"{x:.2f}x" if math.isfinite(x) else f"inf (the EANN never reaches {never})"

    parts = []
    for label, a in measured:
        at = ", ".join(f"{b / 1e6:.3g}M MACs ({100 * e:.2f}%): {factor(r, 'it')}" for (b, r), e in
                       zip(inflation_ratios(a.curve, a.opt_plus), a.opt_plus.errors, strict=True))
        parts.append(f"{label}: worst {factor(a.inflation.worst)}, average {factor(a.inflation.average)}; at each "
                     f"OPT+ breakpoint (its error): {at}; the EANN's best error is {100 * min(a.curve.errors):.2f}%")
    verdict = HOLDS if max(a.inflation.worst for _, a in measured) <= EANN_BOUND else NOT_HOLD
    return Claim("d", statement, test, "; ".join(parts) + " (one seed per chain: no spread)", verdict, [])


def _plugin_claims(g: GroupedRuns) -> list[Claim]:
    """Comparisons a 2026 reviewer asks for: objectives and gradient rules against the plain loss."""
    out = []
    for key, statement, a, b in (
        ("e1", "self-distillation from the final exit improves on plain cross-entropy (const weights)",
         {**CONST, "objective.name": "distill"}, CONST),
        ("e2", "self-distillation from the final exit improves on plain cross-entropy (sieve weights)",
         {**SIEVE, "objective.name": "distill"}, SIEVE),
        ("f", "gradient equilibrium (IMTA) improves on the plain weighted sum (const weights)",
         {**CONST, "gradient.name": "ge"}, CONST),
        ("g", "UPGrad (TorchJD) on the shared trunk improves on the plain weighted sum (const weights)",
         {**CONST, "gradient.name": "upgrad"}, CONST),
    ):
        runs = _runs_of(g, a)
        if runs and _runs_of(g, b):
            scopes = sorted({str(r.config["gradient.scope"]) for r in runs if r.config.get("gradient.scope")})
            if scopes:  # only the rules with a scope hyper-parameter (TorchJD's) record one
                statement += f"; `gradient.scope` {', '.join(scopes)}"
            out.append(_comparison(g, key, statement, a, b))
    return [c for c in out if c is not None]


def claims_section(g: GroupedRuns, analyses: Sequence[tuple[str, EannAnalysis]] = ()) -> Section:
    """The section "The paper's claims, checked" (markdown and a ``claims`` CSV), see the module docstring."""
    paper = {"a": _claim_a(g),
             "b": _comparison(g, "b", "AANN sampling (`sieve` + `aann`) improves on the static weights (`sieve` + "
                              "`static`) at most milestones", AANN, SIEVE),
             "c": _claim_c(g), "d": _claim_d(analyses)}
    claims = [c for c in paper.values() if c is not None]
    left_out = [f"({key})" for key, c in paper.items() if c is None]
    extra = _plugin_claims(g)
    md = ["## The paper's claims, checked", "",
          f"Each claim, the number that tests it on these runs, and a verdict. {RULE} Errors are on the **{g.split}** "
          "split; milestones are those of table (b)."
          + (f" Claim{'s' if len(left_out) > 1 else ''} {', '.join(left_out)} {'are' if len(left_out) > 1 else 'is'} "
             "left out: none of its methods is among these runs." if left_out else ""), ""]
    if not claims + extra:
        md += ["None of the paper's claims can be checked: none of their methods is among these runs.", ""]
        return Section(md, {"claims": []}, columns={"claims": ("claim", "statement", "test", "numbers", "verdict")})
    md += md_table(["claim", "statement", "number here", "verdict"],
                   [[f"({c.key})", c.statement, c.numbers, f"**{c.verdict}**"] for c in claims + extra])
    for c in claims + extra:
        if c.details:
            md += [f"**({c.key})** {c.test}.", ""] + c.details
    rows: list[dict[str, Any]] = [{"claim": c.key, "statement": c.statement, "test": c.test, "numbers": c.numbers,
                                   "verdict": c.verdict} for c in claims + extra]
    return Section(md, {"claims": rows})
