"""The run's writer: one set of flat keys, two sinks (TensorBoard and ``metrics.jsonl``).

Keys look like ``train/loss/exit_03``, ``train/prob/exit_03``, ``val/err/exit_03``,
``time/step_ms``; TensorBoard's step is the epoch (1 = the end of the first), the ``step`` scalar
the global optimiser step. ``metrics.jsonl`` holds one row per epoch (strict JSON: a non-finite value is
``null``) and is rewritten atomically. The trainer logs an epoch *before* checkpointing it, so a run
killed at any moment leaves every checkpointed epoch's row; on resume the rows past the checkpoint
(epochs that will be replayed) are dropped, and TensorBoard purges their events.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, json_dumps
from .errors import RefusedError
from .plots import figure_to_array, plot_error_vs_macs, plot_probability_stack, save_figure
from .progress import Progress  # re-exported: its home was this module

__all__ = ["RunLogger", "read_metrics", "exit_key", "exit_charts_layout", "Progress"]

_EXIT_KEY = re.compile(r"^(.+)/exit_\d+$")


def exit_key(prefix: str, k: int) -> str:
    return f"{prefix}/exit_{k:02d}"


def exit_charts_layout(keys: Sequence[str]) -> dict[str, dict[str, list]]:
    """TensorBoard custom-scalars layout: one chart per per-exit quantity of ``keys`` (``train/prob``,
    ``val/err``, ...) holding every exit's curve, where the scalars dashboard gives each exit its own
    card among all of ``train/``. The sampling probabilities come first: they are what users watch."""
    families = sorted(dict.fromkeys(m.group(1) for key in keys if (m := _EXIT_KEY.match(key))),
                      key=lambda family: family != "train/prob")
    return {"per exit": {family: ["Multiline", [rf"^{re.escape(family)}/exit_\d+$"]] for family in families}}


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl``; a corrupt row or one that is not an object is refused, naming
    the file and line."""
    path = Path(path)
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise RefusedError(f"{path}:{i}: corrupt metrics row ({err})") from None
            if not isinstance(row, dict):
                raise RefusedError(f"{path}:{i}: metrics row {line.strip()[:60]!r} is not a JSON object")
            rows.append(row)
    return rows


class RunLogger:
    """Writes per-epoch metrics to ``metrics.jsonl`` and TensorBoard, plus the figures. ``name``
    (default: the directory's name) titles the figures: a PNG copied out of its run directory, or
    a sweep trial's trained in a scratch folder, still says whose it is."""

    def __init__(self, run_dir: str | Path, *, resume_epoch: int = 0, tensorboard: bool = True,
                 name: str | None = None):
        self.run_dir = Path(run_dir)
        self.name = name or self.run_dir.resolve().name
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.rows: list[dict[str, Any]] = []
        if resume_epoch > 0 and self.metrics_path.exists():
            self.rows = [r for r in read_metrics(self.metrics_path) if r.get("epoch", 0) <= resume_epoch]
        self._flush_rows()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=resume_epoch + 1)

    def _flush_rows(self) -> None:
        atomic_write_text(self.metrics_path, "".join(json_dumps(r) + "\n" for r in self.rows))

    def log_epoch(self, row: Mapping[str, Any], *, exit_macs: Sequence[float] | None = None,
                  eval_split: str | None = None, figures: bool = True) -> None:
        """Append one epoch's row; add scalars and (``figures``) the probability stack and the
        error/MACs curve (a pack of N runs draws them at its last epoch only: N figures per epoch
        would cost more than a GPU epoch of the whole pack)."""
        row = dict(row)
        self.rows.append(row)
        self._flush_rows()
        epoch = int(row["epoch"])
        if self.writer is not None:
            if len(self.rows) == 1:  # the run's first row; at its step, so a resume that replays it purges it
                from torch.utils.tensorboard.summary import custom_scalars

                self.writer.file_writer.add_summary(custom_scalars(exit_charts_layout(list(row))), epoch)
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, epoch)
        if figures and any(k.startswith("train/prob/") for k in row):
            fig = plot_probability_stack(self.rows, title=f"{self.name}: probability of each exit")  # drawn once: TensorBoard image and PNG file
            if self.writer is not None:
                self.writer.add_image("figures/probability_stack", figure_to_array(fig, close=False), epoch,
                                      dataformats="HWC")
            save_figure(fig, self.run_dir / "probability_stack.png")
        if figures and exit_macs is not None and eval_split and self.writer is not None:
            errs = [row.get(exit_key(f"{eval_split}/err", k)) for k in range(len(exit_macs))]
            if all(e is not None for e in errs):
                fig = plot_error_vs_macs({f"epoch {epoch}": (exit_macs, errs)},
                                         title=f"{self.name}: {eval_split} error versus MACs")
                self.writer.add_image("figures/error_vs_macs", figure_to_array(fig), epoch,
                                      dataformats="HWC")
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
