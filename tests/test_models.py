"""Anytime ResNets: shapes, exit placement, truncation, anytime inference, groups and errors."""

import pytest
import torch
from torch import nn

import adaptive_weights.models as models
from adaptive_weights.models import (
    AnytimeImageNetResNet,
    AnytimeNet,
    AnytimeResNet,
    _base,
    create_model,
    exit_positions,
    list_models,
)
from adaptive_weights.models._units import relu_mean_pool


@pytest.mark.parametrize(
    "kwargs,size,expected_exits",
    [
        (dict(n=1, c=4), 32, 3),
        (dict(n=2, c=4, period=2), 32, 3),
        (dict(n=3, c=2, period=3, num_classes=100), 32, 3),
        (dict(n=1, c=4, in_channels=1, input_size=8), 8, 3),
        (dict(n=2, c=3, exits=[0, 4], in_channels=1, input_size=8, unit_style="2017"), 8, 2),
        (dict(n=2, c=4, exits=[2]), 32, 1),
    ],
)
def test_output_shapes(kwargs, size, expected_exits):
    torch.manual_seed(0)
    m = AnytimeResNet(**kwargs)
    x = torch.randn(5, m.in_channels, size, size)
    out = m(x)
    assert out.shape == (expected_exits, 5, kwargs.get("num_classes", 10))
    assert m.num_exits == expected_exits
    assert torch.isfinite(out).all()


def test_imagenet_shapes_and_units():
    torch.manual_seed(0)
    m = AnytimeImageNetResNet(depth=14, period=1, num_classes=6, input_size=64)
    assert (m.num_units, m.exit_units) == (4, [0, 1, 2, 3])
    assert m(torch.randn(2, 3, 64, 64)).shape == (4, 2, 6)
    assert [h.fc.in_features for h in m.heads] == [256, 512, 1024, 2048]
    assert AnytimeImageNetResNet(depth=101, period=3).exit_units == list(range(2, 33, 3))
    basic = AnytimeImageNetResNet(depth=34, period=2, num_classes=3, input_size=32)
    assert basic.num_units == 16 and basic(torch.randn(2, 3, 32, 32)).shape == (8, 2, 3)
    assert [h.fc.in_features for h in basic.heads] == [64, 128, 128, 256, 256, 256, 512, 512]


@pytest.mark.parametrize(
    "num_units,period,expected",
    [(9, 1, list(range(9))), (9, 2, [0, 2, 4, 6, 8]), (9, 3, [2, 5, 8]), (10, 3, [0, 3, 6, 9]), (4, 9, [3])],
)
def test_exit_positions(num_units, period, expected):
    assert exit_positions(num_units, period) == expected


def test_exit_placement_on_models():
    m = AnytimeResNet(n=25, c=1, period=3)
    assert m.num_units == 75 and m.num_exits == 25
    assert m.exit_units == list(range(2, 75, 3))
    assert AnytimeResNet(n=3, c=1, period=2).exit_units == [0, 2, 4, 6, 8]
    assert AnytimeResNet(n=3, c=1, period=1).exit_units == list(range(9))
    numpy_ints = AnytimeResNet(n=3, c=1, exits=torch.tensor([1, 4]).numpy()).exit_units
    assert numpy_ints == [1, 4] and all(type(u) is int for u in numpy_ints)


def test_truncated_trunk_builds_only_up_to_last_exit():
    m = AnytimeResNet(n=9, c=2, exits=[13])
    assert (m.num_units, m.num_exits, m.exit_units) == (27, 1, [13])
    assert len(m.units) == 14 and len(m.heads) == 1
    assert m.heads[0].fc.in_features == 4  # unit 13 is in stage 2 (2c channels)
    full = AnytimeResNet(n=9, c=2)
    assert m.trunk_macs() == [full.trunk_macs()[13]]


def test_unit_structure_and_transition():
    m = AnytimeResNet(n=1, c=4, exits=[1])
    pre = m.units[0].branch
    assert [type(x) for x in pre] == [
        nn.BatchNorm2d,
        nn.ReLU,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.Conv2d,
        nn.BatchNorm2d,
    ]
    old = AnytimeResNet(n=1, c=4, exits=[1], unit_style="2017").units[0].branch
    assert [type(x) for x in old] == [
        nn.BatchNorm2d,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.Conv2d,
        nn.BatchNorm2d,
    ]
    # transition shortcut: 2x2 average then zero channels on both sides, old channels in the middle
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)
    short = m.units[1].shortcut(x)
    assert short.shape == (2, 8, 2, 2)
    assert torch.equal(short[:, :2], torch.zeros(2, 2, 2, 2)) and torch.equal(
        short[:, 6:], torch.zeros(2, 2, 2, 2)
    )
    assert torch.allclose(short[:, 2:6], nn.functional.avg_pool2d(x, 2))
    assert m.units[1].branch[2].stride == (2, 2)
    assert isinstance(m.stem, nn.Sequential) and [type(x) for x in m.stem] == [nn.Conv2d]


