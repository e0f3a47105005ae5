"""Which runs may share one packed network: the check made before any work.

Members may differ only in the keys with the ``member`` role (``config.MEMBER_KEYS``: the run name,
``train.seed``, ``scheme.*``, ``strategy.*`` and ``objective.*``); every other key shapes the shared
graph, the shared data or the shared optimiser step, so a difference there is refused naming the
key and the two values.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import MEMBER_KEYS, OPEN_SECTIONS, RunConfig
from ..errors import RefusedError

__all__ = ["PackRefusedError", "check_pack", "member_key"]


class PackRefusedError(RefusedError):
    """The configs cannot be trained as one pack."""


def member_key(key: str) -> bool:
    """True for a key that may differ between the members of a pack."""
    section = key.partition(".")[0]
    return key in MEMBER_KEYS or (section in OPEN_SECTIONS and f"{section}." in MEMBER_KEYS)


def check_pack(configs: Sequence[RunConfig]) -> list[RunConfig]:
    """The resolved configs of a pack, or :class:`PackRefusedError` naming what cannot be packed."""
    if not configs:
        raise PackRefusedError("a pack needs at least one member config")
    resolved = [cfg.resolve() for cfg in configs]
    first = resolved[0].to_flat()
    for i, cfg in enumerate(resolved[1:], 1):
        flat = cfg.to_flat()
        for key in dict.fromkeys([*first, *flat]):
            if not member_key(key) and first.get(key) != flat.get(key):
                raise PackRefusedError(
                    f"cannot pack {resolved[0].name!r} (member 0) with {cfg.name!r} (member {i}): {key} differs "
                    f"({first.get(key)!r} vs {flat.get(key)!r}); the members of a pack share everything but "
                    f"{', '.join(k + '*' if k.endswith('.') else k for k in MEMBER_KEYS)}")
    names = [cfg.name for cfg in resolved]
    for cfg in resolved:
        if cfg.gradient.name != "sum":
            raise PackRefusedError(
                f"gradient.name: {cfg.gradient.name!r} cannot run in a pack (run {cfg.name!r}): the members' "
                "losses are summed into one backward pass, which is exactly the 'sum' rule per member; a rule "
                "that combines each exit's gradient separately would need N separate backward passes")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise PackRefusedError(f"two members of the pack are named {dup!r}: every member needs its own run name")
    return resolved
