"""The claims section: the difference rule, each claim's verdict from hand-made runs, and the
report/CLI wiring (the verdicts regenerate with the numbers)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from adaptive_weights.claims import CANNOT_TELL, HOLDS, NOT_HOLD, NOT_RUN, claims_section, spread, welch
from adaptive_weights.eann import CostInflation, EannAnalysis, StepCurve
from adaptive_weights.grouping import group_runs
from adaptive_weights.report import build_report
from adaptive_weights.runs import Run

# L = 3 units, one exit each; the milestones q = 1/4, 1/2, 3/4, 1 sit at units 0, 1, 1, 2
OPT = (0.40, 0.30, 0.20)


def _run(name: str, seed: int, errors: list[float], *, scheme: str = "sieve", strategy: str = "static",
         units=(0, 1, 2), **extra: str) -> Run:
    config = {"data.name": "synthetic", "model.arch": "resnet", "model.n": 1, "model.c": 4, "model.period": 1,
              "model.depth": 50, "model.unit_style": "preact", "train.seed": seed, "scheme.name": scheme,
              "strategy.name": strategy, "train.epochs": 1, **extra}
    macs = {0: 100, 1: 200, 2: 300}
    return Run(path=Path("/nonexistent") / name, name=name, config=config, num_units=3, exit_units=tuple(units),
               exit_macs=tuple(macs[u] for u in units), errors={"test": errors, "val": errors}, completed=True,
               epochs=1)


def _opt(seeds=(0, 1)) -> list[Run]:
    return [_run(f"opt{u}-s{s}", s, [OPT[u]], scheme=f"optimal@{u}", units=(u,)) for s in seeds for u in range(3)]


def _method(scheme: str, strategy: str, finals: list[float], early: float = 0.6, **extra: str) -> list[Run]:
    """One run per seed: errors [early, early - 0.1, final]."""
    return [_run(f"{scheme}-{strategy}-{'-'.join(extra.values())}-s{s}", s, [early, early - 0.1, f],
                 scheme=scheme, strategy=strategy, **extra) for s, f in enumerate(finals)]


def _section(runs: list[Run], analyses=()):
    section = claims_section(group_runs(runs, ["scheme.name", "strategy.name"], "test"), analyses)
    return {row["claim"]: row for row in section.tables["claims"]}, "\n".join(section.markdown)


def test_the_difference_rule_is_hand_computed() -> None:
    """Clear = a two-sided 5% t-test: |mean| / (sd / sqrt(n)) above 4.303 for 3 seeds, 12.706 for 2."""
    d = spread([-0.02, -0.03, -0.01])  # mean -0.02, sd 0.01: t = 3.46 < 4.303, not clear
    assert (d.n, d.mean, d.sd) == (3, pytest.approx(-0.02), pytest.approx(0.01))
    assert d.sign == 0
    assert d.text() == "-2.00 ± 1.00 pp (n=3)"
    assert spread([-0.02, -0.021, -0.019]).sign == -1     # sd 0.001: t = 34.6
    assert spread([0.03, 0.04]).sign == 0                  # t = 7.0 < 12.706
    assert spread([0.030, 0.031]).sign == 1                # t = 61
    assert spread([0.01, 0.01]).sign == 1                  # no spread at all: any gap is clear
    assert spread([-0.02]).sign == 0                       # one seed is never clear
    assert math.isnan(spread([]).mean) and spread([]).text() == "n/a"
    # Welch: groups 0.30 +- 0.029 (n=3) and 0.05, 0.06 (n=2): t = 15 on about 2.3 degrees of freedom
    assert welch(spread([0.30, 0.35, 0.30]), spread([0.05, 0.06])) == 1
    assert welch(spread([0.30, 0.35]), spread([0.05, 0.06])) == 0  # t = 10.6 on 1.1 df: not clear
    assert welch(spread([0.05, 0.06]), spread([0.30, 0.301, 0.30])) == -1


def test_claim_a_holds_does_not_hold_and_is_not_run() -> None:
    # RI at q=1 against OPT 0.2: const/linear finals ~0.26-0.27 (+30 to +35%), sieve/exp-lin 0.21 (+5%)
    runs = _opt() + _method("const", "static", [0.26, 0.27, 0.26]) + _method("linear", "static", [0.27, 0.268]) \
        + _method("sieve", "static", [0.21, 0.21, 0.21]) + _method("exp-lin", "static", [0.21, 0.212])
    claims, md = _section(runs)
    assert claims["a"]["verdict"] == HOLDS
    assert "const +31.67 ± 2.89% (n=3)" in claims["a"]["numbers"]  # (0.3 + 0.35 + 0.3) / 3; seed 2 uses OPT's mean
    reverse = _opt() + _method("const", "static", [0.21, 0.21]) + _method("linear", "static", [0.21, 0.212]) \
        + _method("sieve", "static", [0.26, 0.262]) + _method("exp-lin", "static", [0.27, 0.268])
    assert _section(reverse)[0]["a"]["verdict"] == NOT_HOLD
    overlap = _opt() + _method("const", "static", [0.21, 0.27]) + _method("linear", "static", [0.27, 0.26]) \
        + _method("sieve", "static", [0.22, 0.21]) + _method("exp-lin", "static", [0.21, 0.212])
    assert _section(overlap)[0]["a"]["verdict"] == CANNOT_TELL
    without_linear = _opt() + _method("const", "static", [0.26, 0.27]) + _method("sieve", "static", [0.21, 0.21]) \
        + _method("exp-lin", "static", [0.21, 0.212])
    claims, _ = _section(without_linear)
    assert claims["a"]["verdict"] == NOT_RUN and "linear not run" in claims["a"]["numbers"]
    # without OPT runs the claim cannot be told, and the numbers say why (the runs exist)
    claims, _ = _section([r for r in runs if not r.name.startswith("opt")])
    assert claims["a"]["verdict"] == CANNOT_TELL
    assert "const 3 run(s) left out: no OPT run at unit 2" in claims["a"]["numbers"]
    # a second run of one seed is averaged into its setting, not counted as one more seed
    twice = _opt() + _method("const", "static", [0.26, 0.27]) + [_run("const-again-s0", 0, [0.6, 0.5, 0.26],
                                                                      scheme="const")]
    assert "const +32.50 ± 3.54% (n=2)" in _section(twice)[0]["a"]["numbers"]  # seeds 0, 1: +30%, +35%
    # a comparison whose method was not run says which
    assert _section(runs)[0]["b"]["numbers"] == "no runs of sieve+aann"
    # an OPT with 0 errors leaves its runs out and says so, never a silent n/a
    zero = [r for r in without_linear if r.name != "opt2-s0"] + [_run("opt2-s0", 0, [0.0], scheme="optimal@2",
                                                                      units=(2,))]
    assert "1 run(s) left out: OPT has 0 errors" in _section(zero)[0]["a"]["numbers"]


def test_claim_b_needs_clear_wins_at_most_milestones() -> None:
    static = _method("sieve", "static", [0.25, 0.25, 0.25], early=0.6)
    better = _method("sieve", "aann", [0.23, 0.22, 0.23], early=0.55)  # clearly better everywhere
    claims, md = _section(_opt() + static + better)
    assert claims["b"]["verdict"] == HOLDS
    assert "sieve+aann wins 12 of 12 (seed, milestone) pairs (0 ties)" in claims["b"]["numbers"]
    assert "| q=1 | -2.33 ± 0.58 pp (n=3) | sieve+aann better |" in md
    mixed = _method("sieve", "aann", [0.23, 0.27, 0.24], early=0.6)  # early exits tie, final mixed
    assert _section(_opt() + static + mixed)[0]["b"]["verdict"] == CANNOT_TELL
    worse = _method("sieve", "aann", [0.27, 0.28, 0.27], early=0.65)
    assert _section(_opt() + static + worse)[0]["b"]["verdict"] == NOT_HOLD
    assert _section(_opt() + static)[0]["b"]["verdict"] == NOT_RUN
    # both were run, but never in one setting: nothing to compare, which is no "not run"
    apart = [r for r in better if r.seed == 2] + [r for r in static if r.seed < 2]
    claims, _ = _section(_opt() + apart)
    assert claims["b"]["verdict"] == CANNOT_TELL and claims["b"]["numbers"].startswith("q=1/4 n/a, q=1/2 n/a")


def test_claim_c_by_sampler() -> None:
    aann = _method("sieve", "aann", [0.25, 0.25], early=0.6)
    worse = [r for name in ("eg", "rwm", "avgl") for r in _method("sieve", name, [0.27, 0.28], early=0.65)]
    assert _section(aann + worse)[0]["c"]["verdict"] == HOLDS
    # the claim is about all three samplers: two that lose do not make it hold while avgl was not run
    two = [r for r in worse if r.config["strategy.name"] != "avgl"]
    claims, _ = _section(aann + two)
    assert claims["c"]["verdict"] == NOT_RUN and "avgl: not run" in claims["c"]["numbers"]
    eg_better = _method("sieve", "eg", [0.23, 0.22], early=0.55) + _method("sieve", "rwm", [0.27, 0.28], early=0.65)
    claims, md = _section(aann + eg_better)
    assert claims["c"]["verdict"] == NOT_HOLD
    # the early exits differ by 5 points on both seeds (clear); the finals by 2 and 3 (t = 5 < 12.7)
    assert "eg: clearly better at 3, clearly worse at 0 of 4 milestones" in claims["c"]["numbers"]
    assert "avgl: not run" in claims["c"]["numbers"]


def test_claim_d_reads_the_cost_inflation() -> None:
    curve = StepCurve((1.0,), (0.5,), ("m",))

    def analysis(worst: float, average: float) -> EannAnalysis:
        return EannAnalysis([], curve, curve, CostInflation(worst, average), [])

    assert _section([], [("EANN", analysis(2.5, 1.5))])[0]["d"]["verdict"] == HOLDS
    claims, _ = _section([], [("EANN", analysis(math.inf, math.inf))])
    assert claims["d"]["verdict"] == NOT_HOLD and "never reaches" in claims["d"]["numbers"]
    assert "d" not in _section([])[0]  # no chain: left out, not "not run"


def test_plugin_comparisons_appear_when_run_and_old_runs_read_as_plain() -> None:
    plain = _method("const", "static", [0.25, 0.25], early=0.6)
    for r in plain:  # runs written before objectives existed have no objective/gradient keys
        r.config.pop("objective.name", None)
    distill = _method("const", "static", [0.24, 0.23], early=0.5, **{"objective.name": "distill"})
    ge = _method("const", "static", [0.25, 0.26], early=0.6, **{"gradient.name": "ge"})
    claims, md = _section(plain + distill + ge)
    assert claims["e1"]["verdict"] == HOLDS and claims["f"]["verdict"] == CANNOT_TELL
    assert "e2" not in claims and "g" not in claims  # not run: no row at all
    assert "const+static+distill minus const+static" in md


def test_report_opens_with_the_claims_and_writes_their_csv(tmp_path: Path) -> None:
    from adaptive_weights.rendering import write_report

    runs = _opt() + _method("sieve", "static", [0.25, 0.25]) + _method("sieve", "aann", [0.23, 0.22], early=0.55)
    rep = build_report(runs, group_by=["scheme.name", "strategy.name"], claims=True,
                       preamble="## Protocol\n\nresnet n=1, one epoch.\n")
    md = rep.markdown
    assert md.index("OPT run(s)") < md.index("## Protocol") < md.index("## The paper's claims, checked") \
        < md.index("## (a) Error of every exit")
    write_report(rep, tmp_path)
    assert "claim,statement,test,numbers,verdict" in (tmp_path / "claims.csv").read_text().splitlines()[0]
    assert "## The paper's claims" not in build_report(runs, group_by=["scheme.name", "strategy.name"]).markdown


def test_a_claim_none_of_whose_methods_ran_is_left_out() -> None:
    """Two static schemes and aann (the GPU reference campaign's methods): claims (c) (no sampler) and
    (d) (no EANN) are left out, not listed as "not run"; (b) whose static half ran stays, saying what is missing."""
    runs = _opt() + _method("const", "static", [0.26, 0.27]) + _method("sieve", "aann", [0.21, 0.21])
    claims, md = _section(runs)
    assert sorted(claims) == ["a", "b"]
    assert "Claims (c), (d) are left out: none of its methods is among these runs." in md
    assert claims["a"]["verdict"] == NOT_RUN and "linear not run" in claims["a"]["numbers"]
    assert claims["b"]["numbers"] == "no runs of sieve+static"
    claims, md = _section(_method("sieve", "eg", [0.2, 0.2]))
    assert sorted(claims) == ["c"] and "eg: clearly" not in claims["c"]["numbers"]
    section = claims_section(group_runs(_method("half-end", "static", [0.2]), ["scheme.name"], "test"))
    assert section.tables["claims"] == [] and "None of the paper's claims can be checked" in "\n".join(section.markdown)