def test_no_relu_after_addition_and_head_reads_raw_sum():
    torch.manual_seed(0)
    m = AnytimeResNet(n=1, c=4, period=1)
    h = m.stem_forward(torch.randn(3, 3, 32, 32))
    h0, logits0 = m.advance(h, 0)
    assert (h0 < 0).any()  # the trunk carries the raw sum
    fc = m.heads[0].fc
    assert torch.allclose(logits0, fc(torch.relu(h0).mean(dim=(2, 3))), atol=1e-6)


def test_relu_mean_pool_matches_autograd_reference():
    torch.manual_seed(0)
    h = torch.randn(3, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(relu_mean_pool, (h,))
    g = torch.randn(3, 4, dtype=torch.float64)
    (grad,) = torch.autograd.grad(relu_mean_pool(h), h, g)
    (ref,) = torch.autograd.grad(torch.relu(h).mean(dim=(2, 3)), h, g)
    assert torch.allclose(relu_mean_pool(h), torch.relu(h).mean(dim=(2, 3)), atol=1e-12)
    assert torch.allclose(grad, ref, atol=1e-12)


def test_initialisation():
    torch.manual_seed(0)
    m = AnytimeResNet(n=2, c=32, num_classes=10)
    w = m.units[1].branch[2].weight  # 32 -> 32, 3x3: fan_in 288
    assert w.std().item() == pytest.approx((2 / 288) ** 0.5, rel=0.05)
    bn = m.units[0].branch[0]
    assert torch.equal(bn.weight, torch.ones(32)) and torch.equal(bn.bias, torch.zeros(32))
    assert (bn.momentum, bn.eps) == (0.1, 1e-5)
    head = m.heads[-1].fc
    assert torch.equal(head.bias, torch.zeros(10))
    assert head.weight.std().item() == pytest.approx((2 / 128) ** 0.5, rel=0.15)


def test_advance_chain_equals_forward():
    torch.manual_seed(0)
    for m, size in (
        (AnytimeResNet(n=2, c=4, period=2), 32),
        (AnytimeImageNetResNet(14, num_classes=5, input_size=32), 32),
    ):
        m.eval()
        x = torch.randn(4, 3, size, size)
        full = m(x)
        h = m.stem_forward(x)
        for k in range(m.num_exits):
            h, logits = m.advance(h, k)
            assert torch.allclose(logits, full[k], atol=1e-5)
        # advance works on a shrinking sub-batch: rows 1 and 3 only
        h = m.stem_forward(x)
        h, _ = m.advance(h, 0)
        h = h[[1, 3]]
        _, logits = m.advance(h, 1)
        assert torch.allclose(logits, full[1, [1, 3]], atol=1e-5)


class UnitCalls:
    """Counts forward calls of the stem and every unit via hooks."""

    def __init__(self, model: AnytimeNet) -> None:
        self.stem = 0
        self.units = [0] * len(model.units)
        model.stem.register_forward_hook(self._stem)
        for i, unit in enumerate(model.units):
            unit.register_forward_hook(self._unit(i))

    def _stem(self, *_):
        self.stem += 1

    def _unit(self, i):
        def hook(*_):
            self.units[i] += 1

        return hook


def _model_and_input():
    torch.manual_seed(0)
    m = AnytimeResNet(n=2, c=4, period=2).eval()  # exits at units 1, 3, 5
    return m, torch.randn(2, 3, 32, 32)


def test_anytime_full_run_matches_forward():
    m, x = _model_and_input()
    out = list(m.anytime(x))
    assert [(k, cost) for k, cost, _ in out] == list(enumerate(m.exit_macs()))
    assert torch.allclose(torch.stack([o[2] for o in out]), m(x), atol=1e-6)


@pytest.mark.parametrize(
    "budget_exit,extra,expected_exits,units_run", [(1, 0, 2, 4), (1, -1, 1, 2), (2, 10**9, 3, 6)]
)
def test_anytime_budget_skips_work(budget_exit, extra, expected_exits, units_run):
    m, x = _model_and_input()
    calls = UnitCalls(m)
    out = list(m.anytime(x, budget_macs=m.exit_macs()[budget_exit] + extra))
    assert [k for k, _, _ in out] == list(range(expected_exits))
    assert calls.units == [1] * units_run + [0] * (6 - units_run)
    assert calls.stem == 1


def test_anytime_budget_below_first_exit_computes_nothing():
    m, x = _model_and_input()
    calls = UnitCalls(m)
    assert list(m.anytime(x, budget_macs=m.exit_macs()[0] - 1)) == []
    assert list(m.anytime(x, budget_macs=0)) == []
    assert calls.stem == 0 and calls.units == [0] * 6


def test_anytime_deadline_zero_yields_nothing():
    m, x = _model_and_input()
    calls = UnitCalls(m)
    assert list(m.anytime(x, deadline_s=0)) == []
    assert calls.stem == 0 and calls.units == [0] * 6


def test_anytime_deadline_stops_before_next_exit(monkeypatch):
    """A fake clock advancing 1 s per unit call makes the deadline checks deterministic."""
    m, x = _model_and_input()
    clock = {"t": 100.0}
    monkeypatch.setattr(_base.time, "perf_counter", lambda: clock["t"])
    calls = UnitCalls(m)
    for unit in m.units:
        unit.register_forward_hook(lambda *_: clock.__setitem__("t", clock["t"] + 1.0))
    out = list(m.anytime(x, deadline_s=2.5))
    # exit 0 checked at elapsed 0, exit 1 at 2 (< 2.5), exit 2 at 4 (>= 2.5): stop
    assert [k for k, _, _ in out] == [0, 1]
    assert calls.units == [1, 1, 1, 1, 0, 0]
    clock["t"] = 100.0
    calls.units = [0] * 6
    out = list(m.anytime(x, deadline_s=2.0))  # exit 1 checked at elapsed 2 >= 2: stop
    assert [k for k, _, _ in out] == [0] and calls.units == [1, 1, 0, 0, 0, 0]


def test_anytime_clock_starts_at_call_and_checks_arguments(monkeypatch):
    m, x = _model_and_input()
    clock = {"t": 0.0}
    monkeypatch.setattr(_base.time, "perf_counter", lambda: clock["t"])
    gen = m.anytime(x, deadline_s=1.0)
    clock["t"] = 5.0  # the consumer waits before the first next(): the deadline has passed
    assert list(gen) == []
    with pytest.raises(ValueError, match="budget_macs=-1"):
        m.anytime(x, budget_macs=-1)
    with pytest.raises(ValueError, match="deadline_s=nan"):
        m.anytime(x, deadline_s=float("nan"))


def test_parameter_groups_decay_values():
    m = AnytimeResNet(n=1, c=4, period=1)  # 3 exits
    groups = m.parameter_groups(2e-4, [0.5, 0.0, 1.0])
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(m.parameters()))
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            assert decay[id(mod.weight)] == 2e-4
        if isinstance(mod, nn.BatchNorm2d):
            assert decay[id(mod.weight)] == 0.0 and decay[id(mod.bias)] == 0.0
    for k, w in enumerate([0.5, 0.0, 1.0]):
        assert decay[id(m.heads[k].fc.weight)] == decay[id(m.heads[k].fc.bias)] == pytest.approx(2e-4 * w)
    # heads with equal weights share one group; SGD accepts the groups as given
    assert len(m.parameter_groups(1e-4, [1.0, 1.0, 1.0])) == 3
    torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def test_parameter_groups_reject_bad_input():
    m = AnytimeResNet(n=1, c=2)
    with pytest.raises(ValueError, match="3 exits"):
        m.parameter_groups(1e-4, [1.0, 1.0])
    with pytest.raises(ValueError, match="weight_decay=-1"):
        m.parameter_groups(-1, [1.0] * 3)
    with pytest.raises(ValueError, match="finite"):
        m.parameter_groups(1e-4, [1.0, float("nan"), 1.0])


