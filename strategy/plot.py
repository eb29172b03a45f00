"""A replay as a picture: price with the signals on it, and the equity curve below."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from strategy.backtest import BacktestResult
from strategy.base import bar_end

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_MARKERS = {"BUY": ("^", "tab:green"), "SELL": ("v", "tab:red")}  # action -> (marker, colour)


def plot_replay(result: BacktestResult, path: Path, *, title: str) -> None:
    """Write a PNG of `result` to `path` (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (price_axes, equity_axes) = plt.subplots(
        2, 1, sharex=True, figsize=(12, 7), gridspec_kw={"height_ratios": [3, 1]}
    )
    try:
        times = [bar_end(bar) for bar in result.bars]
        price_axes.plot(times, [bar.close for bar in result.bars], color="tab:blue", lw=1)
        _mark_signals(price_axes, result)
        price_axes.set_title(title)
        price_axes.set_ylabel("close")
        price_axes.legend(loc="best")
        equity_axes.plot(times, result.equity, color="tab:purple", lw=1)
        equity_axes.axhline(0.0, color="grey", lw=0.5)
        equity_axes.set_ylabel("P&L")
        figure.autofmt_xdate()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)


def _mark_signals(axes: Axes, result: BacktestResult) -> None:
    """A marker where each signal was (assumed) filled: at its bar's close."""
    from matplotlib.dates import date2num

    for action, (marker, colour) in _MARKERS.items():
        fills = [fill for fill in result.fills if fill.side == action]
        if fills:
            axes.scatter(
                date2num([fill.executed_at for fill in fills]),
                [fill.price for fill in fills],
                marker=marker,
                color=colour,
                s=60,
                label=action,
                zorder=3,
            )
