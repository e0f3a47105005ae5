"""N anytime ResNets of one architecture as one grouped network (after Packed-Ensembles).

Why: a c=16 ResNet is far too narrow to fill a GPU; N of them side by side are not. Every conv
becomes a grouped conv (``groups = N * groups``), every BN a BN over ``N * C`` channels (each
channel keeps its own statistics, so each member keeps its own), every head one batched matmul.
Member m's channels are the m-th contiguous block of every activation: the input is
``[B, N * C_in, H, W]`` with member m's images in channels ``m * C_in .. (m + 1) * C_in - 1``.

A member's slice of every packed tensor is exactly that member's tensor in a single network
(``packed.reshape(N, *single_shape)[m]``), so packing is a pure re-layout of N state dicts and
:class:`StateLayout` maps between the two both ways. Members may have different exits (an OPT
member has one exit and a shorter trunk): the packed network is built to the deepest member with
a head at every exit any member has; a member's tensors that it lacks (units past its last exit,
heads at exits it has no head at) are zero there, receive no gradient (nothing of the member's
loss reads them) and are never unpacked.

Only layers known to act per channel or per group are packed; any other layer is refused, so a
new layer type cannot silently mix one member's channels into another's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import AnytimeNet
from ..models._units import ChannelPad, Head, Residual, relu_mean_pool

__all__ = ["PackedAnytimeNet", "PackedChannelPad", "PackedHead", "StateLayout", "pack_network"]

# layers that act on each channel alone (or hold sub-layers that are packed one by one)
_PER_CHANNEL = (nn.ReLU, nn.Identity, nn.AvgPool2d, nn.MaxPool2d, nn.Sequential, nn.ModuleList, Residual)


class PackedChannelPad(nn.Module):
    """:class:`ChannelPad` of every member: pads each member's block of channels on its own (a plain
    pad of the packed channels would shift member m's channels into member m+1's block)."""

    def __init__(self, members: int, before: int, after: int) -> None:
        super().__init__()
        self.members, self.before, self.after = members, before, after

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        per_member = x.reshape(b, self.members, c // self.members, h, w)
        padded = F.pad(per_member, (0, 0, 0, 0, self.before, self.after))
        return padded.reshape(b, -1, h, w)

    def extra_repr(self) -> str:
        return f"members={self.members}, before={self.before}, after={self.after}"


class PackedLinear(nn.Module):
    """N Linear layers as one batched matmul: ``[B, N, in] -> [B, N, out]``; weight ``[N, out, in]``."""

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(members, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(members, out_features))

    def forward(self, x: Tensor) -> Tensor:
        # [N, B, in] @ [N, in, out] + [N, 1, out] -> [N, B, out]
        out = torch.baddbmm(self.bias.unsqueeze(1), x.transpose(0, 1), self.weight.transpose(1, 2))
        return out.transpose(0, 1)


class PackedHead(nn.Module):
    """:class:`Head` of every member: ReLU -> global average pool -> each member's own Linear."""

    def __init__(self, members: int, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.members = members
        self.fc = PackedLinear(members, in_features, num_classes)

    def forward(self, h: Tensor) -> Tensor:
        pooled = relu_mean_pool(h)  # [B, N * C]
        return self.fc(pooled.reshape(pooled.shape[0], self.members, -1))


def _packed_layer(layer: nn.Module, members: int) -> nn.Module | None:
    """The packed replacement of one leaf layer, None for a layer that is already per channel."""
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(members * layer.in_channels, members * layer.out_channels, layer.kernel_size,
                         stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                         groups=members * layer.groups, bias=layer.bias is not None,
                         padding_mode=layer.padding_mode)
    if isinstance(layer, nn.BatchNorm2d):
        return nn.BatchNorm2d(members * layer.num_features, eps=layer.eps, momentum=layer.momentum,
                              affine=layer.affine, track_running_stats=layer.track_running_stats)
    if isinstance(layer, ChannelPad):
        return PackedChannelPad(members, layer.before, layer.after)
    if isinstance(layer, Head):
        return PackedHead(members, layer.fc.in_features, layer.fc.out_features)
    if isinstance(layer, _PER_CHANNEL):
        return None
    raise TypeError(f"cannot pack a {type(layer).__name__} layer: packing knows convolutions, BatchNorm2d, "
                    "the anytime head, channel padding and per-channel layers (ReLU, pooling, identity); "
                    "a layer that mixes channels must be taught to act per member first")


def _pack_modules(module: nn.Module, members: int) -> None:
    """Replace every layer under ``module`` by its packed form, in place."""
    for name, child in list(module.named_children()):
        replacement = _packed_layer(child, members)
        if replacement is None:
            _pack_modules(child, members)
        else:
            setattr(module, name, replacement)


class PackedAnytimeNet(nn.Module):
    """N anytime nets of one architecture in one grouped network.

    ``forward(x [B, N * C_in, H, W])`` returns every head's logits for every member,
    ``[S, B, N, classes]``, S being the packed network's heads (``exit_units``: every unit at which
    some member has an exit). Built by :func:`pack_network`.
    """

    def __init__(self, template: AnytimeNet, members: int) -> None:
        super().__init__()
        body = copy.deepcopy(template)
        _pack_modules(body, members)
        self.stem, self.units, self.heads = body.stem, body.units, body.heads
        self.members = members
        self.in_channels = members * template.in_channels
        self.exit_units = list(template.exit_units)
        self._segments = list(template._segments)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"input of shape {tuple(x.shape)} is not allowed: expected [batch, "
                             f"{self.in_channels}, H, W] (the {self.members} members' images side by side)")
        h = self.stem(x)
        logits = []
        for (first, stop), head in zip(self._segments, self.heads, strict=True):
            for i in range(first, stop):
                h = self.units[i](h)
            logits.append(head(h))
        return torch.stack(logits)


