"""The members' checkpoints of a pack, written so that a kill never leaves them at different positions.

Each member keeps an ordinary ``checkpoints/last.pt`` (a single run's checkpoint: ``evaluate`` and
a ``--resume`` of the member alone read it unchanged). A pack writes them in two phases: first every
member's new checkpoint as ``checkpoints/pack-next.pt`` (each atomically), then renames them all over
``last.pt``. The moment the last ``pack-next.pt`` is in place is the commit: before it, a resume
deletes the ``pack-next.pt`` files (every ``last.pt`` is still the previous, common position); after
it, a resume finishes the renames. So the members always resume from one common position.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import save_checkpoint

__all__ = ["NEXT_NAME", "commit_checkpoints", "settle_checkpoints"]

NEXT_NAME = "pack-next.pt"


def commit_checkpoints(paths: Sequence[Path], states: Sequence[dict[str, Any]]) -> None:
    """Write ``states[i]`` to ``paths[i]`` (each a member's ``last.pt``) all-or-nothing, as above."""
    nexts = [path.with_name(NEXT_NAME) for path in paths]
    for next_path, state in zip(nexts, states, strict=True):
        save_checkpoint(next_path, state)
    for next_path, path in zip(nexts, paths, strict=True):
        os.replace(next_path, path)


def _position(path: Path) -> tuple[int, int]:
    """Where a checkpoint stands (read with ``weights_only``; the resume validates it in full)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return int(state["epoch"]), int(state["batch"])


def settle_checkpoints(paths: Sequence[Path]) -> str | None:
    """Finish or undo a commit that a kill interrupted (see the module's docstring); returns what
    was done (``"finished"``, ``"undone"``) or None when there was nothing to do."""
    nexts = [path.with_name(NEXT_NAME) for path in paths]
    pending = [n for n in nexts if n.exists()]
    if not pending:
        return None
    target = _position(pending[0])
    committed = all(n.exists() or (p.exists() and _position(p) == target) for n, p in zip(nexts, paths, strict=True))
    for next_path, path in zip(nexts, paths, strict=True):
        if next_path.exists():
            if committed:
                os.replace(next_path, path)
            else:
                next_path.unlink()
    return "finished" if committed else "undone"
