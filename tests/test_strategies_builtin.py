"""Hand-computed single steps for every built-in strategy (spec §2-§3), and spec-given values."""

from __future__ import annotations

import math

import pytest
import torch

from adaptive_weights.strategies import create_strategy, relative_rewards, validate_hparams
from adaptive_weights.strategies.builtin import quartile_distribution

BASE3 = torch.tensor([0.25, 0.25, 1.0])
LOSSES = torch.tensor([1.0, 0.5, 0.25])  # rewards (rho 0.8): r = [0.5, 0.5, 0.8 * 0.5 = 0.4]
# spec §1.5, f=5 SIEVE 'last', L=9 (sum 2, final 1) and its sum-1 version (the AANN distribution)
SIEVE9 = torch.tensor([0.2667, 0.0667, 0.1333, 0.0667, 0.2, 0.0667, 0.1333, 0.0667, 1.0])
SIEVE9_P = [0.1333, 0.0333, 0.0667, 0.0333, 0.1, 0.0333, 0.0667, 0.0333, 0.5]


def close(actual: torch.Tensor, expected: list[float], tol: float = 1e-6) -> bool:
    return torch.allclose(actual.double(), torch.tensor(expected, dtype=torch.float64), atol=tol, rtol=0)


def floor_mix(w: list[float], gamma: float) -> list[float]:
    a = 0.001 * gamma
    s = sum(w)
    return [(1 - a) * x / s + a / len(w) for x in w]


def explore(w: list[float], gamma: float) -> list[float]:
    return [(1 - gamma) * x + gamma / len(w) for x in w]


# -- rewards ----------------------------------------------------------------------------------------
def test_rewards_spec_3_0() -> None:
    assert close(relative_rewards(LOSSES, 0.8), [0.5, 0.5, 0.4])
    # worse deeper exits: negative rewards, the final reward is clipped at 0
    assert close(relative_rewards(torch.tensor([0.25, 0.5, 1.0]), 0.8), [-1.0, -1.0, 0.0])
    # the denominator is the earlier loss; rho scales the best inner reward
    assert close(relative_rewards(torch.tensor([2.0, 1.5, 0.3, 0.3]), 0.7), [0.25, 0.8, 0.0, 0.56])
    # a zero loss carries no information (reward 0, not 0/0); a single exit gets 0
    assert close(relative_rewards(torch.tensor([0.0, 0.0, 1.0]), 0.8), [0.0, 0.0, 0.0])
    assert close(relative_rewards(torch.tensor([3.0]), 0.8), [0.0])


# -- fixed distributions ----------------------------------------------------------------------------
def test_quartile_distribution_spec_2_2() -> None:
    assert close(quartile_distribution(9), [0.1, 0.1, 0.125, 0.1, 0.125, 0.1, 0.125, 0.1, 0.125])
    p27 = quartile_distribution(27)
    quart = [6, 13, 20, 26]
    assert close(p27[quart], [0.125] * 4)
    others = [k for k in range(27) if k not in quart]
    assert close(p27[others], [0.5 / 23] * 23) and round(0.5 / 23, 4) == 0.0217
    assert close(quartile_distribution(5), [0.2] * 5)
    assert close(create_strategy("quartile", torch.ones(9)).probabilities(), quartile_distribution(9).tolist())


@pytest.mark.parametrize(("ratio", "expected"), [(2.0, [0.25, 0.25, 2.0]), (0.5, [0.25, 0.25, 5.0]), (0.0, [0, 0, 2.0])])
def test_aann_weight_rule_spec_2_1(ratio: float, expected: list[float]) -> None:
    s = create_strategy("aann", BASE3, ratio=ratio)
    assert close(s.step_weights(), expected)  # first step: the final exit
    assert close(s.probabilities(), [1 / 6, 1 / 6, 2 / 3])


def test_static_returns_the_scheme_weights_every_step() -> None:
    s = create_strategy("static", torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64))
    for _ in range(3):
        w = s.step_weights()
        assert w.dtype == torch.float32 and close(w, [0.5, 0.25, 1.0])
        s.observe(LOSSES)


def test_aann_sieve_draws_final_half_the_time_and_weights_1_5x_in_expectation() -> None:
    """Spec §2.2: SIEVE draws the final exit with probability 1/2; §2.1: E[weight] = 1.5 w (ratio 2)."""
    s = create_strategy("aann", SIEVE9, seed=0)
    assert close(s.probabilities(), SIEVE9_P, tol=1e-4)
    n = 4000
    s.step_weights()  # forced first step
    total = torch.zeros(9)
    for _ in range(n):
        total += s.step_weights()
    counts = s.stats()["draws"].double()
    counts[8] -= 1
    freq_final = float(counts[8]) / n
    assert abs(freq_final - 0.5) <= 4.5 * math.sqrt(0.25 / n)  # 4.5 binomial sigmas = 0.036
    p = torch.tensor(SIEVE9_P, dtype=torch.float64)
    sigma = 1.0 * torch.sqrt(p * (1 - p) / n)  # bonus w_final = 1 on a Bernoulli(p_k) draw
    assert ((total.double() / n - 1.5 * SIEVE9.double()).abs() <= 4.5 * sigma + 1e-3).all()


