"""`main.py replay`: the configured strategy over stored bars, its signals and how it did."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from pathlib import Path

from config import StrategySettings
from execution.model import Fill
from market_data.model import Bar
from strategy.backtest import BacktestResult, run_backtest
from strategy.csv_bars import BarFileError, load_csv_bars, parse_timestamp
from strategy.model import TradeSignal
from strategy.registry import build_strategy

# (symbol, first bar start or None, last bar start or None) -> bars in time order; the storage
# package provides the one behind `--source db`.
BarLoader = Callable[[str, datetime | None, datetime | None], Iterable[Bar]]

EXIT_OK, EXIT_USAGE = 0, 2


class ReplayUsageError(ValueError):
    """Nothing to replay: a missing file, an unknown source, an empty range."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the replay flags: --symbol, --source, --from, --to, --plot."""
    parser.add_argument("--symbol", required=True, type=str.upper, help="e.g. AAPL")
    parser.add_argument(
        "--source",
        required=True,
        metavar="FILE.csv|db",
        help="a CSV with columns timestamp,open,high,low,close,volume, or `db` for stored bars",
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=_start_of,
        metavar="WHEN",
        help="first bar start: ISO-8601 date or time (UTC unless it has an offset)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        type=_end_of,
        metavar="WHEN",
        help="last bar start; a date alone includes that whole day",
    )
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="draw price and equity")


def run_replay(
    args: argparse.Namespace, settings: StrategySettings, load_db_bars: BarLoader | None = None
) -> int:
    """Replay, print each signal and a summary; 2 with one line on stderr for bad usage."""
    try:
        bars = _bars_in_range(args, load_bars(args, settings, load_db_bars))
    except (ReplayUsageError, BarFileError) as error:
        print(f"main.py replay: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    result = run_backtest(build_strategy(settings), bars)
    for signal, fill in zip(result.signals, result.fills, strict=True):
        print(format_signal(signal, fill))
    print(format_summary(result, settings.strategy, args.symbol))
    if args.plot is not None:
        from strategy.plot import plot_replay  # matplotlib only when a plot is asked for

        plot_replay(result, args.plot, title=f"{settings.strategy} on {args.symbol}")
        print(f"plot written to {args.plot}")
    return EXIT_OK


def load_bars(
    args: argparse.Namespace, settings: StrategySettings, load_db_bars: BarLoader | None
) -> Iterable[Bar]:
    """The bars `--source` names: the store's (`db`) or a CSV file's."""
    if args.source == "db":
        if load_db_bars is None:
            raise ReplayUsageError("--source db: no bar store is available to read from")
        return load_db_bars(args.symbol, args.start, args.end)
    path = Path(args.source)
    if not path.is_file():
        raise ReplayUsageError(f"--source: no such file: {path}")
    return load_csv_bars(path, args.symbol, default_seconds=settings.strategy_bar_seconds)


def _bars_in_range(args: argparse.Namespace, bars: Iterable[Bar]) -> list[Bar]:
    selected = [
        bar
        for bar in bars
        if (args.start is None or bar.start >= args.start)
        and (args.end is None or bar.start <= args.end)
    ]
    if not selected:
        raise ReplayUsageError(f"no bars for {args.symbol} in {args.source} in the given range")
    return selected


def format_signal(signal: TradeSignal, fill: Fill) -> str:
    """One line per signal: when, what, at what (assumed) price, why, and its id."""
    return (
        f"{signal.ts.isoformat()}  {signal.action:<4} {signal.quantity:g} {signal.symbol}"
        f" @ {fill.price:.4f}  {signal.reason}  id={signal.id}"
    )


def format_summary(result: BacktestResult, strategy: str, symbol: str) -> str:
    """Trades, P&L, win rate and max drawdown, a few lines."""
    first, last = result.bars[0].start.isoformat(), result.bars[-1].start.isoformat()
    win_rate = "n/a" if result.win_rate is None else f"{result.win_rate:.1%}"
    return "\n".join(
        [
            f"{strategy} on {symbol}: {len(result.bars)} bars from {first} to {last}",
            f"signals: {len(result.signals)}  trades closed: {len(result.trades)}"
            f"  open position: {result.open_position:g}",
            f"P&L: {result.pnl:.2f} (realized {result.realized_pnl:.2f},"
            f" unrealized {result.unrealized_pnl:.2f})",
            f"win rate: {win_rate}  max drawdown: {result.max_drawdown:.2f}",
        ]
    )


def _start_of(text: str) -> datetime:
    return _when(text)


def _end_of(text: str) -> datetime:
    """`--to`: a date alone means up to the end of that day."""
    moment = _when(text)
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return moment
    return moment + timedelta(days=1, microseconds=-1)


def _when(text: str) -> datetime:
    try:
        return parse_timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or time: {text!r}") from None