class StateLayout:
    """Where each member's tensors sit in the packed network, both ways.

    ``key_map[m]`` maps a packed state key to member m's key (absent: member m has no such tensor);
    ``slots[m]`` lists the packed heads that are member m's exits, in order.
    """

    def __init__(self, packed: PackedAnytimeNet, members: Sequence[AnytimeNet]) -> None:
        self.members = len(members)
        packed_keys = set(packed.state_dict())
        self.slots: list[list[int]] = []
        self.key_map: list[dict[str, str]] = []
        self.shapes: list[dict[str, torch.Size]] = []
        for net in members:
            slots = [packed.exit_units.index(u) for u in net.exit_units]
            head_of = {f"heads.{j}.": f"heads.{s}." for j, s in enumerate(slots)}
            mapping = {}
            for key in net.state_dict():
                prefix = next((p for p in head_of if key.startswith(p)), None)
                packed_key = head_of[prefix] + key[len(prefix):] if prefix else key
                if packed_key not in packed_keys:
                    raise ValueError(f"member tensor {key!r} has no place in the packed network")
                mapping[packed_key] = key
            self.slots.append(slots)
            self.key_map.append(mapping)
            self.shapes.append({key: t.shape for key, t in net.state_dict().items()})

    def pack(self, packed: nn.Module, states: Sequence[dict[str, Tensor]]) -> None:
        """Copy every member's state (a ``state_dict`` of its single network) into ``packed``; a
        tensor a member lacks is zero in its block."""
        for key, target in packed.state_dict().items():
            self.pack_tensor(target, key, [states[m].get(self.key_map[m].get(key, "")) for m in range(self.members)])

    def pack_tensor(self, target: Tensor, key: str, values: Sequence[Tensor | None]) -> None:
        """Fill the packed tensor ``target`` (packed state key ``key``, or a tensor shaped like it,
        e.g. its momentum buffer) with member m's ``values[m]``; None or a tensor member m lacks is zero."""
        present = [v for m, v in enumerate(values) if v is not None and key in self.key_map[m]]
        with torch.no_grad():
            if target.dim() == 0:  # BN's num_batches_tracked: one counter, the same for all members
                target.copy_(max(present) if present else torch.zeros_like(target))
                return
            blocks = torch.zeros((self.members, target.numel() // self.members), dtype=target.dtype,
                                 device=target.device)
            for m, value in enumerate(values):
                if value is not None and key in self.key_map[m]:
                    blocks[m] = value.reshape(-1)
            target.copy_(blocks.reshape(target.shape))

    def zero_member(self, tensors: Sequence[Tensor], m: int) -> None:
        """Set member m's block of every packed tensor to zero (a member that left the pack)."""
        with torch.no_grad():
            for t in tensors:
                if t.dim() > 0:
                    t.copy_(_zero_block(t, self.members, m))

    def unpack(self, packed_state: dict[str, Tensor], m: int) -> dict[str, Tensor]:
        """Member m's state as its single network's ``state_dict`` (fresh tensors)."""
        return {key: self.member_slice(packed_state[packed_key], m).reshape(self.shapes[m][key])
                for packed_key, key in self.key_map[m].items()}

    def member_slice(self, tensor: Tensor, m: int) -> Tensor:
        """Member m's block of one packed tensor (a copy, in the single network's layout)."""
        if tensor.dim() == 0:
            return tensor.detach().clone()
        return tensor.detach().contiguous().reshape(self.members, -1)[m].clone()

    def finite_members(self, tensors: Sequence[Tensor]) -> Tensor:
        """``[N]`` bool: every value of member m's blocks of ``tensors`` is finite (on the device)."""
        ok = torch.ones(self.members, dtype=torch.bool, device=tensors[0].device)
        for t in tensors:
            if t.is_floating_point() and t.dim() > 0:
                ok &= torch.isfinite(t.detach().reshape(self.members, -1)).all(dim=1)
        return ok


def _zero_block(t: Tensor, members: int, m: int) -> Tensor:
    blocks = t.detach().contiguous().reshape(members, -1).clone()
    blocks[m] = 0
    return blocks.reshape(t.shape)


def pack_network(template: AnytimeNet, members: Sequence[AnytimeNet]) -> tuple[PackedAnytimeNet, StateLayout]:
    """The packed network of ``members`` (single nets of one architecture) and its layout, holding
    exactly the members' current states. ``template`` is the single net with the deepest trunk and a
    head at every member's exit (its own weights are not used)."""
    packed = PackedAnytimeNet(template, len(members))
    device = next(members[0].parameters()).device
    packed.to(device)
    layout = StateLayout(packed, members)
    with torch.no_grad():
        layout.pack(packed, [net.state_dict() for net in members])
    return packed, layout
