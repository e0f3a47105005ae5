"""Packed runs: many runs of one architecture trained as one grouped network on one device.

A c=16 anytime ResNet is far too narrow to fill a GPU; N of them side by side in one grouped
network are not. Each member stays an ordinary run (its own run directory, a plain single-network
checkpoint); the pack is execution information only::

    from adaptive_weights.packing import train_packed
    summaries = train_packed([cfg_a, cfg_b, cfg_c], out_dirs=["runs/a", "runs/b", "runs/c"])

Members may differ in the run name, ``train.seed``, ``scheme.*``, ``strategy.*`` and ``objective.*``
(``config.MEMBER_KEYS``); anything else is refused before any work.
"""

from ._members import PackRefusedError, check_pack, member_key
from ._model import PackedAnytimeNet, StateLayout, pack_network
from ._train import build_pack, pack_id, train_packed

__all__ = ["build_pack", "PackRefusedError", "PackedAnytimeNet", "StateLayout", "check_pack", "member_key", "pack_id",
           "pack_network", "train_packed"]
