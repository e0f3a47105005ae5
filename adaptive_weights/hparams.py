"""A run's TensorBoard HParams summary: what the HParams view lists for every run of a folder.

Every run writes one into its own ``tb/`` when it starts (a resumed run rewrites it), so
``tensorboard --logdir results/runs`` compares runs trained one by one just as a sweep's trials: a
sweep names the keys its grid varies, a run by itself names every key that changes what it
computes. The view sorts and filters a column as numbers only when every value in it is a number:
a key a run lacks (``strategy.gamma`` of ``aann``) or holds as None is left out of that run's
summary, never written as the string ``"None"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["HPARAMS_SUFFIX", "HPARAMS_METRICS", "hparam_values", "write_hparams"]

HPARAMS_SUFFIX = ".hparams"  # the event file of a run's HParams summary, apart from its scalars
HPARAMS_METRICS = ("val/err/mean", "val/err/final")  # scalars every run logs, shown as the view's columns


def hparam_values(flat: Mapping[str, Any], keys: Sequence[str] | None = None) -> dict[str, bool | int | float | str]:
    """The values of ``keys`` in the flat config ``flat`` as HParams takes them (numbers, booleans,
    text). ``keys`` None: every key except those that only change where or how fast a run executes.
    A key missing from ``flat`` or None there is left out; a list becomes text (``0.1, 0.01``)."""
    if keys is None:
        from .config import EXECUTION_KEYS

        keys = [k for k in flat if k not in EXECUTION_KEYS and k != "name"]
    out: dict[str, bool | int | float | str] = {}
    for key in keys:
        value = flat.get(key)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        elif not isinstance(value, (bool, int, float, str)):
            value = str(value)
        out[key] = value
    return out


def write_hparams(tb_dir: str | Path, flat: Mapping[str, Any], keys: Sequence[str] | None = None) -> None:
    """Write the HParams summary of :func:`hparam_values` into ``tb_dir`` with the metrics of
    :data:`HPARAMS_METRICS`. It replaces any summary the folder holds (a resumed run's own, or under
    PBT that of the trial whose checkpoint it continues): TensorBoard shows the first one it reads."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    tb_dir = Path(tb_dir)
    for old in tb_dir.glob(f"*{HPARAMS_SUFFIX}"):
        old.unlink()
    writer = SummaryWriter(str(tb_dir), filename_suffix=HPARAMS_SUFFIX)
    try:
        for summary in hparams(hparam_values(flat, keys), dict.fromkeys(HPARAMS_METRICS, math.nan)):
            writer.file_writer.add_summary(summary)
    finally:
        writer.close()
