"""The probability-stack figure must be readable on its own: which band is which exit."""

from __future__ import annotations

import pytest

from adaptive_weights.plots import plot_probability_stack


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
