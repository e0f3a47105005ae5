"""The probability-stack figure must be readable on its own: which band is which exit."""

from __future__ import annotations

import pytest

from adaptive_weights.plots import Curve, plot_error_vs_macs, plot_probability_stack, shared_suffix


def _rows(num_exits: int, epochs: int = 2) -> list[dict]:
    return [{"epoch": e, **{f"train/prob/exit_{k:02d}": 1.0 / num_exits for k in range(num_exits)}}
            for e in range(1, epochs + 1)]


def test_the_legend_lists_the_exits_in_the_stacks_order():
    """Exit 0 is the bottom band: the legend reads top to bottom like the stack, final exit first."""
    fig = plot_probability_stack(_rows(3))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["exit 2", "exit 1", "exit 0"]


def test_many_exits_still_get_a_key():
    """A 27-exit ResNet (n=9) is too many for a legend: a colour bar names the exits instead."""
    fig = plot_probability_stack(_rows(27))
    assert len(fig.axes) == 2, "no legend and no colour bar: the bands cannot be told apart"
    bar = fig.axes[1]
    assert bar.get_ylabel() == "exit"
    lo, hi = bar.get_ylim()
    assert lo == pytest.approx(-0.5) and hi == pytest.approx(26.5)


def test_epoch_ticks_are_whole_epochs():
    """Rows are logged at the end of whole epochs; a tick at epoch 1.25 marks nothing logged."""
    for epochs in (1, 3):
        (ax,) = plot_probability_stack(_rows(3, epochs)).axes
        lo, hi = ax.get_xlim()
        assert all(t == int(t) for t in ax.get_xticks() if lo <= t <= hi), ax.get_xticks()


# ------------------------------------------------------------------------------ error versus MACs
def _inside(fig, artist) -> bool:
    """Whether ``artist``'s drawn box lies inside the figure (a clipped title does not)."""
    fig.canvas.draw()
    box, page = artist.get_window_extent(), fig.bbox
    return box.x0 >= page.x0 - 0.5 and box.x1 <= page.x1 + 0.5 and box.y0 >= page.y0 - 0.5 and box.y1 <= page.y1 + 0.5


LONG = "sieve+aann, cifar10/resnet n9 c16 (cifar10-resnet9c16-sieve-aann-s0-with-a-long-sweep-suffix)"


def test_a_long_title_is_never_clipped():
    """The committed reference stacks had their run name cut at both edges of the figure."""
    fig = plot_probability_stack(_rows(27), title=LONG)
    assert _inside(fig, fig.axes[0].title)
    assert "".join(fig.axes[0].title.get_text().split()) == "".join(LONG.split())
    fig = plot_error_vs_macs({"a+ce+sum": ([1e6, 2e6], [0.5, 0.4])}, title=LONG)
    assert _inside(fig, fig.axes[0].title)


def _curves(n: int) -> dict:
    out = {f"m{i}+ce+sum": Curve([1e6, 2e6, 3e6], [0.6, 0.5, 0.4], [0.55, 0.45, 0.35], [0.65, 0.55, 0.45])
           for i in range(n)}
    out["OPT"] = Curve([1e6, 3e6], [0.5, 0.3], [0.48, 0.29], [0.52, 0.31])
    out["EANN"] = ([1e6, 2e6, 9e6], [0.55, 0.45, 0.35])
    return out


def test_opt_is_a_dashed_black_baseline_and_chance_is_drawn():
    fig = plot_error_vs_macs(_curves(2), num_classes=10, step=("EANN",))
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert lines["OPT"].get_linestyle() == "--" and lines["OPT"].get_color() == "black"
    chance = lines["chance (90%)"]
    assert set(chance.get_ydata()) == {90.0}


def test_seed_spread_is_a_band_and_the_legend_says_which():
    from matplotlib.collections import PolyCollection

    (ax,) = plot_error_vs_macs(_curves(2)).axes
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3  # two methods and OPT
    assert "shaded: min to max over seeds" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_the_eann_tail_is_clipped_to_the_methods_costs():
    """An EANN that goes on to 9M MACs must not squeeze methods that end at 3M into a third of the width."""
    (ax,) = plot_error_vs_macs(_curves(2), step=("EANN",)).axes
    lo, hi = ax.get_xlim()
    assert hi < 3.5
    assert "EANN goes on to 9M (clipped)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_a_suffix_every_method_shares_is_said_once():
    fig = plot_error_vs_macs(_curves(3), step=("EANN",))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "m0" in labels and not any(t.endswith("+ce+sum") for t in labels)
    assert "+ce+sum" in fig.axes[0].get_title()
    assert shared_suffix(["a+ce+sum", "b+ce+ge"]) == "" and shared_suffix(["a+x", "a+x"]) == "+x"
    assert shared_suffix(["sum", "a+sum"]) == ""  # never a whole label


def test_many_methods_become_small_multiples():
    """16 methods in one axes need 16 colours nobody tells apart: panels of at most 4 instead, each
    with the baselines, and a title over the whole figure that is not clipped."""
    fig = plot_error_vs_macs(_curves(14), title="cifar10/resnet n3 c8 (test error)", step=("EANN",))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4
    for ax in panels:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "OPT" in labels and "EANN" in labels
        assert 3 <= sum(label.startswith("m") for label in labels) <= 4
    assert _inside(fig, fig._suptitle)