def test_registry():
    assert list_models() == ["imagenet-resnet", "resnet"]
    assert list_models("imagenet*") == ["imagenet-resnet"]
    m = create_model("resnet", n=1, c=2, num_classes=4)
    assert isinstance(m, AnytimeResNet) and m.num_classes == 4
    assert isinstance(create_model("imagenet-resnet", depth=14, input_size=64), AnytimeImageNetResNet)
    with pytest.raises(
        ValueError, match=r"'resnett'.*did you mean resnet.*available: imagenet-resnet, resnet"
    ):
        create_model("resnett")
    assert set(models.__all__) >= {
        "AnytimeNet",
        "AnytimeResNet",
        "AnytimeImageNetResNet",
        "create_model",
        "list_models",
    }


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n=0), "n=0"),
        (dict(c=0), "c=0"),
        (dict(period=0), "period=0"),
        (dict(n=1.5), "n=1.5"),
        (dict(num_classes=0), "num_classes=0"),
        (dict(unit_style="v3"), "unit_style='v3'.*preact"),
        (dict(n=2, exits=[6]), r"exits contains 6.*\[0, 5\]"),
        (dict(n=2, exits=[-1]), "exits contains -1"),
        (dict(n=2, exits=[1.0]), "exits contains 1.0"),
        (dict(n=2, exits=[3, 1]), "strictly ascending"),
        (dict(n=2, exits=[2, 2]), "strictly ascending"),
        (dict(n=2, exits=[]), "exits=\\[\\]"),
        (dict(input_size=2), "input size 2x2.*smallest accepted square input is 3"),
        (dict(input_size=0), "input_size=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"c": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        AnytimeResNet(**kwargs)


def test_bad_imagenet_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"depth=42.*\[14, 18, 26, 34, 50, 101, 152\]"):
        AnytimeImageNetResNet(depth=42)
    with pytest.raises(ValueError, match="input size 16x16.*smallest accepted square input is 17"):
        AnytimeImageNetResNet(depth=14, input_size=16)
    m = AnytimeResNet(n=1, c=2)
    with pytest.raises(ValueError, match="input size 2x2"):
        m(torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"\[batch, 3, H, W\]"):
        m(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="k=3"):
        m.advance(torch.randn(1, 2, 32, 32), 3)


