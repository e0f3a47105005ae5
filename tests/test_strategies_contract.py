"""Generic contract tests, parametrised over EVERY registered strategy, including an installed plugin.

The plugin package in tests/plugins/aw_plugin_example is pip-installed (offline, no dependencies, no
build isolation) into a temporary directory put on sys.path, and found through its entry point.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from adaptive_weights import strategies
from adaptive_weights.strategies import (
    STRATEGIES,
    RewardLearner,
    SamplingStrategy,
    create_strategy,
    list_strategies,
)

PLUGIN_SRC = Path(__file__).parent / "plugins" / "aw_plugin_example"
PLUGIN_NAME = "example_greedy"
BASE = torch.tensor([0.3, 0.1, 0.2, 0.1, 0.5, 0.1, 0.2, 0.1, 1.3])  # K = 9, final = half the mass


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory):
    """Install the example plugin into a temporary target, load its entry points, clean up after."""
    src = tmp_path_factory.mktemp("plugin_src") / "aw_plugin_example"
    shutil.copytree(PLUGIN_SRC, src)  # build artefacts go to the copy, not the source tree
    target = tmp_path_factory.mktemp("plugin_site")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--target", str(target), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    sys.path.insert(0, str(target))
    try:
        with pytest.warns(RuntimeWarning, match="example_broken") as record:
            new = STRATEGIES.load_entry_points()
        yield {"new": new, "warnings": [str(w.message) for w in record]}
    finally:
        sys.path.remove(str(target))
        for name in new:
            STRATEGIES.unregister(name)
        for mod in [m for m in sys.modules if m.startswith("aw_plugin_example")]:
            del sys.modules[mod]


ALL_NAMES = [*list_strategies(), PLUGIN_NAME]


@pytest.fixture(params=ALL_NAMES)
def name(request: pytest.FixtureRequest) -> str:
    if request.param == PLUGIN_NAME:
        request.getfixturevalue("installed_plugin")
    return request.param


def param_sets(name: str) -> list[dict]:
    """Defaults, and the first value of each grid entry; learning switched on from the first step."""
    cls = strategies.get_strategy_class(name)
    warm = {"warmup_epochs": 0} if "warmup_epochs" in cls.hparams else {}
    if "period" in cls.hparams:
        warm["period"] = 1
    first = {k: v[0] for k, v in cls.search_space().items()}
    return [warm, {**first, **warm}]


def loss_stream(n: int, seed: int = 0, K: int = 9) -> list[torch.Tensor]:
    """Loss vectors that mostly decrease with depth, with noise (so rewards take both signs)."""
    g = torch.Generator().manual_seed(seed)
    trend = torch.linspace(2.0, 0.5, K)
    return [trend * torch.exp(0.3 * torch.randn(K, generator=g)) for _ in range(n)]


def run(strategy, losses, *, epoch_every: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    weights, probs = [], []
    for t, loss in enumerate(losses):
        if epoch_every and t % epoch_every == 0:
            strategy.start_epoch(t // epoch_every)
        weights.append(strategy.step_weights().clone())
        strategy.observe(loss)
        probs.append(strategy.probabilities().clone())
    return weights, probs


def assert_simplex(p: torch.Tensor, floor: float, K: int = 9) -> None:
    assert p.shape == (K,) and p.dtype == torch.float32
    assert torch.isfinite(p).all(), p
    assert (p >= 0).all(), p
    assert abs(float(p.sum()) - 1.0) < 1e-5, p
    assert float(p.min()) >= floor * (1 - 1e-5) - 1e-7, (p, floor)


def test_plugin_found_by_entry_point(installed_plugin) -> None:
    assert installed_plugin["new"] == [PLUGIN_NAME]
    assert PLUGIN_NAME in list_strategies() and PLUGIN_NAME in list_strategies("example_*")
    s = create_strategy(PLUGIN_NAME, BASE, decay=0.5, warmup_epochs=0)
    assert type(s).__module__ == "aw_plugin_example" and s.spec()["decay"] == 0.5
    assert s.spec()["name"] == PLUGIN_NAME
    assert "example_greedy" in strategies.describe_strategies() and "decay" in strategies.describe_strategies()
    with pytest.raises(ValueError, match="decay=2"):
        create_strategy(PLUGIN_NAME, BASE, decay=2.0)
    # the plugin learns: a large reward for exit 0 only moves probability there
    s.step_weights()
    s.observe(torch.tensor([1.0, 2.0, 2, 2, 2, 2, 2, 2, 2]))  # r_0 = 1 - 2/1 = -1, others 0, final 0
    p = s.probabilities()
    assert float(p[0]) < float(p[1]) and torch.allclose(p[1:], p[1].expand(8))


def test_broken_plugin_warns_and_others_survive(installed_plugin) -> None:
    (msg,) = [m for m in installed_plugin["warnings"] if "example_broken" in m]
    assert "aw_plugin_example:DoesNotExist" in msg
    assert "example_broken" not in list_strategies()
    assert {"eg", "rwm", PLUGIN_NAME} <= set(list_strategies())


@pytest.mark.parametrize("which", [0, 1])
def test_probabilities_valid_and_weights_finite(name: str, which: int) -> None:
    s = create_strategy(name, BASE, seed=3, **param_sets(name)[which])
    assert_simplex(s.probabilities(), s.probability_floor())
    weights, probs = run(s, loss_stream(60))
    for w, p in zip(weights, probs, strict=True):
        assert torch.isfinite(w).all() and (w >= 0).all() and w.dtype == torch.float32
        assert_simplex(p, s.probability_floor())


#: the first step's weights of the built-in strategies that draw nothing (spec §2.3, §3.4)
FIRST_WEIGHTS_NOT_SAMPLING = {"static": BASE, "adaloss": torch.ones(9)}


def test_first_step_uses_final_exit(name: str) -> None:
    """A sampling strategy's first step is the final exit's bonus, whatever the seed; one that draws
    nothing starts from its initial weights (the scheme's for static, all ones for AdaLoss), in
    which the final exit has weight."""
    for seed in (1, 2, 3):
        s = create_strategy(name, BASE, seed=seed)
        w = s.step_weights()
        assert w.dtype == torch.float32 and w.shape == (9,) and float(w[8]) > 0
        if isinstance(s, SamplingStrategy):
            assert int(s.stats()["selected"]) == 8 and int(s.stats()["draws"][8]) == 1
            assert torch.allclose(w, BASE + torch.eye(9)[8] * 2 * 1.3 / s.ratio), (seed, w)  # default ratio > 0
        elif name in FIRST_WEIGHTS_NOT_SAMPLING:
            assert torch.equal(w, FIRST_WEIGHTS_NOT_SAMPLING[name]), (name, w)


@pytest.mark.parametrize("which", [0, 1])
def test_same_seed_same_draws(name: str, which: int) -> None:
    hp = param_sets(name)[which]
    a, b = (create_strategy(name, BASE, seed=11, **hp) for _ in range(2))
    wa, pa = run(a, loss_stream(40), epoch_every=15)
    wb, pb = run(b, loss_stream(40), epoch_every=15)
    assert all(torch.equal(x, y) for x, y in zip(wa + pa, wb + pb, strict=True))
    if isinstance(a, SamplingStrategy):  # the seed matters: another seed draws other exits
        wc, _ = run(create_strategy(name, BASE, seed=12, **hp), loss_stream(40), epoch_every=15)
        assert any(not torch.equal(x, y) for x, y in zip(wa, wc, strict=True))


@pytest.mark.parametrize("which", [0, 1])
def test_state_dict_round_trip_continues_identically(name: str, which: int) -> None:
    hp = param_sets(name)[which]
    stream = loss_stream(50, seed=5)
    a = create_strategy(name, BASE, seed=7, **hp)
    a.start_epoch(0)
    run(a, stream[:23])
    a.start_epoch(1)
    run(a, stream[23:25])
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    b = create_strategy(name, BASE, seed=999, **hp)  # a different seed: the state must carry the generator
    b.load_state_dict(state)
    b.start_epoch(1)  # the resumed run starts the same epoch again; the uninterrupted one does not
    wa, pa = run(a, stream[25:])
    wb, pb = run(b, stream[25:])
    assert all(torch.equal(x, y) for x, y in zip(wa + pa, wb + pb, strict=True))
    assert a.spec() == b.spec() and a.spec()["name"] == name
    sa, sb = a.stats(), b.stats()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_state_dict_refuses_another_strategy(name: str) -> None:
    s = create_strategy(name, BASE)
    other = "static" if name != "static" else "aann"
    with pytest.raises(ValueError, match="name"):
        s.load_state_dict(create_strategy(other, BASE).state_dict())
    with pytest.raises(ValueError, match="K"):
        s.load_state_dict(create_strategy(name, BASE[:4]).state_dict())


def test_load_state_dict_copies_into_the_existing_tensors(name: str) -> None:
    """A compiled step (a CUDA graph) reads and writes the state tensors at the addresses it saw
    when it was captured: a load must copy into them, never rebind them, and a tensor of another
    dtype is refused before anything changes (a silent cast would hide a foreign state)."""
    a = create_strategy(name, BASE, seed=7, **param_sets(name)[0])
    a.start_epoch(0)
    run(a, loss_stream(5, seed=3))
    b = create_strategy(name, BASE, seed=999, **param_sets(name)[0])
    names = list(b.state_dict()["tensors"])
    before = {k: (getattr(b, k), getattr(b, k).data_ptr()) for k in names}
    b.load_state_dict(a.state_dict())
    for k in names:
        assert getattr(b, k) is before[k][0] and getattr(b, k).data_ptr() == before[k][1], k
        assert torch.equal(getattr(b, k), getattr(a, k)), k
    fresh = create_strategy(name, BASE, seed=999, **param_sets(name)[0])
    kept = fresh.state_dict()
    state = a.state_dict()
    key = names[-1]
    other = torch.float64 if state["tensors"][key].dtype != torch.float64 else torch.float32
    state["tensors"][key] = state["tensors"][key].to(other)
    with pytest.raises(ValueError, match=rf"{key}.*is {other}.*expected"):
        fresh.load_state_dict(state)
    assert all(torch.equal(v, fresh.state_dict()["tensors"][k]) for k, v in kept["tensors"].items())


@pytest.mark.parametrize("which", [0, 1])
def test_extreme_losses_never_give_nan(name: str, which: int) -> None:
    s = create_strategy(name, BASE, seed=2, **param_sets(name)[which])
    inf, nan = float("inf"), float("nan")
    extremes = [
        torch.zeros(9), torch.full((9,), 1e6), torch.full((9,), 3.0), torch.tensor([1e6, 0, 1e6, 0, 1e-30, 1e6, 0, 5, 0]),
        torch.full((9,), inf), torch.full((9,), nan), torch.tensor([1.0, nan, 2, 3, 4, inf, 0, 1, 1]),
        torch.tensor([1e-30, 1e30, 1e-30, 1e30, 1, 1, 1, 1, 1]), torch.tensor([1.0, -inf, 1, 1, 1, 1, 1, 1, 1]),
    ]
    non_finite = sum(not bool(torch.isfinite(x).all()) for x in extremes)
    weights, probs = run(s, extremes * 3 + loss_stream(10))
    for w, p in zip(weights, probs, strict=True):
        assert torch.isfinite(w).all() and (w >= 0).all()
        assert_simplex(p, s.probability_floor())
    skipped = int(s.stats()["skipped"])
    assert 3 * non_finite <= skipped <= 3 * (non_finite + 1)  # +1: 1e30/1e-30 overflows the reward


def test_sampling_frequencies_match_probabilities(name: str) -> None:
    """While frozen (warm-up) the draws follow probabilities(): every exit within 4.5 binomial sigmas."""
    s = create_strategy(name, BASE, seed=4)
    if not isinstance(s, SamplingStrategy):
        pytest.skip(f"{name} does not sample")
    n = 3000
    s.step_weights()  # the forced first step (final exit) is not a draw
    p = s.probabilities().double()
    run(s, loss_stream(n - 1))
    s.step_weights()
    counts = s.stats()["draws"].double()
    counts[8] -= 1
    freq = counts / n
    tol = 4.5 * torch.sqrt(p * (1 - p) / n) + 1e-9
    assert ((freq - p).abs() <= tol).all(), (freq, p, tol)


def test_bandit_ignores_rewards_of_exits_not_drawn(name: str) -> None:
    cls = strategies.get_strategy_class(name)
    if cls.feedback != "bandit":
        pytest.skip(f"{name} is not a bandit strategy")
    assert issubclass(cls, RewardLearner)
    g = torch.Generator().manual_seed(0)
    a, b = (create_strategy(name, BASE, seed=21, warmup_epochs=0) for _ in range(2))
    for _ in range(50):
        a.step_weights(), b.step_weights()
        sel = int(a.stats()["selected"])
        assert sel == int(b.stats()["selected"])
        r = torch.rand(9, generator=g) * 2 - 1
        other = torch.where(torch.arange(9) == sel, r, torch.randn(9, generator=g) * 100)
        a.learn(r), b.learn(other)
        assert torch.equal(a.probabilities(), b.probabilities())
    assert not torch.equal(a.probabilities(), create_strategy(name, BASE).probabilities())


def test_every_builtin_declares_its_feedback() -> None:
    expect = {"static": "none", "aann": "none", "uniform": "none", "quartile": "none",
              "eg": "bandit", "rwm": "full", "avgl": "full", "adaloss": "full"}
    assert {n: strategies.get_strategy_class(n).feedback for n in expect} == expect


class _TinyAnytimeNet(torch.nn.Module):
    """K linear exits on a shared trunk: enough to exercise the per-step training contract."""

    def __init__(self, K: int = 9) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(K))
        self.heads = torch.nn.ModuleList(torch.nn.Linear(4, 3) for _ in range(K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for block, head in zip(self.blocks, self.heads, strict=True):
            x = torch.relu(block(x))
            outs.append(head(x))
        return torch.stack(outs)  # [K, B, classes]


def test_trains_in_the_step_loop(name: str) -> None:
    """The trainer's per-step protocol (weights -> losses [K] -> weighted sum -> observe) with every strategy."""
    torch.manual_seed(0)
    net = _TinyAnytimeNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    s = create_strategy(name, BASE, seed=0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    before = [q.detach().clone() for q in net.parameters()]
    for epoch in range(2):
        s.start_epoch(epoch)
        for _ in range(5):  # 10 steps: a rotation over the 9 exits reaches every head
            weights = s.step_weights()
            logits = net(x)
            losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(9), reduction="none")
            losses = losses.view(9, 16).mean(1)
            opt.zero_grad()
            (weights * losses).sum().backward()
            opt.step()
            s.observe(losses.detach())
    assert all(not torch.equal(b, q) for b, q in zip(before, net.parameters(), strict=True))
    assert int(s.stats()["skipped"]) == 0
    assert_simplex(s.probabilities(), s.probability_floor())


def test_step_compiles_as_one_graph_and_matches_eager(name: str) -> None:
    """Capture safety, checked on the CPU: `step_weights` + `observe` trace as one fullgraph graph,
    are traced at most twice in 20 steps (learning frozen, then on) and give exactly the eager
    weights, probabilities and state, across an epoch change that switches learning on."""
    hp = {k: v for k, v in param_sets(name)[0].items() if k != "warmup_epochs"}  # the default warm-up
    eager, traced = (create_strategy(name, BASE, seed=13, **hp) for _ in range(2))
    assert type(eager).capture_safe, f"{name} must declare capture_safe = True"
    fn, traces = strategies.compile_step(traced)
    for t, losses in enumerate(loss_stream(20, seed=8)):
        if t % 7 == 0:
            eager.start_epoch(t // 7), traced.start_epoch(t // 7)
        w_eager = eager.step_weights()
        eager.observe(losses)
        assert torch.equal(fn(losses), w_eager), t
        assert torch.equal(traced.probabilities(), eager.probabilities()), t
    assert 1 <= traces[0] <= 2, traces
    a, b = eager.state_dict(), traced.state_dict()
    assert a["steps"] == b["steps"] == 20
    assert all(torch.equal(a["tensors"][k], b["tensors"][k]) for k in a["tensors"])


def test_no_warning_on_normal_lookup() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "eg" in list_strategies()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_state_on_device_and_no_host_sync(name: str) -> None:
    """On CUDA every step runs without a host-device sync (sync debug mode raises on one) and the
    state survives a save and load on the GPU."""
    dev = torch.device("cuda")
    hp = param_sets(name)[0]
    s = create_strategy(name, BASE.to(dev), seed=5, **hp)
    stream = [x.to(dev) for x in loss_stream(30)]
    stream[7] = torch.full((9,), float("nan"), device=dev)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        s.start_epoch(0)
        for x in stream:
            w = s.step_weights()
            s.observe(x)
            p = s.probabilities()
        stats = s.stats()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert w.device.type == "cuda" and p.device.type == "cuda" and w.dtype == torch.float32
    assert all(v.device.type == "cuda" for v in stats.values())
    assert_simplex(p.cpu(), s.probability_floor())
    assert int(stats["skipped"]) == 1
    b = create_strategy(name, BASE.to(dev), seed=5, **hp)
    b.load_state_dict(torch.load(io.BytesIO(_saved(s)), weights_only=True))
    assert torch.equal(b.step_weights(), s.step_weights())


def _saved(s) -> bytes:
    buf = io.BytesIO()
    torch.save(s.state_dict(), buf)
    return buf.getvalue()


def test_trains_via_the_training_loop(name: str, tiny_flat: dict, tmp_path: Path) -> None:
    """Every registered strategy, the plugin included, runs through `adaptive_weights.training` (two
    epochs on a tiny synthetic set: the learners are frozen in the first and learn in the second)."""
    import json

    from adaptive_weights.config import RunConfig
    from adaptive_weights.training import train

    summary = train(RunConfig.from_flat({**tiny_flat, "strategy.name": name}), out_dir=tmp_path / "r", tensorboard=False)
    assert summary["strategy"] == name
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    probs = [v for k, v in rows[-1].items() if k.startswith("train/prob/exit_")]
    assert len(probs) == 3 and abs(sum(probs) - 1) < 1e-5 and min(probs) >= 0
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)["strategy"]
    assert state["name"] == name and state["epoch"] == 1 and state["steps"] > 0
