"""Figures drawn from run-directory data only (``metrics.jsonl`` rows, ``summary.json``).

Training never depends on plotting: every function here takes plain lists/dicts, uses the
non-interactive Agg backend and returns a matplotlib Figure (or writes a PNG atomically).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["BASELINES", "Curve", "SPREAD_LABEL", "probability_series", "plot_probability_stack", "plot_error_vs_macs",
           "save_figure", "figure_to_array", "shared_suffix"]

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
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100, layout="constrained")
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
    ax.set_title(_wrap_title(title or "probability of each exit", fig.get_figwidth()))
    return fig


class Curve(NamedTuple):
    """One labelled line of an error-versus-MACs figure: each point's MACs and mean error, and the
    seed spread around it (the lowest and highest error over seeds; None for a single seed). A
    plain ``(macs, errors)`` pair is a curve without spread."""

    macs: Sequence[float]
    errors: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None


BASELINES = ("OPT", "OPT+")  # drawn as dashed black references, never as one more coloured method
SMALL_MULTIPLES_ABOVE = 8     # more methods than this: one panel per group of at most PER_PANEL
PER_PANEL = 4
SPREAD_LABEL = "shaded: min to max over seeds"
_MACS_LABEL = "MACs (millions; conv + linear layers)"


def shared_suffix(labels: Sequence[str]) -> str:
    """The ``+``-joined trailing parts every label shares (``+ce+sum``), never a whole label: a
    legend need not repeat on every line what all methods have."""
    parts = [label.split("+") for label in labels]
    if len(parts) < 2:
        return ""
    n = 0
    while all(len(p) > n + 1 for p in parts) and len({p[-1 - n] for p in parts}) == 1:
        n += 1
    return "+" + "+".join(parts[0][len(parts[0]) - n:]) if n else ""


def plot_error_vs_macs(curves: Mapping[str, Curve | tuple], *, title: str = "", step: Sequence[str] = (),
                       num_classes: int | None = None, baselines: Sequence[str] = BASELINES):
    """Error (%) versus MACs: one line per method (markers at its exits, a band for its seed
    spread), the ``baselines`` (OPT, OPT+) as dashed black references, other ``step`` labels (EANN)
    as grey step curves, and the chance error 1 - 1/``num_classes``.

    The x-axis spans the methods' own costs: a reference that goes on beyond (an EANN's tail) is
    clipped there and its end named in the key, so the methods keep the width. A suffix all
    method labels share moves to the title; beyond ``SMALL_MULTIPLES_ABOVE`` methods each panel of
    a grid holds at most ``PER_PANEL`` of them over the same references and axes."""
    plt = _pyplot()
    cs = {label: c if isinstance(c, Curve) else Curve(*c) for label, c in curves.items()}
    methods = [label for label in cs if label not in baselines and label not in step]
    suffix = shared_suffix(methods)
    shown = {label: label[: len(label) - len(suffix)] if suffix else label for label in methods}
    if suffix:
        title = f"{title or 'anytime error versus cost'} (every method {suffix})"
    chunks = _panels(methods)
    ncols = 1 if len(chunks) == 1 else 2 if len(chunks) <= 4 else 3
    nrows = math.ceil(len(chunks) / ncols)
    size = (6.4, 4.2) if len(chunks) == 1 else (4.6 * ncols, 3.4 * nrows + 0.5)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, dpi=100, sharex=True, sharey=True, squeeze=False,
                             layout="constrained")
    lo, hi = _x_range([cs[m] for m in methods] or list(cs.values()))
    beyond = [(label, max(c.macs)) for label, c in cs.items()
              if label not in methods and c.macs and max(c.macs) / 1e6 > hi]
    top = max([100.0 * max(c.high or c.errors) for c in cs.values() if c.errors] or [100.0])
    chance = None if not num_classes or num_classes < 2 else 100.0 * (1 - 1 / num_classes)
    for i, ax in enumerate(axes.flat):
        if i >= len(chunks):
            ax.set_visible(False)
            continue
        _references(ax, cs, [label for label in cs if label not in methods], baselines)
        for j, label in enumerate(chunks[i]):
            _method(ax, cs[label], shown[label], f"C{j % 10}")
        ax.grid(alpha=0.3)
        ax.set_xlim(lo, hi)
        if chance is not None:
            if chance <= 1.5 * top:  # near the curves: a line; far above them it would squash them
                ax.axhline(chance, color="0.5", linestyle=":", linewidth=1.0, label=f"chance ({chance:.3g}%)")
            else:
                ax.plot([], [], color="0.5", linestyle=":", label=f"chance: {chance:.3g}% (above the axis)")
        handles, labels = ax.get_legend_handles_labels()
        if any(cs[label].low is not None for label in cs if label not in methods or label in chunks[i]):
            from matplotlib.patches import Patch

            handles.append(Patch(color="0.5", alpha=0.25))
            labels.append(SPREAD_LABEL)
        for label, end in beyond:  # named in the key, where no note can cover a curve
            handles.append(plt.Line2D([], [], linestyle="none"))
            labels.append(f"{label} goes on to {end / 1e6:.3g}M (clipped)")
        ax.legend(handles, labels, fontsize=6 if len(chunks) > 1 else 7, loc="upper right", framealpha=0.85)
        if ax.get_subplotspec().is_last_row() or i + ncols >= len(chunks):
            ax.set_xlabel(_MACS_LABEL)
            ax.xaxis.set_tick_params(labelbottom=True)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("error (%)")
    text = title or "anytime error versus cost"
    if len(chunks) == 1:
        axes[0, 0].set_title(_wrap_title(text, size[0]))
    else:
        fig.suptitle(_wrap_title(text, size[0]))
    return fig


def _panels(methods: Sequence[str]) -> list[list[str]]:
    """The methods in sorted order split into even panels of at most ``PER_PANEL``; one panel up
    to ``SMALL_MULTIPLES_ABOVE`` methods."""
    ordered = sorted(methods)
    if len(ordered) <= SMALL_MULTIPLES_ABOVE:
        return [ordered]
    count = math.ceil(len(ordered) / PER_PANEL)
    bounds = [round(i * len(ordered) / count) for i in range(count + 1)]
    return [ordered[a:b] for a, b in pairwise(bounds)]


def _x_range(curves: Sequence[Curve]) -> tuple[float, float]:
    """The x-limits (millions of MACs) around the points of ``curves``, with a margin."""
    xs = [m / 1e6 for c in curves for m in c.macs]
    if not xs:
        return 0.0, 1.0
    lo, hi = min(xs), max(xs)
    pad = 0.04 * (hi - lo) if hi > lo else 0.5 * hi or 1.0
    return lo - pad, hi + pad


def _references(ax, cs: Mapping[str, Curve], labels: Sequence[str], baselines: Sequence[str]) -> None:
    """OPT and OPT+ dashed black (OPT with its points, OPT+ as the step it is), other step curves grey."""
    for label in labels:
        c = cs[label]
        x, y = [m / 1e6 for m in c.macs], [100.0 * e for e in c.errors]
        if label in baselines and label.endswith("+"):
            ax.step(x, y, where="post", color="black", linestyle="--", linewidth=1.2, label=label)
        elif label in baselines:
            ax.plot(x, y, color="black", linestyle="--", marker="x", markersize=4, linewidth=1.2, label=label)
        else:
            ax.step(x, y, where="post", color="0.45", linewidth=1.4, label=label)
        _band(ax, c, "black" if label in baselines else "0.45")


def _method(ax, c: Curve, label: str, colour: str) -> None:
    ax.plot([m / 1e6 for m in c.macs], [100.0 * e for e in c.errors], marker="o", markersize=3, color=colour,
            label=label)
    _band(ax, c, colour)


def _band(ax, c: Curve, colour: str) -> None:
    if c.low is not None and c.high is not None:
        ax.fill_between([m / 1e6 for m in c.macs], [100.0 * e for e in c.low], [100.0 * e for e in c.high],
                        color=colour, alpha=0.15, linewidth=0)


def _wrap_title(text: str, width_in: float, fontsize: float = 12.0) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` (an average glyph is
    about 0.6 em): a layout engine moves a title but never shrinks one wider than its figure, which
    is how a long run name got cut at both edges."""
    import textwrap

    chars = max(20, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in text.splitlines() or [""])


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
