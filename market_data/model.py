"""The market data module's published events: `Tick` and `Bar`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from event_bus import Event, UtcDatetime, register


def _check_price(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite price, got {value!r}")


def _check_size(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite size, got {value!r}")


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(Event):
    """Top of book and last trade for one instrument, on `trading:tick:{SYMBOL}`.

    A field is None when IB has not sent it (IB's -1 and NaN never become prices).
    """

    kind = "tick"
    droppable = True

    symbol: str
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    last_size: float | None = None
    volume: float | None = None
    exchange_time: UtcDatetime | None = None  # when IB says the last trade happened

    def __post_init__(self) -> None:
        for name in ("bid", "ask", "last"):
            _check_price(name, getattr(self, name))
        for name in ("bid_size", "ask_size", "last_size", "volume"):
            _check_size(name, getattr(self, name))


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Bar(Event):
    """One OHLCV bar of `seconds` starting at `start`, on `trading:bar:{SYMBOL}`.

    Bars are never dropped: a strategy needs every one.
    """

    kind = "bar"

    symbol: str
    start: UtcDatetime
    seconds: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float | None = None
    trade_count: int | None = None

    def __post_init__(self) -> None:
        for name in ("open", "high", "low", "close"):
            _check_price(name, getattr(self, name))
        _check_size("volume", self.volume)
        if self.seconds <= 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if not self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high:
            raise ValueError("bar prices must satisfy low <= open, close <= high")
