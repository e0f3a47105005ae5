"""How every output counts cost and numbers exits, stated once (torch-free, so the report,
the EANN tables and the terminal tables state it without building a model).

The models attach :data:`MACS_CONVENTION` to every network (``AnytimeNet.macs_convention``, recorded
in each ``summary.json``); reports, EANN outputs and exit tables print the same text.
"""

from __future__ import annotations

__all__ = ["MACS_CONVENTION", "EXIT_NUMBERING"]

MACS_CONVENTION = (
    "MACs per input image: multiply-accumulates of Conv2d (Cin*Cout*k*k*Hout*Wout/groups) and Linear "
    "(in*out) layers; BN, ReLU, pooling and additions are not counted. Per exit: trunk up to that "
    "exit's unit plus every head evaluated so far in anytime use."
)

EXIT_NUMBERING = (
    "Exits and units are numbered from 0: exit k is the (k+1)-th head, and `u{U}` (or unit U) is the "
    "exit after residual unit U, as in summary.json's exit_units, the milestone unit idx_q and optimal@i."
)