def test_count_units_matches_the_built_models():
    from adaptive_weights.models import count_units

    for n in (1, 3, 9):
        assert count_units("resnet", n=n, c=4) == AnytimeResNet(n=n, c=4).num_units == 3 * n
    assert count_units("imagenet-resnet", depth=50) == 16
    assert count_units("imagenet-resnet", depth=101) == 33
    with pytest.raises(ValueError, match="depth=42"):
        count_units("imagenet-resnet", depth=42)
    with pytest.raises(ValueError, match="did you mean resnet"):
        count_units("resnets", n=3)


# -- the AnytimeNet contract, for every registered model (as timm parametrises over list_models) ---
#: the smallest useful build of each registered model; a newly registered model needs an entry here
TINY_BUILDS = {
    "resnet": dict(n=1, c=4, period=1, num_classes=5, input_size=16),
    "imagenet-resnet": dict(depth=14, period=2, num_classes=5, input_size=32),
}


@pytest.fixture(params=list_models())
def tiny_model(request: pytest.FixtureRequest) -> AnytimeNet:
    name = request.param
    assert name in TINY_BUILDS, f"model {name!r} is registered: add its tiny build to TINY_BUILDS"
    torch.manual_seed(0)
    return create_model(name, **TINY_BUILDS[name])


def test_every_model_forward_advance_and_anytime_agree(tiny_model: AnytimeNet) -> None:
    m = tiny_model.eval()
    x = torch.randn(3, m.in_channels, 32, 32)
    out = m(x)
    assert out.shape == (m.num_exits, 3, m.num_classes) and torch.isfinite(out).all()
    assert len(m.exit_units) == m.num_exits and m.exit_units == sorted(set(m.exit_units))
    h = m.stem_forward(x)
    for k in range(m.num_exits):
        h, logits = m.advance(h, k)
        assert torch.allclose(logits, out[k], atol=1e-5), k
    anytime = list(m.anytime(x))
    macs = m.exit_macs(32)  # the MACs of this input size, which anytime() reports
    assert [(k, cost) for k, cost, _ in anytime] == list(enumerate(macs))
    assert len(macs) == m.num_exits and all(0 < a < b for a, b in zip(macs, macs[1:], strict=False))


def test_every_model_trains_every_parameter(tiny_model: AnytimeNet) -> None:
    """One weighted-sum backward reaches every parameter; the decay groups cover each exactly once."""
    m = tiny_model.train()
    weights = [1.0] * m.num_exits
    groups = m.parameter_groups(1e-4, weights)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters())
    logits = m(torch.randn(4, m.in_channels, 32, 32))
    y = torch.randint(0, m.num_classes, (4,))
    loss = sum(torch.nn.functional.cross_entropy(logits[k], y) for k in range(m.num_exits))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_every_model_counts_its_units_without_building(tiny_model: AnytimeNet) -> None:
    from adaptive_weights.models import count_units

    name = next(n for n in list_models() if isinstance(tiny_model, models.model_class(n)))
    assert count_units(name, **TINY_BUILDS[name]) == tiny_model.num_units
