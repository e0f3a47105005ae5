"""Figures drawn from run-directory data only (``metrics.jsonl`` rows, ``summary.json``).

Training never depends on plotting: every function here takes plain lists/dicts, uses the
non-interactive Agg backend and returns a matplotlib Figure (or writes a PNG atomically).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["probability_series", "plot_probability_stack", "plot_error_vs_macs", "save_figure",
           "figure_to_array"]

_PROB_KEY = re.compile(r"^train/prob/exit_(\d+)$")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def probability_series(rows: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[list[float]]]:
    """Epochs and, per exit, the sampling probability logged at the end of each epoch."""
    epochs: list[float] = []
    series: dict[int, list[float]] = {}
    for row in rows:
        probs = {int(m.group(1)): float(v) for k, v in row.items() if (m := _PROB_KEY.match(k))}
        if not probs:
            continue
        epochs.append(float(row.get("epoch", len(epochs) + 1)))
        for k in range(max(probs) + 1):
            series.setdefault(k, []).append(probs.get(k, 0.0))
    return epochs, [series[k] for k in sorted(series)]


def plot_probability_stack(rows: Sequence[Mapping[str, Any]], title: str = ""):
    """Stacked areas of the sampling distribution over exits versus training epochs (the paper's
    appendix figure). Exit 0 is the bottom band; exits are coloured from early (light) to final
    (dark). The key lists the exits top to bottom as the bands lie: a legend up to 12 exits, a
    colour bar beyond (a 27-exit ResNet)."""
    plt = _pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.ticker import MaxNLocator

    epochs, series = probability_series(rows)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    if not series:
        ax.text(0.5, 0.5, "no probabilities logged", ha="center", va="center")
    else:
        cmap = plt.get_cmap("viridis")
        k = len(series)
        colors = [cmap(0.95 - 0.85 * i / max(1, k - 1)) for i in range(k)]  # viridis: high = light
        if len(epochs) == 1:  # a single epoch still shows as a band
            epochs = [epochs[0] - 0.5, epochs[0] + 0.5]
            series = [s * 2 for s in series]
        ax.stackplot(epochs, series, colors=colors, labels=[f"exit {i}" for i in range(k)])
        ax.set_xlim(epochs[0], epochs[-1])
        ax.set_ylim(0, 1)
        if k <= 12:
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles[::-1], labels[::-1], loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
                      frameon=False, title="exits (from 0)", title_fontsize=7)
        else:
            norm = BoundaryNorm([i - 0.5 for i in range(k + 1)], k)
            bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=ListedColormap(colors)), ax=ax, pad=0.02)
            bar.set_label("exit")
            bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # rows are logged at whole epochs
    ax.set_xlabel("epoch")
    ax.set_ylabel("sampling probability")
    ax.set_title(title or "probability of each exit")
    fig.tight_layout()
    return fig


def plot_error_vs_macs(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
                       title: str = "", step: Sequence[str] = ()):
    """Error (%) versus MACs for several labelled curves; labels in ``step`` draw step curves
    (EANN, OPT+), the others markers joined by lines (one point per exit)."""
    plt = _pyplot()
    # beyond the default cycle's 10 colours, curves would share colours: take tab20's 20, alternate
    # the line style, and put the legend beside the axes where it hides no curve
    many = len(curves) > 10
    fig, ax = plt.subplots(figsize=(9.6, 4.8) if many else (6.4, 4.0), dpi=100)
    colours = plt.get_cmap("tab20").colors if many else [None] * len(curves)
    for i, (label, (macs, errors)) in enumerate(curves.items()):
        x = [m / 1e6 for m in macs]
        y = [100.0 * e for e in errors]
        style = {"color": colours[i % len(colours)], "linestyle": "-" if i % 2 == 0 or not many else "--"}
        if label in step:
            ax.step(x, y, where="post", label=label, **style)
        else:
            ax.plot(x, y, marker="o", markersize=3, label=label, **style)
    ax.set_xlabel("MACs (millions; conv + linear layers)")
    ax.set_ylabel("error (%)")
    ax.set_title(title or "anytime error versus cost")
    ax.grid(alpha=0.3)
    if many:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    elif curves:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    from ._io import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def figure_to_array(fig, *, close: bool = True):
    """RGB uint8 array ``[H, W, 3]`` of ``fig`` (for TensorBoard); closes the figure unless told not to."""
    import numpy as np

    fig.canvas.draw()
    arr = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if close:
        _pyplot().close(fig)
    return arr
