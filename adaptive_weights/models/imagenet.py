"""The ILSVRC anytime ResNet (spec 4.2): 7x7/2 stem, max-pool, four stages, heads every `period` units."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ._base import AnytimeNet, check_positive_int, resolve_exits
from ._registry import register_model
from ._units import basic_unit, bn, bottleneck_unit, conv

__all__ = ["IMAGENET_DEPTHS", "AnytimeImageNetResNet"]

# depth -> (unit kind, units per stage)
IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    14: ("bottleneck", (1, 1, 1, 1)),
    26: ("bottleneck", (2, 2, 2, 2)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
}

_WIDTH = 64  # spec: `-c 64` is asserted


@register_model("imagenet-resnet")
class AnytimeImageNetResNet(AnytimeNet):
    """Pre-activation ResNet for 224x224 images with anytime heads (spec 4.2).

    Stem: 7x7/2 conv (64) + BN-ReLU + 3x3/2 max-pool. Stage g (g = 0..3) has bottleneck width
    b = 64 * 2^g and 4b output channels (basic units: 64 * 2^g channels); stages after the first
    start with stride 2. The first unit of a stage gets a 1x1 conv + BN shortcut whenever the shape
    changes (always for bottlenecks; for basic units, stages 2-4). ResNet-50's trunk is 4.09 GMACs.
    """

    def __init__(
        self,
        depth: int = 50,
        num_classes: int = 1000,
        period: int = 2,
        in_channels: int = 3,
        exits: Sequence[int] | None = None,
        input_size: int | Sequence[int] = 224,
    ) -> None:
        num_units = self.count_units(depth=depth)
        check_positive_int("in_channels", in_channels)
        kind, stages = IMAGENET_DEPTHS[depth]
        exit_units = resolve_exits(num_units, period, exits)
        plan = [(g, pos) for g, count in enumerate(stages) for pos in range(count)]
        units, channels = [], []
        cin = _WIDTH
        for g, pos in plan[: exit_units[-1] + 1]:
            width = _WIDTH * 2**g
            stride = 2 if g > 0 and pos == 0 else 1
            if kind == "bottleneck":
                unit = bottleneck_unit(cin, width, stride)
                cout = 4 * width
            else:
                unit = basic_unit(cin, width, stride, style="preact", shortcut="conv")
                cout = width
            units.append(unit)
            channels.append(cout)
            cin = cout
        stem = nn.Sequential(
            conv(in_channels, _WIDTH, 7, stride=2), bn(_WIDTH), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )  # fmt: skip
        super().__init__(
            stem=stem,
            units=units,
            unit_channels=channels,
            exit_units=exit_units,
            num_units=num_units,
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
        )
        self.depth, self.period = depth, period

    @staticmethod
    def count_units(depth: int = 50, **_: object) -> int:
        """The number of residual units of ``depth`` (e.g. 16 for ResNet-50), without building the model."""
        if depth not in IMAGENET_DEPTHS or isinstance(depth, bool):
            raise ValueError(f"depth={depth!r} is not allowed: choose one of {sorted(IMAGENET_DEPTHS)}")
        return sum(IMAGENET_DEPTHS[depth][1])
