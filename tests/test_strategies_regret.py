"""No-regret tests that can fail: regret against the best fixed exit, on fixed reward sequences.

Rewards are fed through the learners' `learn(rewards)` hook (rewards in [0, 1]). For the
full-information learner (`rwm`) regret is computed exactly from the distribution (no sampling):
R_T = max_k sum_t r_t[k] - sum_t <p_t, r_t>. Two controls must FAIL the same checks: follow-the-leader
on the alternating sequence, and the uniform sampler (which never learns) on every sequence. For the
bandit learner (`eg`) the pseudo-regret uses the expected reward of each step's distribution,
averaged over a fixed list of seeds. The learners are online and do not know
T, so the regret of a prefix of a run is the regret of a run of that length.
"""

from __future__ import annotations

import math

import pytest
import torch

from adaptive_weights.strategies import create_strategy

K = 3
HORIZONS = (100, 1000, 10000)
BASE = torch.ones(K)


def alternating(T: int) -> torch.Tensor:
    """[0.5, 0, 0], then [0, 1, 0], [1, 0, 0], ...: follow-the-leader always picks the wrong exit."""
    r = torch.zeros(T, K, dtype=torch.float64)
    r[0, 0] = 0.5
    r[1::2, 1] = 1.0
    r[2::2, 0] = 1.0
    return r


def switching(T: int) -> torch.Tensor:
    """Exit 0 pays 1 for the first 40% of the steps, then exit 1 for the rest; exit 2 pays 0.3 throughout."""
    r = torch.zeros(T, K, dtype=torch.float64)
    r[: int(0.4 * T), 0] = 1.0
    r[int(0.4 * T):, 1] = 1.0
    r[:, 2] = 0.3
    return r


def iid(T: int) -> torch.Tensor:
    """i.i.d. Bernoulli rewards with means [0.4, 0.6, 0.5]: exit 1 is consistently best in expectation."""
    g = torch.Generator().manual_seed(1234)
    return (torch.rand(T, K, generator=g, dtype=torch.float64) < torch.tensor([0.4, 0.6, 0.5])).double()


