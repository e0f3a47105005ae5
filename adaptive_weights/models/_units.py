"""Residual units, shortcuts and the anytime head (spec 4.1, 4.2).

Every unit returns ``branch(x) + shortcut(x)`` with no ReLU after the addition: the trunk carries the
raw sum, and each head applies its own ReLU, so a head never changes what later units see.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._macs import Size, module_macs

__all__ = [
    "UNIT_STYLES",
    "ChannelPad",
    "Head",
    "Residual",
    "basic_unit",
    "bottleneck_unit",
    "bn",
    "conv",
    "relu_mean_pool",
]

UNIT_STYLES = ("preact", "2017")


def conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    """'Same'-padded convolution without bias (BN follows every conv)."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


def bn(channels: int) -> nn.BatchNorm2d:
    """BN with the spec's constants (TF decay 0.9 = PyTorch momentum 0.1, eps 1e-5)."""
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class ChannelPad(nn.Module):
    """Zero-pad the channel dimension, old channels in the middle (the 32x32 nets' transition)."""

    def __init__(self, before: int, after: int) -> None:
        super().__init__()
        self.before, self.after = before, after

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))

    def macs(self, size: Size) -> tuple[int, Size]:
        return 0, size

    def extra_repr(self) -> str:
        return f"before={self.before}, after={self.after}"


class Residual(nn.Module):
    """``branch(x) + shortcut(x)``; the MAC walk checks both paths agree on the output size."""

    def __init__(self, branch: nn.Sequential, shortcut: nn.Module) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.branch(x) + self.shortcut(x)

    def macs(self, size: Size) -> tuple[int, Size]:
        m_branch, out = module_macs(self.branch, size)
        m_short, out_short = module_macs(self.shortcut, size)
        if out != out_short:  # cannot happen with the layers built here; guards future edits
            raise RuntimeError(f"branch output {out} and shortcut output {out_short} differ for input {size}")
        return m_branch + m_short, out


def _projection(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(conv(cin, cout, 1, stride), bn(cout))


def basic_unit(cin: int, cout: int, stride: int, style: str = "preact", shortcut: str = "pad") -> Residual:
    """Basic unit: two 3x3 convs.

    style "preact" (G3): BN-ReLU-conv(stride)-BN-ReLU-conv-BN; "2017" (G1/G2): BN-conv(stride)-BN-
    ReLU-conv-BN, i.e. no ReLU before the first conv. When the shape changes, the shortcut is either
    "pad" (2x2/2 average pool + zero channels, spec 4.1) or "conv" (1x1 conv + BN, spec 4.2).
    """
    if style not in UNIT_STYLES:
        raise ValueError(f"unit_style={style!r} is not allowed: choose one of {list(UNIT_STYLES)}")
    pre = [bn(cin), nn.ReLU(inplace=True)] if style == "preact" else [bn(cin)]
    branch = nn.Sequential(
        *pre, conv(cin, cout, 3, stride), bn(cout), nn.ReLU(inplace=True), conv(cout, cout, 3), bn(cout)
    )
    if stride == 1 and cin == cout:
        short: nn.Module = nn.Identity()
    elif shortcut == "conv":
        short = _projection(cin, cout, stride)
    elif shortcut == "pad":
        if cout < cin:
            raise ValueError(f"a padding shortcut cannot shrink channels ({cin} -> {cout})")
        pool = [nn.AvgPool2d(2, stride=2, ceil_mode=True)] if stride == 2 else []
        if stride not in (1, 2):
            raise ValueError(f"stride={stride} is not allowed for a padding shortcut: use 1 or 2")
        extra = cout - cin
        short = nn.Sequential(*pool, ChannelPad(extra // 2, extra - extra // 2))
    else:
        raise ValueError(f"shortcut={shortcut!r} is not allowed: choose 'pad' or 'conv'")
    return Residual(branch, short)


def bottleneck_unit(cin: int, width: int, stride: int) -> Residual:
    """Pre-activation bottleneck: BN-ReLU-1x1(b)-BN-ReLU-3x3(b, stride)-BN-ReLU-1x1(4b)-BN.

    The shortcut is a 1x1 conv + BN whenever the shape changes (the first unit of every stage).
    """
    cout = 4 * width
    branch = nn.Sequential(
        bn(cin), nn.ReLU(inplace=True), conv(cin, width, 1),
        bn(width), nn.ReLU(inplace=True), conv(width, width, 3, stride),
        bn(width), nn.ReLU(inplace=True), conv(width, cout, 1), bn(cout),
    )  # fmt: skip
    short = nn.Identity() if stride == 1 and cin == cout else _projection(cin, cout, stride)
    return Residual(branch, short)


class _ReluMeanPool(torch.autograd.Function):
    """Global average pool of ReLU(h), saving h (which the next unit keeps anyway) for backward.

    Why not ``relu(h).mean(...)``: autograd would keep the ReLU output, one extra full-size map per
    head, and mean's backward materialises a scaled full-size gradient. Here the ReLU output is a
    temporary and the gradient is one ``threshold_backward`` on a broadcast view.
    """

    @staticmethod
    def forward(ctx, h: Tensor) -> Tensor:
        ctx.save_for_backward(h)
        return torch.relu(h).sum(dim=(2, 3)) * (1.0 / (h.shape[2] * h.shape[3]))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (h,) = ctx.saved_tensors
        scaled = (grad * (1.0 / (h.shape[2] * h.shape[3])))[:, :, None, None].expand_as(h)
        return torch.ops.aten.threshold_backward(scaled, h, 0)


def relu_mean_pool(h: Tensor) -> Tensor:
    """``relu(h).mean(dim=(2, 3))`` with a lighter backward (see `_ReluMeanPool`)."""
    return _ReluMeanPool.apply(h)


class Head(nn.Module):
    """Anytime head: ReLU -> global average pool -> Linear (with bias), no BN (spec 4.1)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, h: Tensor) -> Tensor:
        return self.fc(relu_mean_pool(h))

    def linear_macs(self) -> int:
        """MACs of the Linear layer (pooling and ReLU are free by convention)."""
        return self.fc.in_features * self.fc.out_features
