"""Analytic multiply-accumulate counts, computed by walking a module tree with the input size.

Why analytic: budgeted inference needs the cost of every exit *before* running it, for any input
size, without a forward pass. Each layer's MACs follow from its shape and the spatial size that
reaches it, so a walk over the modules in execution order is exact and costs microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

__all__ = ["Size", "as_size", "conv_macs", "module_macs"]

Size = tuple[int, int]

# Modules that neither change the spatial size nor count MACs.
_FREE = (nn.BatchNorm2d, nn.ReLU, nn.Identity, nn.Flatten)


def as_size(size: int | Sequence[int], name: str = "input_size") -> Size:
    """Normalise an int or (H, W) pair to a (H, W) tuple of positive ints."""
    if isinstance(size, int) and not isinstance(size, bool):
        pair: tuple = (size, size)
    elif isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2:
        pair = tuple(size)
    else:
        raise ValueError(f"{name}={size!r} is not allowed: give an int or an (H, W) pair of ints")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{name}={size!r} is not allowed: sizes must be positive ints")
    return (int(pair[0]), int(pair[1]))


def _pair(v: int | Sequence[int]) -> Size:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _out_len(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool, layer: str) -> int:
    """PyTorch's output-length rule for convolution and pooling (ceil_mode as in pooling)."""
    if s > 1 and n < 2:
        raise ValueError(
            f"input too small to down-sample: {layer} receives {n} pixel(s) on a side, needs >= 2"
        )
    span = n + 2 * p - d * (k - 1) - 1
    if span < 0:
        raise ValueError(
            f"input too small: {layer} receives {n} pixel(s) on a side, kernel needs {d * (k - 1) + 1 - 2 * p}"
        )
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:  # the last window must start inside the input
        out -= 1
    return out


def conv_macs(conv: nn.Conv2d, size: Size) -> tuple[int, Size]:
    """MACs of one convolution on an input of spatial `size`, and its output size."""
    if isinstance(conv.padding, str):
        raise ValueError(f"string padding {conv.padding!r} is not supported by the MAC counter")
    kh, kw = _pair(conv.kernel_size)
    sh, sw = _pair(conv.stride)
    ph, pw = _pair(conv.padding)
    dh, dw = _pair(conv.dilation)
    name = f"Conv2d({conv.in_channels}, {conv.out_channels}, k={kh}x{kw}, stride={sh})"
    out = (_out_len(size[0], kh, sh, ph, dh, False, name), _out_len(size[1], kw, sw, pw, dw, False, name))
    macs = conv.in_channels * conv.out_channels * kh * kw * out[0] * out[1] // conv.groups
    return macs, out


def _pool_size(pool: nn.MaxPool2d | nn.AvgPool2d, size: Size) -> Size:
    kh, kw = _pair(pool.kernel_size)
    sh, sw = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
    ph, pw = _pair(pool.padding)
    dh, dw = _pair(getattr(pool, "dilation", 1))
    name = f"{type(pool).__name__}(k={kh}x{kw}, stride={sh})"
    return (
        _out_len(size[0], kh, sh, ph, dh, pool.ceil_mode, name),
        _out_len(size[1], kw, sw, pw, dw, pool.ceil_mode, name),
    )


def module_macs(module: nn.Module, size: Size) -> tuple[int, Size]:
    """MACs of `module` applied to a feature map of spatial `size`, and the output size.

    Handles convolutions, pooling, `nn.Sequential` (in order), shape-preserving layers, and any
    module with its own ``macs(size) -> (macs, size)`` method (residual units use this to walk
    their branch and shortcut). Anything else is an error rather than a silent zero.
    """
    if isinstance(module, nn.Conv2d):
        return conv_macs(module, size)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return 0, _pool_size(module, size)
    if isinstance(module, nn.Sequential):
        total = 0
        for child in module:
            macs, size = module_macs(child, size)
            total += macs
        return total, size
    if hasattr(module, "macs"):
        return module.macs(size)
    if isinstance(module, _FREE):
        return 0, size
    raise TypeError(f"cannot count MACs of {type(module).__name__}; give it a macs(size) method")
