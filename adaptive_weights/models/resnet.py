"""The 32x32-style anytime ResNet (CIFAR-10/100, SVHN, digits; spec 4.1)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ._base import AnytimeNet, check_positive_int, resolve_exits
from ._registry import register_model
from ._units import UNIT_STYLES, basic_unit, conv

__all__ = ["AnytimeResNet"]


@register_model("resnet")
class AnytimeResNet(AnytimeNet):
    """Stem 3x3 conv (c channels, no BN/ReLU), then 3 stages of n basic units with c, 2c, 4c channels.

    The first unit of stages 2 and 3 has a stride-2 first conv and a 2x2/2 average-pool shortcut
    with zero-padded channels (old channels in the middle). Heads sit at every `period`-th unit
    counting back from the last (the last always has one); explicit `exits` override `period` and
    the trunk is built only up to the last exit's unit, so an OPT run (``exits=[i]``) computes
    nothing beyond its exit. L = 3n units; conv MACs of the full trunk at 32x32 are
    27,648c + c^2(55,296n - 9,216).
    """

    def __init__(
        self,
        n: int = 9,
        c: int = 16,
        num_classes: int = 10,
        period: int = 1,
        in_channels: int = 3,
        unit_style: str = "preact",
        exits: Sequence[int] | None = None,
        input_size: int | Sequence[int] = 32,
    ) -> None:
        check_positive_int("n", n)
        check_positive_int("c", c)
        check_positive_int("in_channels", in_channels)
        if unit_style not in UNIT_STYLES:
            raise ValueError(f"unit_style={unit_style!r} is not allowed: choose one of {list(UNIT_STYLES)}")
        num_units = self.count_units(n=n)
        exit_units = resolve_exits(num_units, period, exits)
        units, channels = [], []
        cin = c
        for i in range(exit_units[-1] + 1):
            stage, pos = divmod(i, n)
            cout = c * 2**stage
            stride = 2 if stage > 0 and pos == 0 else 1
            units.append(basic_unit(cin, cout, stride, style=unit_style, shortcut="pad"))
            channels.append(cout)
            cin = cout
        super().__init__(
            stem=nn.Sequential(conv(in_channels, c, 3)),
            units=units,
            unit_channels=channels,
            exit_units=exit_units,
            num_units=num_units,
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
        )
        self.n, self.c, self.period, self.unit_style = n, c, period, unit_style

    @staticmethod
    def count_units(n: int = 9, **_: object) -> int:
        """L = 3n residual units (three stages of n), known without building the model."""
        check_positive_int("n", n)
        return 3 * n