def test_aann_never_draws_an_exit_of_probability_zero() -> None:
    """The stream's number 0 (about once in 2**24 steps) drew exit 0 even when its weight is 0
    (EANN-SIEVE zeroes the first exits): the inverse CDF must skip leading zero-probability exits."""
    s = create_strategy("aann", torch.tensor([0.0, 0.0, 1.0, 2.0]))
    s.step_weights()  # the forced first step

    def next_number_is_zero() -> None:  # a state whose next number is exactly 0, restored as a resume does
        state = s.state_dict()
        s.load_state_dict({**state, "tensors": {**state["tensors"], "rng_state": torch.tensor(11237720)}})

    next_number_is_zero()
    assert float(s.uniform()) == 0.0
    next_number_is_zero()
    assert close(s.step_weights(), [0.0, 0.0, 1.0 + 2.0, 2.0]) and int(s.sel) == 2


# -- learners ---------------------------------------------------------------------------------------
def test_eg_single_step_spec_3_1() -> None:
    g = 0.3
    s = create_strategy("eg", BASE3, seed=0, warmup_epochs=0)
    assert close(s.probabilities(), [1 / 3] * 3)
    assert close(s.step_weights(), [0.25, 0.25, 2.0])  # first step: final exit, bonus 2*1/2
    s.observe(LOSSES)  # sel = 2, r_sel = 0.4, p_sel = 1/3: w_2 *= exp(0.3 * 0.4 / (3 * 1/3))
    w = floor_mix([1.0, 1.0, math.exp(0.12)], g)
    assert close(s.probabilities(), explore(w, g))
    # second step: a real draw from p; only that exit's reward enters, importance-weighted by p_sel
    p = explore(w, g)
    s.step_weights()
    sel = int(s.stats()["selected"])
    s.observe(torch.tensor([1.0, 0.8, 0.4]))  # r = [0.2, 0.5, 0.4]
    r = [0.2, 0.5, 0.4][sel]
    w2 = list(w)
    w2[sel] *= math.exp(g * r / (3 * p[sel]))
    assert close(s.probabilities(), explore(floor_mix(w2, g), g))


def test_rwm_single_step_spec_3_2() -> None:
    g = 0.2
    s = create_strategy("rwm", BASE3, gamma=g, warmup_epochs=0)
    s.step_weights()
    s.observe(LOSSES)
    w = floor_mix([math.exp(0.1 * 0.5), math.exp(0.1 * 0.5), math.exp(0.1 * 0.4)], g)
    assert close(s.probabilities(), explore(w, g))
    s.step_weights()
    s.observe(torch.tensor([0.25, 0.5, 1.0]))  # r = [-1, -1, 0], every exit updated (full information)
    w = floor_mix([w[0] * math.exp(-0.1), w[1] * math.exp(-0.1), w[2]], g)
    assert close(s.probabilities(), explore(w, g))


def test_avgl_single_steps_and_all_zero_guard_spec_3_3() -> None:
    s = create_strategy("avgl", BASE3, warmup_epochs=0)
    s.step_weights()
    s.observe(LOSSES)  # w = max(0, 0.9/3 + r) = [0.8, 0.8, 0.7]
    assert close(s.probabilities(), explore([0.8 / 2.3, 0.8 / 2.3, 0.7 / 2.3], 0.3))
    s.observe(torch.tensor([0.25, 0.5, 1.0]))  # w = max(0, 0.9 w + [-1, -1, 0]) = [0, 0, 0.63]
    assert close(s.probabilities(), [0.1, 0.1, 0.8])
    z = create_strategy("avgl", BASE3, momentum=0.0, warmup_epochs=0)
    z.observe(torch.tensor([0.25, 0.5, 1.0]))  # w = [0, 0, 0]: the guard falls back to uniform
    assert close(z.probabilities(), [1 / 3] * 3)


def test_adaloss_steps_spec_3_4() -> None:
    s = create_strategy("adaloss", BASE3, period=1)
    assert close(s.step_weights(), [1.0, 1.0, 1.0])
    s.observe(LOSSES)  # l_bar = losses; a = [1, 2, 4] / 4; a = 0.93 a + 0.07
    assert close(s.step_weights(), [0.93 * 0.25 + 0.07, 0.93 * 0.5 + 0.07, 1.0])
    s.observe(torch.tensor([2.0, 0.5, 0.25]))  # l_bar = [1.1, 0.5, 0.25]; a = [1/1.1, 2, 4] / 4
    assert close(s.step_weights(), [0.93 / 4.4 + 0.07, 0.93 * 0.5 + 0.07, 1.0], tol=1e-5)


