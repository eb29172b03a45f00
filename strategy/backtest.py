"""Runs a strategy over past bars and keeps score: signals, simulated fills, trades, equity."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from execution.model import Fill
from market_data.model import Bar
from strategy.base import Strategy
from strategy.model import TradeSignal


@dataclass(frozen=True, slots=True)
class Trade:
    """A round trip: from a flat position back to flat."""

    symbol: str
    opened_at: datetime
    closed_at: datetime
    pnl: float


@dataclass
class Ledger:
    """One symbol's position at average cost, and the P&L it has realized."""

    symbol: str
    position: float = 0.0  # signed: long > 0, short < 0
    average_price: float = 0.0
    realized: float = 0.0
    opened_at: datetime | None = None
    trade_pnl: float = 0.0  # realized so far by the round trip still open

    def apply(self, fill: Fill) -> Trade | None:
        """Book `fill`; the round trip it completes, if any."""
        direction = 1.0 if fill.side == "BUY" else -1.0
        remaining = fill.quantity
        closed = None
        if self.position * direction < 0:
            remaining, closed = self._reduce(fill, direction)
        if remaining > 0:
            self._increase(fill, direction * remaining)
        return closed

    def unrealized(self, price: float) -> float:
        return (price - self.average_price) * self.position

    def _reduce(self, fill: Fill, direction: float) -> tuple[float, Trade | None]:
        closing = min(fill.quantity, abs(self.position))
        pnl = (fill.price - self.average_price) * closing * -direction
        self.realized += pnl
        self.trade_pnl += pnl
        self.position += direction * closing
        if self.position != 0 or self.opened_at is None:
            return 0.0, None
        trade = Trade(self.symbol, self.opened_at, fill.executed_at, self.trade_pnl)
        self.opened_at, self.trade_pnl, self.average_price = None, 0.0, 0.0
        return fill.quantity - closing, trade

    def _increase(self, fill: Fill, signed_quantity: float) -> None:
        if self.position == 0:
            self.opened_at = fill.executed_at
        total = self.position + signed_quantity
        self.average_price = (
            self.average_price * self.position + fill.price * signed_quantity
        ) / total
        self.position = total


@dataclass
class BacktestResult:
    """Everything a replay produced, in bar order; `equity[i]` is the P&L at `bars[i]`'s close."""

    bars: list[Bar] = field(default_factory=list)
    signals: list[TradeSignal] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    realized_pnl: float = 0.0
    open_position: float = 0.0

    @property
    def pnl(self) -> float:
        """Realized plus unrealized at the last close."""
        return self.equity[-1] if self.equity else 0.0

    @property
    def unrealized_pnl(self) -> float:
        return self.pnl - self.realized_pnl

    @property
    def win_rate(self) -> float | None:
        """Share of closed trades that made money; None without any."""
        if not self.trades:
            return None
        return sum(trade.pnl > 0 for trade in self.trades) / len(self.trades)

    @property
    def max_drawdown(self) -> float:
        """The largest fall of equity from an earlier peak (starting from 0)."""
        peak, deepest = 0.0, 0.0
        for value in self.equity:
            peak = max(peak, value)
            deepest = max(deepest, peak - value)
        return deepest


def simulated_fill(signal: TradeSignal, bar: Bar) -> Fill:
    """The fill a replay assumes: all of it, at the close of the bar that caused the signal."""
    return Fill(
        id=f"replay-{signal.id}",
        ts=signal.ts,
        symbol=signal.symbol,
        execution_id=f"replay-{signal.id}",
        signal_id=signal.id,
        side=signal.action,
        quantity=signal.quantity,
        price=bar.close,
        executed_at=signal.ts,
    )


def run_backtest(strategy: Strategy, bars: Iterable[Bar]) -> BacktestResult:
    """Feed `bars` to `strategy` as the runner would, filling each signal at its bar's close."""
    result = BacktestResult()
    ledgers: dict[str, Ledger] = {}  # symbol -> its book
    last_close: dict[str, float] = {}  # symbol -> for marking open positions
    for bar in bars:
        result.bars.append(bar)
        last_close[bar.symbol] = bar.close
        for signal in strategy.on_bar(bar):
            fill = simulated_fill(signal, bar)
            strategy.on_fill(fill)
            ledger = ledgers.setdefault(signal.symbol, Ledger(signal.symbol))
            trade = ledger.apply(fill)
            result.signals.append(signal)
            result.fills.append(fill)
            if trade is not None:
                result.trades.append(trade)
        result.equity.append(
            sum(ledger.realized + ledger.unrealized(last_close[s]) for s, ledger in ledgers.items())
        )
    result.realized_pnl = sum(ledger.realized for ledger in ledgers.values())
    result.open_position = sum(ledger.position for ledger in ledgers.values())
    return result