def regret_curve(expected_gain: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """R_t for every prefix t = 1..T: best fixed exit's cumulative reward minus the learner's."""
    return rewards.cumsum(0).max(1).values - expected_gain.cumsum(0)


def run_full_info(gamma: float, rewards: torch.Tensor) -> torch.Tensor:
    s = create_strategy("rwm", BASE, gamma=gamma, warmup_epochs=0)
    gains = torch.empty(rewards.shape[0], dtype=torch.float64)
    for t, r in enumerate(rewards):
        gains[t] = s.probabilities().double() @ r
        s.learn(r.float())
    return gains


def follow_the_leader(rewards: torch.Tensor) -> torch.Tensor:
    cum = torch.zeros(K, dtype=torch.float64)
    gains = torch.empty(rewards.shape[0], dtype=torch.float64)
    for t, r in enumerate(rewards):
        gains[t] = r[int(cum.argmax())]
        cum += r
    return gains


def uniform_regret(rewards: torch.Tensor) -> float:
    """The uniform sampler's regret: it gains the mean reward of every step."""
    return float(regret_curve(rewards.mean(1), rewards)[-1])


def hedge_bound(rewards: torch.Tensor, gamma: float) -> float:
    """Since p = (1-gamma) w + gamma/K, the regret of p is exactly (1-gamma) R(w) + gamma R(uniform).
    R(w) is Hedge's with eta = gamma/2 (Cesa-Bianchi & Lugosi 2006, Thm 2.2, via Hoeffding's lemma):
    ln K / eta + eta T / 8, plus T ln(1/(1-a)) / eta for the floor w <- (1-a) w + a/K with
    a = 0.001 gamma (the best exit's share shrinks by at most (1-a) per step). Unlike the cruder
    + gamma T for the mixing, this bound is below the uniform sampler's regret from T = 1000 on."""
    T = rewards.shape[0]
    eta, a = gamma / 2, 0.001 * gamma
    hedge = math.log(K) / eta + eta * T / 8 + T * math.log(1 / (1 - a)) / eta
    return (1 - gamma) * hedge + gamma * uniform_regret(rewards)


def exp3_bound(T: int, gamma: float, g_max: float) -> float:
    """Exp3 (Auer, Cesa-Bianchi, Freund, Schapire 2002, Thm 3.1; eta = gamma/K, rewards in [0, 1]):
    G_max - E[G] <= (e - 1) gamma G_max + K ln K / gamma, plus T K ln(1/(1-a)) / gamma for the floor
    with a = 0.001 gamma (enters exactly where ln K does)."""
    a = 0.001 * gamma
    return (math.e - 1) * gamma * g_max + K * math.log(K) / gamma + T * K * math.log(1 / (1 - a)) / gamma


@pytest.mark.parametrize("gamma", [0.05, 0.3])
@pytest.mark.parametrize("sequence", [alternating, switching, iid])
def test_rwm_regret_under_hedge_bound_and_falling(sequence, gamma: float) -> None:
    per_t = []
    for T in HORIZONS:
        rewards = sequence(T)
        regret = float(regret_curve(run_full_info(gamma, rewards), rewards)[-1])
        assert regret <= hedge_bound(rewards, gamma), (sequence.__name__, T, regret, hedge_bound(rewards, gamma))
        per_t.append(regret / T)
    assert per_t[0] > per_t[1] > per_t[2], per_t


@pytest.mark.parametrize("sequence", [alternating, switching, iid])
def test_uniform_sampler_fails_the_hedge_check(sequence) -> None:
    """The control: a sampler that never learns breaks the bound from T = 1000 on, for both gammas."""
    for T in HORIZONS[1:]:
        rewards = sequence(T)
        for gamma in (0.05, 0.3):
            assert uniform_regret(rewards) > hedge_bound(rewards, gamma), (T, gamma)


def test_follow_the_leader_fails_the_same_check() -> None:
    """The control: FTL has regret ~T/2 on the alternating sequence, above the bound for both gammas."""
    per_t = []
    for T in HORIZONS:
        rewards = alternating(T)
        regret = float(regret_curve(follow_the_leader(rewards), rewards)[-1])
        per_t.append(regret / T)
        if T >= 1000:
            assert regret > hedge_bound(rewards, 0.05) and regret > hedge_bound(rewards, 0.3)
    assert per_t[2] >= per_t[1] >= 0.49  # linear regret: regret/T does not fall
    # and RWM with the same gamma stays far below FTL on it
    rwm = float(regret_curve(run_full_info(0.05, alternating(10000)), alternating(10000))[-1])
    assert rwm < 0.2 * per_t[2] * 10000


SEEDS = (0, 1, 2)


def run_bandit(gamma: float, rewards: torch.Tensor, seed: int) -> torch.Tensor:
    s = create_strategy("eg", BASE, gamma=gamma, warmup_epochs=0, seed=seed)
    gains = torch.empty(rewards.shape[0], dtype=torch.float64)
    for t, r in enumerate(rewards):
        s.step_weights()  # draws the exit whose reward the update may read
        gains[t] = s.probabilities().double() @ r
        s.learn(r.float())
    return gains


@pytest.mark.parametrize("gamma", [0.1, 0.3])
def test_eg_pseudo_regret_consistent_best_under_exp3_bound_and_falling(gamma: float) -> None:
    T = HORIZONS[-1]
    rewards = torch.tensor([0.4, 0.7, 0.5], dtype=torch.float64).expand(T, K)
    curve = torch.stack([regret_curve(run_bandit(gamma, rewards, s), rewards) for s in SEEDS]).mean(0)
    per_t = []
    for t in HORIZONS:
        regret = float(curve[t - 1])
        g_max = float(rewards[:t].sum(0).max())
        assert regret <= exp3_bound(t, gamma, g_max), (t, regret, exp3_bound(t, gamma, g_max))
        per_t.append(regret / t)
    assert per_t[0] > per_t[1] > per_t[2], per_t
    # the learner found the best exit: its probability ends near the maximum (1 - gamma) + gamma/K
    assert per_t[2] < gamma * 0.3 + 0.02


def exp3_check(regret: float, rewards: torch.Tensor, gamma: float) -> bool:
    """Under Exp3's bound and well inside it (unlike FTL's T/2)."""
    T, g_max = rewards.shape[0], float(rewards.sum(0).max())
    return regret <= exp3_bound(T, gamma, g_max) and regret / T < 0.5 * (math.e - 1) * gamma


@pytest.mark.parametrize("sequence", [alternating, switching])
def test_eg_pseudo_regret_adversarial_under_exp3_bound(sequence) -> None:
    """gamma = 0.1 (the paper's smallest grid value): there Exp3's bound is below the uniform
    sampler's regret (at gamma = 0.3 it is not: K ln K / gamma is small but (e-1) gamma G_max is not),
    so the check tells a learner from a sampler that never learns."""
    gamma, T = 0.1, 2000
    rewards = sequence(T)
    curve = torch.stack([regret_curve(run_bandit(gamma, rewards, s), rewards) for s in SEEDS]).mean(0)
    assert exp3_check(float(curve[-1]), rewards, gamma), float(curve[-1])
    assert not exp3_check(uniform_regret(rewards), rewards, gamma), uniform_regret(rewards)  # the control
