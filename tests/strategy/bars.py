"""Hand-made bars and the signals the strategies should answer them with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from market_data.model import Bar
from strategy.base import Action, signal_id
from strategy.model import TradeSignal

FIRST_START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
TTL = timedelta(seconds=30)


def bars_from_closes(closes: list[float], symbol: str = "AAPL", seconds: int = 60) -> list[Bar]:
    """One flat bar (open = high = low = close) per close, `seconds` apart from FIRST_START."""
    bars = []
    for index, close in enumerate(map(float, closes)):
        start = FIRST_START + timedelta(seconds=index * seconds)
        bars.append(
            Bar(
                ts=start + timedelta(seconds=seconds),
                symbol=symbol,
                start=start,
                seconds=seconds,
                open=close,
                high=close,
                low=close,
                close=close,
                volume=100.0,
            )
        )
    return bars


def expected_signal(
    strategy: str, bar: Bar, action: Action, reason: str, quantity: float = 10.0
) -> TradeSignal:
    """The signal `strategy` should send at `bar`'s close."""
    ends = bar.start + timedelta(seconds=bar.seconds)
    return TradeSignal(
        id=signal_id(strategy, bar.symbol, bar.start, bar.seconds, action),
        ts=ends,
        symbol=bar.symbol,
        action=action,
        quantity=quantity,
        strategy=strategy,
        expires_at=ends + TTL,
        reason=reason,
    )
