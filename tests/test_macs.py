"""MAC counts: the spec's closed form and table (4.3), ResNet-50, and FlopCounterMode agreement."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from adaptive_weights.models import AnytimeImageNetResNet, AnytimeResNet


def closed_form(n: int, c: int) -> int:
    return 27_648 * c + c * c * (55_296 * n - 9_216)


@pytest.mark.parametrize("n,c", [(1, 16), (3, 16), (9, 16), (25, 16), (9, 32), (13, 64), (2, 5), (1, 1)])
def test_trunk_macs_match_closed_form(n, c):
    assert AnytimeResNet(n=n, c=c).trunk_macs()[-1] == closed_form(n, c)


def test_resnet56_is_125_5_million():
    assert AnytimeResNet(n=9, c=16).trunk_macs()[-1] == 125_485_056


def test_per_unit_costs_are_the_spec_constants():
    c = 8
    per_exit = AnytimeResNet(n=3, c=c).trunk_macs()  # period 1: one exit per unit
    steps = [b - a for a, b in zip([27_648 * c] + per_exit[:-1], per_exit, strict=True)]
    ordinary, transition = 18_432 * c * c, 13_824 * c * c
    assert steps == [ordinary] * 3 + [transition] + [ordinary] * 2 + [transition] + [ordinary] * 2


# spec 4.3 table: (n, c, milestone exits, cost fractions, full-net MACs in millions)
SPEC_TABLE = [
    (1, 16, [0, 1, 1, 2], [0.422, 0.711, 0.711, 1.0], 12.2),
    (3, 16, [1, 4, 6, 8], [0.244, 0.564, 0.767, 1.0], 40.6),
    (5, 16, [3, 7, 10, 14], [0.281, 0.537, 0.726, 1.0], 68.9),
    (9, 16, [6, 13, 19, 26], [0.267, 0.521, 0.737, 1.0], 125.5),
    (25, 16, [18, 37, 55, 74], [0.256, 0.507, 0.745, 1.0], 352.0),
    (9, 32, [6, 13, 19, 26], [0.265, 0.52, 0.736, 1.0], 501.1),
    (13, 64, [9, 19, 28, 38], [0.26, 0.513, 0.74, 1.0], 2908.4),
    (9, 128, [6, 13, 19, 26], [0.264, 0.519, 0.736, 1.0], 8006.3),
]


@pytest.mark.parametrize("n,c,idx,fractions,millions", SPEC_TABLE)
def test_cost_fractions_match_spec_table(n, c, idx, fractions, millions):
    trunk = AnytimeResNet(n=n, c=c).trunk_macs()
    assert [round(trunk[i] / trunk[-1], 3) for i in idx] == fractions
    assert round(trunk[-1] / 1e6, 1) == millions


def test_exit_macs_add_heads_cumulatively():
    m = AnytimeResNet(n=2, c=4, num_classes=7, period=2)  # exits at units 1, 3, 5: 4c, 8c, 16c
    head = [4 * 7, 8 * 7, 16 * 7]
    trunk = m.trunk_macs()
    assert m.exit_macs() == [trunk[0] + head[0], trunk[1] + head[0] + head[1], trunk[2] + sum(head)]


def test_macs_scale_with_input_size():
    m = AnytimeResNet(n=1, c=4, in_channels=1, input_size=8)
    # stem 1*4*9*64; unit0 2*(4*4*9*64); unit1 4*8*9*16 + 8*8*9*16; unit2 8*16*9*4 + 16*16*9*4
    expected = [2_304 + 18_432, 2_304 + 18_432 + 13_824, 2_304 + 18_432 + 13_824 + 13_824]
    assert m.trunk_macs() == expected
    assert m.trunk_macs(32) == AnytimeResNet(n=1, c=4, in_channels=1).trunk_macs()
    assert m.trunk_macs((8, 8)) == expected


def test_resnet50_trunk_is_4_09_gmacs_and_head_fractions():
    m = AnytimeImageNetResNet(depth=50)
    trunk = m.trunk_macs()
    assert m.exit_units == [1, 3, 5, 7, 9, 11, 13, 15]
    assert trunk[-1] == 4_087_136_256
    assert round(trunk[-1] / 1e9, 2) == 4.09
    # spec 4.3 prints 0.54 for the 4th head; the exact value is 0.5349, so compare to +-0.006
    spec = [0.14, 0.28, 0.39, 0.54, 0.64, 0.75, 0.89, 1.0]
    assert [v / trunk[-1] for v in trunk] == pytest.approx(spec, abs=6e-3)
    assert m.exit_macs()[-1] == trunk[-1] + sum(
        f * 1000 for f in [256, 512, 512, 1024, 1024, 1024, 2048, 2048]
    )


def _counted_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


@pytest.mark.parametrize(
    "kwargs,size",
    [
        (dict(n=2, c=4, exits=[0]), 32),
        (dict(n=2, c=4, exits=[3]), 32),
        (dict(n=2, c=4, exits=[5]), 32),
        (dict(n=1, c=3, exits=[2], in_channels=1, unit_style="2017", num_classes=5), 8),
        (dict(n=1, c=4, exits=[1]), 11),  # odd sizes: ceil-mode pooling shortcut
    ],
)
def test_exit_macs_match_flop_counter_on_cut_models(kwargs, size):
    torch.manual_seed(0)
    m = AnytimeResNet(**kwargs, input_size=size)
    x = torch.randn(1, m.in_channels, size, size)
    assert _counted_macs(m, x) == m.exit_macs()[-1]


def test_exit_macs_match_flop_counter_for_budgeted_anytime():
    torch.manual_seed(0)
    m = AnytimeResNet(n=2, c=4, period=1).eval()
    x = torch.randn(1, 3, 32, 32)
    costs = m.exit_macs()
    for k in (0, 2, 5):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = list(m.anytime(x, budget_macs=costs[k]))
        assert [o[0] for o in out] == list(range(k + 1))
        assert counter.get_total_flops() // 2 == costs[k] == out[-1][1]


def test_imagenet_exit_macs_match_flop_counter():
    torch.manual_seed(0)
    for depth, exits in ((14, [2]), (18, [2])):
        m = AnytimeImageNetResNet(depth=depth, exits=exits, num_classes=7, input_size=64)
        assert _counted_macs(m, torch.randn(1, 3, 64, 64)) == m.exit_macs()[-1]


def test_macs_convention_is_stated():
    assert "BN, ReLU, pooling and additions are not counted" in AnytimeResNet.macs_convention