def test_adaloss_final_extra_and_period() -> None:
    s = create_strategy("adaloss", BASE3, period=1, final_extra=0.5)
    s.observe(LOSSES)  # a = [0.25, 0.5, 1 + 0.5] / 1.5
    assert close(s.step_weights(), [0.93 / 6 + 0.07, 0.93 / 3 + 0.07, 1.0])
    p = create_strategy("adaloss", BASE3, period=3)
    for t in range(1, 4):
        p.observe(LOSSES)
        expected = [1.0, 1.0, 1.0] if t < 3 else [0.93 * 0.25 + 0.07, 0.93 * 0.5 + 0.07, 1.0]
        assert close(p.step_weights(), expected)
    masked = create_strategy("adaloss", torch.tensor([0.0, 0.5, 1.0]))
    assert close(masked.step_weights(), [0.0, 1.0, 1.0])  # no head where the scheme has none


def test_learners_frozen_during_warmup_then_learn() -> None:
    for name in ("eg", "rwm", "avgl"):
        s = create_strategy(name, BASE3)  # warmup_epochs = 1
        s.start_epoch(0)
        for _ in range(5):
            s.step_weights()
            s.observe(LOSSES)
        assert close(s.probabilities(), [1 / 3] * 3), name  # uniform during warm-up (spec §3.1)
        s.start_epoch(1)
        s.step_weights()
        s.observe(LOSSES)
        assert not close(s.probabilities(), [1 / 3] * 3), name


def test_non_finite_loss_is_skipped_and_counted() -> None:
    s = create_strategy("rwm", BASE3, warmup_epochs=0)
    s.observe(torch.tensor([1.0, float("nan"), 0.25]))
    s.observe(torch.tensor([float("inf"), 0.5, 0.25]))
    assert close(s.probabilities(), [1 / 3] * 3) and int(s.stats()["skipped"]) == 2
    s.observe(LOSSES)
    assert int(s.stats()["skipped"]) == 2 and not close(s.probabilities(), [1 / 3] * 3)
    assert close(s.stats()["mean_reward"], [0.5, 0.5, 0.4])  # skipped steps do not enter the statistics


def test_state_lives_on_the_base_weights_device_as_float32() -> None:
    s = create_strategy("eg", BASE3.double(), warmup_epochs=0)
    w = s.step_weights()
    assert w.dtype == torch.float32 and w.device == BASE3.device
    assert s.probabilities().dtype == torch.float32


# -- hyper-parameters -------------------------------------------------------------------------------
def test_validate_hparams_resolves_defaults() -> None:
    assert validate_hparams("eg", {"gamma": 0.2}) == {"gamma": 0.2, "rho": 0.8, "ratio": 2.0, "warmup_epochs": 1}
    assert validate_hparams("adaloss", {}) == {"gamma": 0.07, "momentum": 0.9, "period": 100,
                                               "final_extra": 0.0, "warmup_epochs": 0}
    assert validate_hparams("avgl", {"momentum": 1})["momentum"] == 1.0
    assert validate_hparams("static", {}) == {}


@pytest.mark.parametrize(
    ("name", "hp", "match"),
    [
        ("eg", {"gama": 0.2}, r"unknown hyper-parameter\(s\) gama \(did you mean gamma\?\); allowed: gamma, ratio, rho, warmup_epochs"),
        ("eg", {"gamma": 0.0}, r"gamma=0.0 is out of range; allowed: \(0, 1\]"),
        ("rwm", {"gamma": 1.5}, r"gamma=1.5 is out of range; allowed: \(0, 1\]"),
        ("aann", {"ratio": -1}, r"ratio=-1 is out of range; allowed: \[0, inf\)"),
        ("adaloss", {"period": 2.5}, r"period=2.5 must be an integer"),
        ("avgl", {"momentum": "fast"}, r"momentum='fast' must be a float"),
        ("eg", {"rho": True}, r"rho=True must be a float"),
        ("eg", {"gamma": float("nan")}, r"gamma=nan is out of range"),
        ("static", {"gamma": 0.3}, r"allowed: none"),
    ],
)
def test_bad_hparams_raise_naming_key_and_allowed(name: str, hp: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_hparams(name, hp)
    with pytest.raises(ValueError, match=match):
        create_strategy(name, BASE3, **hp)


def test_search_space_is_the_paper_grid() -> None:
    from adaptive_weights.strategies import get_strategy_class

    assert get_strategy_class("eg").search_space() == {"gamma": [0.1, 0.2, 0.3, 0.4], "rho": [0.7, 0.8, 0.9],
                                                      "ratio": [0.5, 1.0, 2.0]}
    assert get_strategy_class("adaloss").search_space() == {"gamma": [0.0, 0.07, 0.14], "momentum": [0.9, 0.99],
                                                           "period": [1, 100], "final_extra": [0.0, 0.5, 1.0]}
    assert get_strategy_class("static").search_space() == {}


@pytest.mark.parametrize("bad", [torch.tensor([]), torch.ones(2, 2), torch.tensor([1.0, -1.0]),
                                 torch.tensor([0.0, 0.0]), torch.tensor([1.0, float("nan")])])
def test_bad_base_weights_raise(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="base_weights"):
        create_strategy("eg", bad)


def test_start_epoch_and_observe_reject_bad_input() -> None:
    s = create_strategy("eg", BASE3)
    with pytest.raises(ValueError, match="epoch"):
        s.start_epoch(-1)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        s.observe(torch.ones(4))
